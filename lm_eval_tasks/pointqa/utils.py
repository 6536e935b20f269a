"""PointQA for lm-eval: the lmms-eval tasks' docs, prompts and scoring (``visheads_eval.data.pointqa_task``),
in lm-eval's multimodal task format (``doc_to_image``, ``doc_to_text`` with its ``<image>`` placeholder).

lm-eval imports ``!function`` modules from the YAML's folder by file, so this module holds one reader per
setting, each the lmms-eval reader with that setting's options (the ``visheads`` preset).
"""

from __future__ import annotations

from typing import Any

import datasets

from visheads_eval.data.pointqa_task import pointqa_doc_to_text, pointqa_doc_to_visual, pointqa_process_results
from visheads_eval.resources import tasks_dir

IMAGE_PLACEHOLDER = "<image>"  # lm-eval's DEFAULT_IMAGE_PLACEHOLDER: where the image goes in the prompt


def load_pointqa(**_: Any) -> datasets.DatasetDict:
    """The shipped PointQA test split, the parquet file the lmms-eval tasks read."""
    return datasets.load_dataset("parquet", data_files={"test": str(tasks_dir() / "pointqa" / "data" / "test.parquet")})


def _options(rendering: str, question: str) -> dict[str, str]:
    return {"question": question, "rendering": rendering, "preset": "visheads"}


def _readers(rendering: str, question: str) -> tuple:
    options = _options(rendering, question)
    return (lambda doc: pointqa_doc_to_visual(doc, options), lambda doc: IMAGE_PLACEHOLDER + pointqa_doc_to_text(doc, options))


plain_general_image, plain_general_text = _readers("plain", "general")
plain_object_image, plain_object_text = _readers("plain", "object")
plain_super_image, plain_super_text = _readers("plain", "super")
visual_general_image, visual_general_text = _readers("visual", "general")
visual_object_image, visual_object_text = _readers("visual", "object")
visual_super_image, visual_super_text = _readers("visual", "super")

process_results = pointqa_process_results
