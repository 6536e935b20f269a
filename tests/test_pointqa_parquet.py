"""PointQA docs on disk: what the writer stores is what datasets (and so lmms-eval) hands back."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fixtures.pointqa_docs import pointqa_docs
from visheads_eval.data.pointqa_parquet import doc_problem, write_pointqa_parquet
from visheads_eval.errors import VisheadsError


def test_docs_come_back_from_datasets_with_pil_images_and_every_field(tmp_path: Path) -> None:
    docs = pointqa_docs()
    path = tmp_path / "test.parquet"
    assert write_pointqa_parquet(docs, path) == len(docs)

    loaded = datasets.load_dataset("parquet", data_files={"test": str(path)})["test"]
    assert isinstance(loaded.features["image"], datasets.Image)
    assert len(loaded) == len(docs)
    for doc, back in zip(docs, loaded, strict=True):
        assert isinstance(back["image"], Image.Image)
        assert back["image"].size == (doc["image_width"], doc["image_height"])
        assert list(back["image"].convert("RGB").getdata()) == list(doc["image"].getdata()), "images are stored losslessly"
        for field in ("id", "image_width", "image_height", "bbox", "answer", "general_question", "object", "source"):
            assert back[field] == doc[field]


def test_encoded_image_bytes_are_stored_unchanged(tmp_path: Path) -> None:
    doc = pointqa_docs()[0]
    buffer = io.BytesIO()
    doc["image"].save(buffer, format="JPEG", quality=70)
    write_pointqa_parquet([{**doc, "image": buffer.getvalue()}], tmp_path / "test.parquet")
    stored = pq.read_table(tmp_path / "test.parquet").column("image")[0].as_py()
    assert stored["bytes"] == buffer.getvalue()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": 0}, "answer 0 is not a count from 1 to 7"),
        ({"answer": "3"}, "answer '3' is not a count"),
        ({"bbox": [1, 2, 3]}, "is not [x, y, w, h]"),
        ({"bbox": [1, 2, 0, 5]}, "non-positive width or height"),
        ({"bbox": [100, 2, 5, 5]}, "lies outside the 100x80 image"),
        ({"bbox": [1, 2, float("nan"), 5]}, "not a finite number"),
        ({"image_width": 99}, "image is 100x80 but image_width x image_height is 99x80"),
        ({"obj_question": "  "}, "field 'obj_question' is empty"),
        ({"source": None}, "field 'source' is NoneType, not text"),
    ],
)
def test_doc_problems_are_named(change: dict, message: str) -> None:
    doc = {**pointqa_docs()[0], **change}
    assert message in doc_problem(doc)


def test_missing_fields_are_listed() -> None:
    doc = pointqa_docs()[0]
    del doc["supercategory"], doc["bbox"]
    assert doc_problem(doc) == "missing field(s) bbox, supercategory"
    assert doc_problem(pointqa_docs()[0]) is None


def test_a_bad_doc_midway_leaves_the_previous_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "test.parquet"
    write_pointqa_parquet(pointqa_docs()[:2], path)
    before = path.read_bytes()
    docs = pointqa_docs()
    docs[3]["answer"] = 9
    with pytest.raises(VisheadsError, match="PointQA doc '3': answer 9 is not a count"):
        write_pointqa_parquet(docs, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["test.parquet"], "no temporary file is left behind"


def test_no_docs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(VisheadsError, match="no PointQA docs"):
        write_pointqa_parquet([], tmp_path / "test.parquet")
    assert not list(tmp_path.iterdir())
