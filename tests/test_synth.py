"""Synthetic PointQA (`visheads data synth`): determinism, balance, boxes and counts checked from pixels."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from scipy import ndimage

from visheads_eval.cli import main
from visheads_eval.data import synth
from visheads_eval.data.synth_files import write_splits
from visheads_eval.resources import tasks_dir

SHIPPED = tasks_dir() / "pointqa" / "data"


def read_docs_parquet(path: Path) -> datasets.Dataset:
    """The docs of a split as lmms-eval's tasks read them (``dataset_path: parquet``)."""
    return datasets.load_dataset("parquet", data_files=str(path), split="train")


def _visheads(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return int(exit_info.value.code)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert _visheads("data", "synth", str(out), "--seed", "3", "--split", "test=70") == 0
    return out


@pytest.fixture(scope="module")
def docs(split_dir: Path) -> list[dict]:
    return list(read_docs_parquet(split_dir / "test.parquet"))


def _classify(component: np.ndarray) -> str:
    """Shape of a blob from its pixels: fill of its bounding box, and how much of it is in the top half."""
    ys, xs = np.nonzero(component)
    blob = component[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    fill = blob.mean()
    if fill > 0.95:
        return "square"
    if fill > 0.65:
        return "circle"
    top = blob[: blob.shape[0] // 2].sum() / blob.sum()
    return "triangle" if top < 0.33 else "diamond"


def _objects(image) -> list[tuple[str, str, tuple[slice, slice], np.ndarray]]:
    """Every object in the image found from its pixels: (colour, shape, bounding slices, mask)."""
    pixels = np.asarray(image.convert("RGB"))
    found = []
    for colour, rgb in synth.COLOURS.items():
        labels, n = ndimage.label((pixels == rgb).all(-1))
        for index, where in enumerate(ndimage.find_objects(labels), start=1):
            mask = labels == index
            found.append((colour, _classify(mask), where, mask))
    return found


def test_docs_follow_the_pointqa_contract(docs: list[dict]) -> None:
    first = docs[0]
    assert set(first) == {
        "id",
        "image",
        "image_width",
        "image_height",
        "bbox",
        "answer",
        "general_question",
        "obj_question",
        "super_question",
        "object",
        "supercategory",
        "source",
    }
    assert first["image"].size == (first["image_width"], first["image_height"])
    for doc in docs:
        colour, shape = doc["object"].split()
        assert doc["general_question"] == "How many of these are there?"
        assert doc["obj_question"] == f"How many {colour} {shape}s are there?"
        assert doc["super_question"] == f"How many of these {shape}s are there?"
        assert doc["supercategory"] == shape
        assert "red" not in doc["object"], "red is the box colour"


def test_counts_and_boxes_match_the_pixels(docs: list[dict]) -> None:
    for doc in docs:
        colour, shape = doc["object"].split()
        objects = _objects(doc["image"])
        assert sum(o[0] == colour and o[1] == shape for o in objects) == doc["answer"], doc["id"]
        # The pointer matters: the same shape in another colour, the same colour in another shape.
        assert any(o[1] == shape and o[0] != colour for o in objects), doc["id"]
        assert any(o[0] == colour and o[1] != shape for o in objects), doc["id"]
        x, y, w, h = (int(v) for v in doc["bbox"])
        inside = [o for o in objects if o[3][y : y + h, x : x + w].any()]
        assert len(inside) == 1, f"{doc['id']}: the box must hold exactly one object"
        box_colour, box_shape, _, mask = inside[0]
        assert (box_colour, box_shape) == (colour, shape)
        assert mask.sum() == mask[y : y + h, x : x + w].sum(), f"{doc['id']}: the object sticks out of its box"


def test_answers_are_balanced_and_stated(split_dir: Path, docs: list[dict]) -> None:
    assert Counter(doc["answer"] for doc in docs) == {a: 10 for a in range(1, 8)}
    manifest = json.loads((split_dir / "manifest.json").read_text())
    entry = manifest["splits"]["test"]
    assert entry["answer_histogram"] == {str(a): 10 for a in range(1, 8)}
    assert entry["seed"] == 3 and entry["n_docs"] == 70
    assert entry["command"] == f"visheads data synth {split_dir} --seed 3 --split=test=70"
    assert manifest["generator_version"] == synth.GENERATOR_VERSION
    assert set(manifest["vocabulary"]["shapes"]) == set(synth.SHAPES)


def test_images_vary_in_size_and_aspect(docs: list[dict]) -> None:
    sizes = {doc["image"].size for doc in docs}
    aspects = {round(w / h, 2) for w, h in sizes}
    assert len(sizes) >= 6 and {1.0, 1.33, 0.75} <= aspects


def test_same_seed_same_bytes_other_seed_other_docs(split_dir: Path, tmp_path: Path, docs: list[dict]) -> None:
    write_splits(tmp_path / "again", 3, {"test": 70}, "again")
    write_splits(tmp_path / "other", 4, {"test": 70}, "other")
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / "again" / "test.parquet") == digest(split_dir / "test.parquet")
    other = list(read_docs_parquet(tmp_path / "other" / "test.parquet"))
    assert sum(a["bbox"] != b["bbox"] for a, b in zip(docs, other, strict=False)) > 60


def test_a_short_split_is_a_prefix_of_a_longer_one() -> None:
    short = list(synth.generate_docs(5, "train", 8))
    long = list(synth.generate_docs(5, "train", 20))
    assert [d["bbox"] for d in short] == [d["bbox"] for d in long[:8]]
    assert np.array_equal(np.asarray(short[7]["image"]), np.asarray(long[7]["image"]))


def test_splits_add_to_the_manifest_and_files_are_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _visheads("data", "synth", str(tmp_path), "--split", "a=7") == 0
    assert _visheads("data", "synth", str(tmp_path), "--seed", "1", "--split", "b=14") == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {name: e["seed"] for name, e in manifest["splits"].items()} == {"a": 0, "b": 1}
    before = (tmp_path / "a.parquet").read_bytes()
    assert _visheads("data", "synth", str(tmp_path), "--seed", "9", "--split", "a=7") == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "a.parquet").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split", "test"], "is not NAME=COUNT"),
        (["--split", "te st=3"], "must be letters"),
        (["--split", "test=0"], "give a positive number"),
        (["--split", "a=1", "--split", "a=2"], "given twice"),
    ],
)
def test_bad_arguments_fail_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    assert _visheads("data", "synth", str(tmp_path / "out"), *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_shipped_test_split_matches_its_manifest(tmp_path: Path) -> None:
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    entry = manifest["splits"]["test"]
    path = SHIPPED / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert path.stat().st_size < 2_000_000
    shipped = list(read_docs_parquet(path))
    assert len(shipped) == entry["n_docs"]
    assert {str(a): n for a, n in sorted(Counter(d["answer"] for d in shipped).items())} == entry["answer_histogram"]
    # The recorded command regenerates the same bytes.
    write_splits(tmp_path, entry["seed"], {"test": entry["n_docs"]}, entry["command"])
    assert (tmp_path / "test.parquet").read_bytes() == path.read_bytes()


def test_a_preset_makes_a_task_folder_rendered_that_way(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import load_yaml_config

    from visheads_eval.data.task_folders import missing_task_data

    out = tmp_path / "synth_paper"
    assert _visheads("data", "synth", str(out), "--split", "train=3", "--preset", "paper") == 2
    assert "--preset writes tasks that read the 'test' split: add --split test=N" in capsys.readouterr().err
    assert _visheads("data", "synth", str(out), "--split", "test=7", "--preset", "paper") == 0
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["command"].endswith("--split=test=7 --preset=paper")
    config = load_yaml_config(str(out / "pointqa_visual_object.yaml"), mode="full")
    assert config["lmms_eval_specific_kwargs"]["default"]["preset"] == config["metadata"]["preset"] == "paper"
    (doc, *_) = read_docs_parquet(out / "data" / "test.parquet")
    kwargs = {**config["lmms_eval_specific_kwargs"], **config["lmms_eval_specific_kwargs"]["default"]}
    assert config["doc_to_text"](doc, kwargs).endswith(
        " The exemplary object is within the rectangle.\nAnswer the question using a single word or phrase."
    )
    manager = TaskManager("ERROR", include_path=[str(out), str(tasks_dir())])
    assert manager.task_index["pointqa_plain_general"]["yaml_path"] == str(out / "pointqa_plain_general.yaml")
    assert missing_task_data(["pointqa"], manager.task_index) == []
    assert _visheads("data", "synth", str(out), "--split", "test=7", "--preset", "visheads") == 2
    assert "already holds task YAMLs" in capsys.readouterr().err
