"""PointQA docs on disk: the parquet schema, the check of one doc against the contract, the writer.

The PointQA tasks read a parquet file written with the Hugging Face ``datasets`` features below
(``image`` is an ``Image()`` feature holding the encoded image bytes), so lmms-eval hands the tasks
docs whose ``image`` is a PIL image. The converter, the synthetic generator and the tests all write
docs through :func:`write_pointqa_parquet`, which checks every doc first and writes atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, Image, List, Value
from PIL import Image as PILImage

from visheads_eval.data.pointqa import ANSWERS, QUESTION_FIELDS
from visheads_eval.errors import VisheadsError

POINTQA_FEATURES = Features(
    {
        "id": Value("string"),
        "image": Image(),
        "image_width": Value("int32"),
        "image_height": Value("int32"),
        "bbox": List(Value("float64"), length=4),  # [x, y, w, h], original pixels
        "answer": Value("int32"),
        "general_question": Value("string"),
        "obj_question": Value("string"),
        "super_question": Value("string"),
        "object": Value("string"),
        "supercategory": Value("string"),
        "source": Value("string"),
    }
)
TEXT_FIELDS = ("id", *QUESTION_FIELDS.values(), "object", "supercategory", "source")
BATCH_ROWS = 64


def bbox_problem(bbox: Any, width: int, height: int) -> str | None:
    """Why ``bbox`` (``[x, y, w, h]``) is not a usable box on a ``width`` x ``height`` image, or ``None``."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return f"bbox {bbox!r} is not [x, y, w, h]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return f"bbox {list(bbox)!r} has a value that is not a finite number"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox {list(bbox)!r} has a non-positive width or height"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"bbox {list(bbox)!r} lies outside the {width}x{height} image"
    return None


def doc_problem(doc: dict) -> str | None:
    """Why ``doc`` breaks the PointQA docs contract (docs/architecture.md), or ``None`` if it is valid."""
    missing = [field for field in POINTQA_FEATURES if field not in doc]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    for field in TEXT_FIELDS:
        if not isinstance(doc[field], str):
            return f"field '{field}' is {type(doc[field]).__name__}, not text"
    for field in QUESTION_FIELDS.values():
        if not doc[field].strip():
            return f"field '{field}' is empty"
    answer = doc["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int) or answer not in ANSWERS:
        return f"answer {answer!r} is not a count from {ANSWERS.start} to {ANSWERS.stop - 1}"
    width, height = doc["image_width"], doc["image_height"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return f"image size {width!r}x{height!r} is not two positive integers"
    if isinstance(doc["image"], PILImage.Image) and doc["image"].size != (width, height):
        return f"image is {doc['image'].size[0]}x{doc['image'].size[1]} but image_width x image_height is {width}x{height}"
    return bbox_problem(doc["bbox"], width, height)


def _encoded_image(image: Any) -> dict[str, Any]:
    """The ``Image()`` storage of ``image``: PIL images as lossless PNG bytes, encoded bytes kept as they are."""
    if isinstance(image, PILImage.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}
    if isinstance(image, (bytes, bytearray)):
        return {"bytes": bytes(image), "path": None}
    raise VisheadsError(f"a PointQA doc's image must be a PIL image or encoded image bytes, not {type(image).__name__}")


def _batches(docs: Iterable[dict]) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for doc in docs:
        problem = doc_problem(doc)
        if problem is not None:
            raise VisheadsError(f"PointQA doc '{doc.get('id', '?')}': {problem}")
        batch.append({**{field: doc[field] for field in POINTQA_FEATURES}, "image": _encoded_image(doc["image"])})
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def write_pointqa_parquet(docs: Iterable[dict], path: Path) -> int:
    """Write ``docs`` (PointQA docs; ``image`` a PIL image or encoded bytes) to ``path``; return how many.

    Docs are checked (:func:`doc_problem`) and written in batches to a temporary file that replaces
    ``path`` only when every doc has been written, so a failure leaves no partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    schema = POINTQA_FEATURES.arrow_schema
    written = 0
    try:
        with pq.ParquetWriter(temporary, schema=schema) as writer:
            for batch in _batches(docs):
                columns = POINTQA_FEATURES.encode_batch({field: [doc[field] for doc in batch] for field in POINTQA_FEATURES})
                writer.write_table(pa.Table.from_pydict(columns, schema=schema))
                written += len(batch)
        if written == 0:
            raise VisheadsError(f"no PointQA docs to write to {path}")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return written
