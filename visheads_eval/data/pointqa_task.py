"""The functions the six PointQA lmms-eval tasks call (``tasks/pointqa/``): image, prompt, score.

Each task's YAML says which question it asks and how the box is shown, in its
``lmms_eval_specific_kwargs: default:`` block: ``question``, ``rendering``, the ``preset`` that draws
the box and words the prompt (``visheads`` or ``paper``, see :mod:`visheads_eval.data.pointqa`), and
optional overrides of the preset's ``post_prompt``, ``box_colour`` and ``box_width``. Prompts, box drawing and answer parsing come
from :mod:`visheads_eval.data.pointqa`, shared with the synthetic generator and the organism. The
YAMLs name these functions by module path, so a copy of the YAMLs in any folder finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageColor

from visheads_eval.data.pointqa import (
    DEFAULT_PRESET,
    PRESETS,
    QUESTION_KINDS,
    VARIANTS,
    draw_box,
    get_preset,
    parse_count,
    question_text,
)
from visheads_eval.errors import VisheadsError, did_you_mean

METRIC = "pointqa_acc"
_OPTION_KEYS = ("question", "rendering", "preset", "post_prompt", "box_colour", "box_width")


@dataclass(frozen=True)
class PointQAOptions:
    """One task's settings, read from its ``lmms_eval_specific_kwargs``."""

    question: str
    rendering: str
    preset: str = DEFAULT_PRESET
    post_prompt: str | None = None  # None: the preset's
    box_colour: str | None = None  # None: the preset's
    box_width: int | None = None  # None: the preset's

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> PointQAOptions:
        """Check and read the task's settings (lmms-eval merges the ``default`` block into ``kwargs``)."""
        # lmms-eval leaves the per-model blocks (``default:``, ``llava:`` ...) beside the merged keys.
        kwargs = {key: value for key, value in (kwargs or {}).items() if not isinstance(value, dict)}
        for key in kwargs:
            if key not in _OPTION_KEYS:
                raise VisheadsError(
                    f"PointQA task YAML: unknown lmms_eval_specific_kwargs key '{key}'{did_you_mean(key, _OPTION_KEYS)}; "
                    f"known keys: {', '.join(_OPTION_KEYS)}"
                )
        for key in ("question", "rendering"):
            if key not in kwargs:
                raise VisheadsError(f"PointQA task YAML: lmms_eval_specific_kwargs.default has no '{key}'")
        options = cls(**kwargs)
        for key, allowed in (("question", QUESTION_KINDS), ("rendering", VARIANTS), ("preset", tuple(PRESETS))):
            value = getattr(options, key)
            if value not in allowed:
                raise VisheadsError(
                    f"PointQA task YAML: {key} '{value}' is not one of {', '.join(allowed)}{did_you_mean(str(value), allowed)}"
                )
        try:
            ImageColor.getrgb(options.box_colour or PRESETS[options.preset].box_colour)
        except ValueError as error:
            raise VisheadsError(f"PointQA task YAML: box_colour '{options.box_colour}' is not a colour PIL knows") from error
        if options.box_width is not None and (
            isinstance(options.box_width, bool) or not isinstance(options.box_width, int) or options.box_width < 1
        ):
            raise VisheadsError(f"PointQA task YAML: box_width {options.box_width!r} is not a positive number of pixels")
        return options


def pointqa_doc_to_visual(doc: dict, lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> list[Image.Image]:
    """The doc's image; with the visual rendering, a copy with the exemplary object's box drawn on it."""
    options = PointQAOptions.from_kwargs(lmms_eval_specific_kwargs)
    image = doc["image"].convert("RGB")
    if options.rendering == "visual":
        image = draw_box(image, doc["bbox"], get_preset(options.preset), colour=options.box_colour, width=options.box_width)
    return [image]


def pointqa_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question of the task's kind, rendered plain (box in the text) or visual (box on the image)."""
    options = PointQAOptions.from_kwargs(lmms_eval_specific_kwargs)
    return question_text(doc, options.question, options.rendering, get_preset(options.preset), post_prompt=options.post_prompt)


def pointqa_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """1.0 when the first number in the answer is the doc's count, else 0.0 (no number counts as wrong)."""
    return {METRIC: float(parse_count(results[0]) == doc["answer"])}
