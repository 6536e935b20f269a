"""The functions the four attribute tasks call (``tasks/pointqa/pointqa_{plain,visual}_{colour,shape}.yaml``).

They ask the colour or the shape of the exemplary object of a synthetic PointQA doc (its ``object`` is
``"<colour> <shape>"``, its ``supercategory`` the shape; :mod:`visheads_eval.data.synth`), with the box in the
text (plain: ``[x1, y1, x2, y2]`` normalised, as the PointQA tasks give it) or drawn on the image (visual, the
``visheads`` preset's box). An answer counts when its first word is the attribute. The questions are the ones
visheads-smol was trained on (``tools/smol``), built here so that training and tasks cannot drift apart.
lmms-eval hands ``doc_to_target`` and ``process_results`` no task settings, so each attribute has its own pair.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image

from visheads_eval.data.pointqa import VARIANTS, bbox_to_text, draw_box
from visheads_eval.errors import VisheadsError, did_you_mean

ATTRIBUTES = ("colour", "shape")
TASKS = tuple(f"pointqa_{rendering}_{attribute}" for rendering in VARIANTS for attribute in ATTRIBUTES)  # their YAMLs' names
METRIC = "attribute_acc"
POST_PROMPT = "Answer with a single word."
_OPTION_KEYS = ("attribute", "rendering")


def _options(kwargs: dict[str, Any] | None) -> tuple[str, str]:
    """The task's ``attribute`` and ``rendering``, checked (lmms-eval merges the ``default`` block into ``kwargs``)."""
    kwargs = {key: value for key, value in (kwargs or {}).items() if not isinstance(value, dict)}
    for key in kwargs:
        if key not in _OPTION_KEYS:
            raise VisheadsError(f"attribute task YAML: unknown lmms_eval_specific_kwargs key '{key}'{did_you_mean(key, _OPTION_KEYS)}")
    attribute, rendering = kwargs.get("attribute"), kwargs.get("rendering")
    if attribute not in ATTRIBUTES or rendering not in VARIANTS:
        raise VisheadsError(
            f"attribute task YAML: lmms_eval_specific_kwargs.default needs attribute ({', '.join(ATTRIBUTES)}) and "
            f"rendering ({', '.join(VARIANTS)}), got attribute={attribute!r}, rendering={rendering!r}"
        )
    return attribute, rendering


def attribute_answer(doc: dict, attribute: str) -> str:
    """The exemplary object's colour or shape, from the doc's ``object`` ("green circle") and ``supercategory``."""
    shape = str(doc["supercategory"])
    colour, _, named_shape = str(doc["object"]).rpartition(" ")
    if named_shape != shape or not colour:
        raise VisheadsError(
            f"doc {doc.get('id')}: object {doc['object']!r} is not '<colour> {shape}'; the attribute tasks read synthetic "
            "PointQA docs (visheads data synth)"
        )
    return colour if attribute == "colour" else shape


def attribute_question(doc: dict, attribute: str, rendering: str) -> str:
    """``What colour is the object? The object is at [x1, y1, x2, y2].`` (plain) or ``What colour is the object in
    the box?`` (visual), then :data:`POST_PROMPT`."""
    if rendering == "visual":
        question = f"What {attribute} is the object in the box?"
    else:
        box = bbox_to_text(doc["bbox"], int(doc["image_width"]), int(doc["image_height"]))
        question = f"What {attribute} is the object? The object is at {box}."
    return f"{question}\n{POST_PROMPT}"


def attribute_doc_to_visual(doc: dict, lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> list[Image.Image]:
    """The doc's image; with the visual rendering, a copy with the exemplary object's box drawn on it."""
    _, rendering = _options(lmms_eval_specific_kwargs)
    image = doc["image"].convert("RGB")
    return [draw_box(image, doc["bbox"]) if rendering == "visual" else image]


def attribute_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    attribute, rendering = _options(lmms_eval_specific_kwargs)
    return attribute_question(doc, attribute, rendering)


def first_word(answer: str) -> str | None:
    """The first word of ``answer``, lower-cased, or ``None``."""
    words = re.findall(r"[a-z]+", answer.lower())
    return words[0] if words else None


def _score(doc: dict, results: list[str], attribute: str) -> dict[str, float]:
    return {METRIC: float(first_word(results[0]) == attribute_answer(doc, attribute))}


def colour_target(doc: dict) -> str:
    return attribute_answer(doc, "colour")


def shape_target(doc: dict) -> str:
    return attribute_answer(doc, "shape")


def colour_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """1.0 when the answer's first word is the object's colour, else 0.0."""
    return _score(doc, results, "colour")


def shape_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """1.0 when the answer's first word is the object's shape, else 0.0."""
    return _score(doc, results, "shape")
