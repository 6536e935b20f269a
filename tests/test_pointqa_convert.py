"""`visheads data pointqa`: LookTwice-QA and ViP-LLaVA files plus a Visual Genome folder -> a PointQA task folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pyarrow.parquet as pq
import pytest
from lmms_eval.tasks import TaskManager
from lmms_eval.utils import load_yaml_config
from PIL import Image

from visheads_eval.data import pointqa_convert
from visheads_eval.data.pointqa_convert import convert_pointqa
from visheads_eval.data.task_folders import POINTQA_DATA, missing_task_data
from visheads_eval.errors import VisheadsError
from visheads_eval.resources import tasks_dir

BIN = Path(sys.executable).parent
QUESTIONS = {
    "General_question": "How many of these are there?",
    "Obj_question": "How many clocks are there?",
    "Super_question": "How many of these devices are there?",
}


def _jpeg(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=90)
    return path.read_bytes()


def _visual_genome(root: Path) -> dict[str, bytes]:
    """A Visual Genome folder: images in VG_100K and VG_100K_2, one broken file; returns bytes by image id."""
    images = {
        "2414753": _jpeg(root / "VG_100K_2" / "2414753.jpg", (120, 90), (10, 120, 200)),
        "150444": _jpeg(root / "VG_100K" / "150444.jpg", (80, 100), (200, 30, 30)),
        "61558": _jpeg(root / "VG_100K" / "61558.jpg", (64, 64), (30, 200, 30)),
    }
    (root / "VG_100K" / "31.jpg").write_bytes(b"this is not a jpeg")
    return images


def _looktwice_file(path: Path) -> Path:
    """Mani et al.'s layout: {image_id: [qa, ...]} with VG object boxes; some entries are broken on purpose."""
    vg_box = {"x": 10, "y": 5, "w": 20, "h": 30, "names": ["clock"], "object_id": 1058498}
    data = {
        "2414753": [
            {"id": 2414753, **QUESTIONS, "ans": "3", "bbox": vg_box, "obj_type": "clocks", "point": {"x": 20, "y": 20, "ans": "3"}},
            {"id": 2414753, **QUESTIONS, "ans": "7", "bbox": [50, 40, 60, 45], "obj_type": "clocks", "super_type": "devices"},
            {"id": 2414753, **QUESTIONS, "ans": "0", "bbox": vg_box, "obj_type": "clocks"},
        ],
        "150444": [
            {"id": 150444, **QUESTIONS, "ans": "2", "bbox": {"x": 0, "y": 0, "w": 0, "h": 10}, "obj_type": "clocks"},
            {"id": 150444, "General_question": "How many of these are there?", "ans": "2", "bbox": vg_box},
        ],
        "999": [{"id": 999, **QUESTIONS, "ans": "1", "bbox": vg_box, "obj_type": "clocks"}],
        "31": [{"id": 31, **QUESTIONS, "ans": "4", "bbox": vg_box, "obj_type": "clocks"}],
        "61558": [{"id": 61558, **QUESTIONS, "ans": 5, "bbox": {"x": 60, "y": 60, "w": 10, "h": 10}, "obj_type": "clocks"}],
    }
    path.write_text(json.dumps(data))
    return path


def _read(folder: Path) -> list[dict]:
    table = datasets.load_dataset("parquet", data_files=str(folder / POINTQA_DATA), split="train")
    return list(table)


def test_looktwice_layout_converts_good_entries_and_reports_every_skipped_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    originals = _visual_genome(tmp_path / "vg")
    source = _looktwice_file(tmp_path / "looktwiceqa_dataset.json")
    out = tmp_path / "pointqa_vg"
    summary = convert_pointqa(source, tmp_path / "vg", out, progress=False)

    docs = _read(out)
    assert [d["id"] for d in docs] == ["2414753-0", "2414753-1", "61558-0"]
    first, second, _ = docs
    assert (first["image_width"], first["image_height"]) == (120, 90)
    assert first["bbox"] == [10.0, 5.0, 20.0, 30.0] and second["bbox"] == [50.0, 40.0, 60.0, 45.0]
    assert [d["answer"] for d in docs] == [3, 7, 5]
    assert first["general_question"] == QUESTIONS["General_question"] and first["obj_question"] == QUESTIONS["Obj_question"]
    assert (first["object"], first["supercategory"]) == ("clocks", "devices"), "supercategory read from the super question"
    assert second["supercategory"] == "devices" and first["source"] == "looktwiceqa"
    stored = pq.read_table(out / POINTQA_DATA).column("image").to_pylist()
    assert [s["bytes"] for s in stored] == [originals["2414753"], originals["2414753"], originals["61558"]], "original bytes, unchanged"
    assert isinstance(first["image"], Image.Image) and first["image"].size == (120, 90)

    skipped = pd.read_csv(out / "skipped.csv", dtype=str)
    assert list(skipped["id"]) == ["2414753-2", "150444-0", "150444-1", "999-0", "31-0"]
    by_id = dict(zip(skipped["id"], skipped["problem"], strict=True))
    assert by_id == {
        "2414753-2": "malformed entry",
        "150444-0": "malformed entry",
        "150444-1": "malformed entry",
        "999-0": "missing image",
        "31-0": "unreadable image",
    }
    reasons = dict(zip(skipped["id"], skipped["reason"], strict=True))
    assert reasons["2414753-2"] == "answer 0 is not a count from 1 to 7"
    assert "non-positive width or height" in reasons["150444-0"]
    assert reasons["150444-1"] == "missing or empty field 'obj_question'"
    assert reasons["999-0"].startswith(f"image 999.jpg not found under {tmp_path / 'vg'}")
    assert reasons["31-0"].startswith(f"cannot read image {tmp_path / 'vg' / 'VG_100K' / '31.jpg'}")

    report = json.loads((out / "conversion.json").read_text())
    assert (report["entries"], report["converted"], report["skipped"]) == (8, 3, 5)
    assert report["skipped_by_problem"] == {"malformed entry": 3, "missing image": 1, "unreadable image": 1}
    assert summary.line() == (
        f"converted 3 of 8 entries (looktwice) into {out / POINTQA_DATA}; skipped 5 "
        f"(malformed entry: 3, missing image: 1, unreadable image: 1), listed in {out / 'skipped.csv'}"
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["data", "skipped.csv", "conversion.json", "_default_template_yaml", "pointqa.yaml"]
        + [f"pointqa_{r}_{q}.yaml" for r in ("plain", "visual") for q in ("general", "object", "super")]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder is left behind"


def test_split_images_keep_one_split(tmp_path: Path) -> None:
    _visual_genome(tmp_path / "vg")
    source = _looktwice_file(tmp_path / "looktwiceqa_dataset.json")
    (tmp_path / "looktwiceqa_test_imgs.json").write_text(json.dumps(["61558", "31"]))
    summary = convert_pointqa(
        source, tmp_path / "vg", tmp_path / "out", split_images=tmp_path / "looktwiceqa_test_imgs.json", progress=False
    )
    assert [d["id"] for d in _read(tmp_path / "out")] == ["61558-0"]
    assert (summary.entries, summary.converted, [s[0] for s in summary.skipped]) == (2, 1, ["31-0"])


def test_vip_layout_boxes_are_corners_and_images_are_found_by_name(tmp_path: Path) -> None:
    originals = _visual_genome(tmp_path / "vg")
    entries = [
        {
            "id": "pointQA_twice-test-0",
            "image": "vg/VG_100K_2/2414753.jpg",
            "bboxes": [[72, 61, 100, 80]],
            "answer": "3",
            "general_question": "How many of these are there?",
            "obj_question": "How many clocks are there?",
            "super_question": "How many of these devices are there?",
        },
        {
            "id": "pointQA_twice-test-1",
            "image": "VG_100K/150444.jpg",
            "bboxes": [[1, 2, 30, 40], [5, 5, 9, 9]],
            "answer": "2",
            "general_question": "How many of these are there?",
            "obj_question": "How many cats are there?",
            "super_question": "How many of these animals are there?",
        },
        {
            "id": "pointQA_twice-test-2",
            "image": "VG_100K/150444.jpg",
            "bboxes": [[30, 40, 1, 2]],
            "answer": "2",
            "general_question": "x",
            "obj_question": "y",
            "super_question": "z",
        },
        {
            "id": "pointQA_twice-test-0",
            "image": "VG_100K/61558.jpg",
            "bboxes": [[1, 1, 9, 9]],
            "answer": "1",
            "general_question": "How many of these are there?",
            "obj_question": "How many people are in the picture?",
            "super_question": "How many beings are there?",
        },
        {
            "id": "pointQA_twice-test-3",
            "image": "VG_100K/61558.jpg",
            "bboxes": [[1, 1, 9, 9]],
            "answer": "1",
            "general_question": "How many of these are there?",
            "obj_question": "How many people are in the picture?",
            "super_question": "How many beings are there?",
        },
    ]
    (tmp_path / "pointQA_twice_test.json").write_text(json.dumps(entries))
    summary = convert_pointqa(tmp_path / "pointQA_twice_test.json", tmp_path / "vg", tmp_path / "out", progress=False)
    assert summary.layout == "vip"
    docs = _read(tmp_path / "out")
    assert [d["id"] for d in docs] == ["pointQA_twice-test-0", "pointQA_twice-test-3"]
    assert docs[0]["bbox"] == [72.0, 61.0, 28.0, 19.0], "[x1, y1, x2, y2] -> [x, y, w, h]"
    assert pq.read_table(tmp_path / "out" / POINTQA_DATA).column("image")[0].as_py()["bytes"] == originals["2414753"]
    assert (docs[0]["object"], docs[0]["supercategory"], docs[0]["source"]) == ("clocks", "devices", "vipllava_pointqa_twice")
    assert (docs[1]["object"], docs[1]["supercategory"]) == ("people", ""), "no supercategory in 'How many beings are there?'"
    assert [(i, kind) for i, kind, _ in summary.skipped] == [
        ("pointQA_twice-test-1", "malformed entry"),
        ("pointQA_twice-test-2", "malformed entry"),
        ("pointQA_twice-test-0", "duplicate id"),
    ]
    assert "is not a list of one [x1, y1, x2, y2] box" in summary.skipped[0][2]
    assert summary.skipped[1][2] == "box [30, 40, 1, 2] has x2 <= x1 or y2 <= y1"


def test_strict_stops_at_the_first_problem_and_writes_nothing(tmp_path: Path) -> None:
    _visual_genome(tmp_path / "vg")
    source = _looktwice_file(tmp_path / "looktwiceqa_dataset.json")
    done = subprocess.run(
        [
            str(BIN / "visheads"),
            "data",
            "pointqa",
            str(source),
            "--images",
            str(tmp_path / "vg"),
            "--out",
            str(tmp_path / "out"),
            "--strict",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "visheads: error: entry 2414753-2: answer 0 is not a count from 1 to 7 (--strict stops at the first problem)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["looktwiceqa_dataset.json", "vg"]


def test_command_prints_the_summary_and_the_folder_runs_as_the_pointqa_tasks(tmp_path: Path) -> None:
    _visual_genome(tmp_path / "vg")
    source = _looktwice_file(tmp_path / "looktwiceqa_dataset.json")
    out = tmp_path / "pointqa_vg"
    done = subprocess.run(
        [str(BIN / "visheads"), "data", "pointqa", str(source), "--images", str(tmp_path / "vg"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        (
            f"converted 3 of 8 entries (looktwice) into {out / POINTQA_DATA}; skipped 5 "
            f"(malformed entry: 3, missing image: 1, unreadable image: 1), listed in {out / 'skipped.csv'}"
        ),
        f"run: lmms_eval --include_path {out} --tasks pointqa ...",
    ]
    # The folder's tasks replace the shipped ones when it is passed first, as `lmms_eval` does.
    manager = TaskManager("ERROR", include_path=[str(out), str(tasks_dir())])
    assert manager.task_index["pointqa_visual_object"]["yaml_path"] == str(out / "pointqa_visual_object.yaml")
    assert missing_task_data(["pointqa"], manager.task_index) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "cannot tell the layout of the source file"),
        ("{}", r"has no entries \(for the selected split\); nothing to convert"),
    ],
)
def test_unusable_source_files_fail_with_one_line_and_write_nothing(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "vg").mkdir()
    (tmp_path / "source.json").write_text(content)
    with pytest.raises(VisheadsError, match=message):
        convert_pointqa(tmp_path / "source.json", tmp_path / "vg", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_nothing_convertible_names_the_first_problem(tmp_path: Path) -> None:
    (tmp_path / "vg").mkdir()
    (tmp_path / "source.json").write_text(json.dumps({"5": [{"id": 5, **QUESTIONS, "ans": "2", "bbox": [1, 1, 4, 4]}]}))
    with pytest.raises(VisheadsError) as error:
        convert_pointqa(tmp_path / "source.json", tmp_path / "vg", tmp_path / "out", progress=False)
    assert str(error.value).startswith("none of the 1 entries of")
    assert "the first, 5-0: image 5.jpg not found" in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["source.json", "vg"]


def test_existing_output_is_kept_unless_overwrite_and_a_failure_midway_leaves_it_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _visual_genome(tmp_path / "vg")
    source = _looktwice_file(tmp_path / "looktwiceqa_dataset.json")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(VisheadsError, match="already exists; choose another --out or pass --overwrite"):
        convert_pointqa(source, tmp_path / "vg", out, progress=False)

    def broken_copy(folder: Path, preset: str) -> None:
        raise OSError("disk full (injected)")

    monkeypatch.setattr(pointqa_convert, "copy_pointqa_tasks", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        convert_pointqa(source, tmp_path / "vg", out, overwrite=True, progress=False)
    assert sorted(os.listdir(out)) == ["mine.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    monkeypatch.undo()
    convert_pointqa(source, tmp_path / "vg", out, overwrite=True, progress=False)
    assert not (out / "mine.txt").exists() and (out / POINTQA_DATA).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_layout_and_split_images_with_vip_are_refused(tmp_path: Path) -> None:
    (tmp_path / "vg").mkdir()
    (tmp_path / "source.json").write_text("[]")
    with pytest.raises(VisheadsError, match="unknown layout 'looktwise' \\(did you mean 'looktwice'\\?\\)"):
        convert_pointqa(tmp_path / "source.json", tmp_path / "vg", tmp_path / "out", layout="looktwise", progress=False)
    (tmp_path / "split.json").write_text("[]")
    with pytest.raises(VisheadsError, match="--split-images applies to the looktwice layout"):
        convert_pointqa(
            tmp_path / "source.json", tmp_path / "vg", tmp_path / "out", layout="vip", split_images=tmp_path / "split.json", progress=False
        )
    with pytest.raises(VisheadsError, match="image folder .* does not exist"):
        convert_pointqa(tmp_path / "source.json", tmp_path / "nowhere", tmp_path / "out", progress=False)


def test_looktwice_entries_as_a_plain_list_name_their_image_by_id(tmp_path: Path) -> None:
    _visual_genome(tmp_path / "vg")
    box = [1, 2, 3, 4]
    entries = [
        {"image_id": "61558", **QUESTIONS, "answer": 2, "bbox": box},
        {"id": 61558, **QUESTIONS, "ans": "4", "bbox": box},
        {**QUESTIONS, "ans": "4", "bbox": box},
    ]
    (tmp_path / "source.json").write_text(json.dumps(entries))
    summary = convert_pointqa(tmp_path / "source.json", tmp_path / "vg", tmp_path / "out", layout="looktwice", progress=False)
    assert [(d["id"], d["answer"]) for d in _read(tmp_path / "out")] == [("61558-0", 2), ("61558-1", 4)]
    assert summary.skipped == [("#2", "malformed entry", "missing field 'id' (the Visual Genome image id)")]


def test_paper_preset_tasks_and_a_folder_others_can_read(tmp_path: Path) -> None:
    _visual_genome(tmp_path / "vg")
    source = _looktwice_file(tmp_path / "looktwiceqa_dataset.json")
    out = tmp_path / "pointqa_vg"
    done = subprocess.run(
        [str(BIN / "visheads"), "data", "pointqa", str(source), "--images", str(tmp_path / "vg"), "--out", str(out), "--preset", "paper"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask, "the usual permissions, not mkdtemp's 0700"
    assert json.loads((out / "conversion.json").read_text())["preset"] == "paper"
    doc = _read(out)[0]
    for task in [f"pointqa_{r}_{q}" for r in ("plain", "visual") for q in ("general", "object", "super")]:
        config = load_yaml_config(str(out / f"{task}.yaml"), mode="full")
        kwargs = {**config["lmms_eval_specific_kwargs"], **config["lmms_eval_specific_kwargs"]["default"]}
        assert kwargs["preset"] == config["metadata"]["preset"] == "paper"
        text = config["doc_to_text"](doc, kwargs)
        assert text.endswith("\nAnswer the question using a single word or phrase.")
        assert ("The exemplary object is within the rectangle." in text) == task.startswith("pointqa_visual")
    manager = TaskManager("ERROR", include_path=[str(out), str(tasks_dir())])
    assert missing_task_data(["pointqa"], manager.task_index) == []


def test_a_missing_answer_is_named() -> None:
    data = {"61558": [{"id": 61558, **QUESTIONS, "bbox": {"x": 1, "y": 1, "w": 9, "h": 9}, "obj_type": "clocks"}]}
    ((entry_id, problem),) = list(pointqa_convert.read_entries(data, "looktwice"))
    assert (entry_id, problem.reason) == ("61558-0", "missing field 'answer' (or 'ans')")
