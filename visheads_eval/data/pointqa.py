"""PointQA (LookTwice-QA) docs: the three question kinds, the two renderings, their presets, answer parsing.

A doc carries the original image, the exemplary object's box ``[x, y, w, h]`` in original pixels and
the three questions (see docs/architecture.md). The *visual* rendering draws the box on the image; the
*plain* rendering leaves the image untouched. How the box is drawn and how the prompt is worded is a
:class:`Preset`:

- ``visheads`` (the default): an opaque red 3-pixel box inside ``[x, x + w - 1]``; the plain rendering
  gives the box in the text as ``[x1, y1, x2, y2]`` normalised to 0..1 with two decimals (the region
  format of LLaVA-1.5's training data); prompts end "Answer with a single number.";
- ``paper``: as the paper's code (jing-bi/visual-head, ViP-LLaVA's ``image_blending``, 'constant' style)
  renders it: a red rectangle alpha-blended at 128 onto the image, ``max(int(3 * max(width, height) /
  336), 1)`` pixels wide, drawn from ``x`` to ``x + w`` inclusive; the visual question ends " The
  exemplary object is within the rectangle." and both renderings "\nAnswer the question using a single
  word or phrase."; the plain rendering gives no box (ViP-LLaVA's plain PointQA prompt).

Tasks, the synthetic generator and the organism's training all build prompts here, so they cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageColor, ImageDraw

from visheads_eval.errors import VisheadsError, did_you_mean

QUESTION_KINDS = ("general", "object", "super")
VARIANTS = ("plain", "visual")
QUESTION_FIELDS = {"general": "general_question", "object": "obj_question", "super": "super_question"}
ANSWERS = range(1, 8)


@dataclass(frozen=True)
class Preset:
    """How a doc is shown to the model: the visual prompt's box and the prompt's wording."""

    name: str
    box_colour: str
    box_alpha: int  # 255 draws the box opaque; less blends it onto the image
    box_width: int | None  # line width in pixels, or None: scaled with the image as the paper does
    box_far_edge_included: bool  # the box's right and bottom lines end at x + w (paper) or at x + w - 1
    visual_note: str  # appended to the question in the visual rendering
    box_in_plain_text: bool  # the plain rendering gives the box in the text
    post_prompt: str

    def line_width(self, image_size: tuple[int, int]) -> int:
        """The box's line width on an image of ``(width, height)`` pixels."""
        if self.box_width is not None:
            return self.box_width
        return max(int(PAPER_WIDTH_AT_336 * max(image_size) / 336), 1)


PAPER_WIDTH_AT_336 = 3  # ViP-LLaVA's 'constant' rectangle: 3 pixels at a 336-pixel image, in proportion above
PRESETS = {
    "visheads": Preset("visheads", "red", 255, 3, False, "", True, "Answer with a single number."),
    "paper": Preset(
        "paper",
        "red",
        128,
        None,
        True,
        " The exemplary object is within the rectangle.",
        False,
        "Answer the question using a single word or phrase.",
    ),
}
DEFAULT_PRESET = "visheads"
DEFAULT_BOX_COLOUR = PRESETS[DEFAULT_PRESET].box_colour
DEFAULT_POST_PROMPT = PRESETS[DEFAULT_PRESET].post_prompt

_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "zero": 0}
_FIRST_NUMBER = re.compile(r"\d+|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def bbox_to_text(bbox: Sequence[float], width: int, height: int) -> str:
    """``[x, y, w, h]`` in pixels -> ``"[x1, y1, x2, y2]"`` normalised to the image, two decimals."""
    x, y, w, h = bbox
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return "[" + ", ".join(f"{min(max(c, 0.0), 1.0):.2f}" for c in corners) + "]"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise VisheadsError(f"unknown PointQA preset '{name}'{did_you_mean(name, PRESETS)}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def draw_box(
    image: Image.Image,
    bbox: Sequence[float],
    preset: Preset = PRESETS[DEFAULT_PRESET],
    colour: str | None = None,
    width: int | None = None,
) -> Image.Image:
    """A copy of ``image`` (RGB) with the box ``[x, y, w, h]`` drawn as ``preset`` draws it (the visual
    prompt); ``colour`` and ``width`` override the preset's."""
    x, y, w, h = bbox
    far = 0 if preset.box_far_edge_included else 1
    corners = [x, y, x + w - far, y + h - far]
    rgb = ImageColor.getrgb(colour or preset.box_colour)[:3]
    line = width if width is not None else preset.line_width(image.size)
    base = image.convert("RGB")
    if preset.box_alpha == 255:
        boxed = base.copy()
        ImageDraw.Draw(boxed).rectangle(corners, outline=rgb, width=line)
        return boxed
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(corners, outline=(*rgb, preset.box_alpha), width=line)
    return Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")


def question_text(doc: dict, kind: str, variant: str, preset: Preset = PRESETS[DEFAULT_PRESET], post_prompt: str | None = None) -> str:
    """The text of the question of ``kind`` in the ``variant`` rendering, worded as ``preset`` words it;
    ``post_prompt`` overrides the preset's."""
    question = doc[QUESTION_FIELDS[kind]].strip()
    if variant == "plain" and preset.box_in_plain_text:
        question = f"{question} The object is at {bbox_to_text(doc['bbox'], doc['image_width'], doc['image_height'])}."
    if variant == "visual":
        question += preset.visual_note
    post_prompt = preset.post_prompt if post_prompt is None else post_prompt
    return f"{question}\n{post_prompt}" if post_prompt else question


def parse_count(answer: str) -> int | None:
    """The first number in ``answer`` (digits or a number word), or ``None`` if there is none."""
    match = _FIRST_NUMBER.search(answer)
    if match is None:
        return None
    token = match.group(0).lower()
    return int(token) if token.isdigit() else _NUMBER_WORDS[token]
