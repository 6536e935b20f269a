"""PointQA docs on disk: one datasets-written parquet file per split, its ``image`` an ``Image()`` feature.

The PointQA tasks read these files with lmms-eval (``dataset_path: parquet``), so docs arrive with PIL
images. Files are written atomically: to a temporary file beside the target, then renamed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import datasets

from visheads_eval.atomic import atomic_path

POINTQA_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "image_width": datasets.Value("int32"),
        "image_height": datasets.Value("int32"),
        "bbox": datasets.Sequence(datasets.Value("float64"), length=4),
        "answer": datasets.Value("int32"),
        "general_question": datasets.Value("string"),
        "obj_question": datasets.Value("string"),
        "super_question": datasets.Value("string"),
        "object": datasets.Value("string"),
        "supercategory": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
)
_CHUNK = 500  # docs encoded at a time


def write_docs_parquet(docs: Iterable[dict], path: Path) -> int:
    """Write PointQA ``docs`` (fields of ``POINTQA_FEATURES``) to ``path``; return the number written."""
    parts: list[datasets.Dataset] = []
    chunk: list[dict] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == _CHUNK:
            parts.append(datasets.Dataset.from_list(chunk, features=POINTQA_FEATURES))
            chunk = []
    if chunk:
        parts.append(datasets.Dataset.from_list(chunk, features=POINTQA_FEATURES))
    table = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    with atomic_path(path) as temporary:
        table.to_parquet(str(temporary))
    return len(table)


def read_docs_parquet(path: Path) -> datasets.Dataset:
    """The docs of one split, images decoded to PIL (as lmms-eval reads them)."""
    return datasets.Dataset.from_parquet(str(path), features=POINTQA_FEATURES, keep_in_memory=True)
