"""PointQA (LookTwice-QA) docs: the three question kinds, the two renderings, and answer parsing.

A doc carries the original image, the exemplary object's box ``[x, y, w, h]`` in original pixels and
the three questions (see docs/architecture.md). The *visual* rendering draws the box on the image; the
*plain* rendering leaves the image untouched and gives the box in the text, as ``[x1, y1, x2, y2]``
normalised to 0..1 with two decimals (the region format of LLaVA-1.5's training data). Tasks, the
synthetic generator and the organism's training all build prompts here, so they cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from PIL import Image, ImageDraw

QUESTION_KINDS = ("general", "object", "super")
VARIANTS = ("plain", "visual")
QUESTION_FIELDS = {"general": "general_question", "object": "obj_question", "super": "super_question"}
ANSWERS = range(1, 8)
DEFAULT_BOX_COLOUR = "red"
DEFAULT_BOX_WIDTH = 3
DEFAULT_POST_PROMPT = "Answer with a single number."

_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "zero": 0}
_FIRST_NUMBER = re.compile(r"\d+|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def bbox_to_text(bbox: Sequence[float], width: int, height: int) -> str:
    """``[x, y, w, h]`` in pixels -> ``"[x1, y1, x2, y2]"`` normalised to the image, two decimals."""
    x, y, w, h = bbox
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return "[" + ", ".join(f"{min(max(c, 0.0), 1.0):.2f}" for c in corners) + "]"


def draw_box(image: Image.Image, bbox: Sequence[float], colour: str = DEFAULT_BOX_COLOUR, width: int = DEFAULT_BOX_WIDTH) -> Image.Image:
    """A copy of ``image`` with the box ``[x, y, w, h]`` outlined (the visual prompt)."""
    x, y, w, h = bbox
    boxed = image.convert("RGB").copy()
    ImageDraw.Draw(boxed).rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=width)
    return boxed


def question_text(doc: dict, kind: str, variant: str, post_prompt: str = DEFAULT_POST_PROMPT) -> str:
    """The text of the question of ``kind`` in the ``variant`` rendering."""
    question = doc[QUESTION_FIELDS[kind]].strip()
    if variant == "plain":
        question = f"{question} The object is at {bbox_to_text(doc['bbox'], doc['image_width'], doc['image_height'])}."
    return f"{question}\n{post_prompt}" if post_prompt else question


def parse_count(answer: str) -> int | None:
    """The first number in ``answer`` (digits or a number word), or ``None`` if there is none."""
    match = _FIRST_NUMBER.search(answer)
    if match is None:
        return None
    token = match.group(0).lower()
    return int(token) if token.isdigit() else _NUMBER_WORDS[token]
