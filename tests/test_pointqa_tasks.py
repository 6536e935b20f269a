"""The six PointQA lmms-eval tasks and their group: prompts, box drawing, scoring, and a full run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lmms_eval.utils import load_yaml_config

from fixtures.pointqa_docs import BOX_TEXT, pointqa_docs
from fixtures.task_kwargs import task_kwargs
from visheads_eval.data.pointqa import DEFAULT_PRESET
from visheads_eval.data.pointqa_parquet import write_pointqa_parquet
from visheads_eval.data.pointqa_task import (
    pointqa_doc_to_text,
    pointqa_doc_to_visual,
    pointqa_process_results,
)
from visheads_eval.data.task_folders import POINTQA_DATA, copy_pointqa_tasks
from visheads_eval.errors import VisheadsError
from visheads_eval.lmms import runner
from visheads_eval.records import load_records
from visheads_eval.resources import tasks_dir

BIN = Path(sys.executable).parent
TASKS = [f"pointqa_{rendering}_{kind}" for rendering in ("plain", "visual") for kind in ("general", "object", "super")]
QUESTIONS = {
    "general": "How many of these are there?",
    "object": "How many red circles are there?",
    "super": "How many of these circles are there?",
}


def test_shipped_tasks_share_the_template_and_the_defaults_of_the_shared_prompt_code() -> None:
    for task in TASKS:
        config = load_yaml_config(str(tasks_dir() / "pointqa" / f"{task}.yaml"), mode="full")
        assert config["task"] == task and config["output_type"] == "generate_until"
        assert config["metadata"]["version"] is not None
        assert [m["metric"] for m in config["metric_list"]] == ["pointqa_acc"]
        kwargs = config["lmms_eval_specific_kwargs"]["default"]
        _, rendering, kind = task.split("_")
        assert (kwargs["question"], kwargs["rendering"]) == (kind, rendering)
        assert kwargs["preset"] == config["metadata"]["preset"] == DEFAULT_PRESET == "visheads", "the organism is trained on it"
    group = load_yaml_config(str(tasks_dir() / "pointqa" / "pointqa.yaml"), mode="simple")
    assert group["group"] == "pointqa" and sorted(group["task"]) == sorted(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_prompts_name_the_question_and_give_the_box_in_text_only_when_plain(task: str) -> None:
    _, rendering, kind = task.split("_")
    for doc in pointqa_docs():
        text = pointqa_doc_to_text(doc, task_kwargs(task))
        box = f" The object is at {BOX_TEXT[doc['id']]}." if rendering == "plain" else ""
        assert text == f"{QUESTIONS[kind]}{box}\nAnswer with a single number."


def test_visual_rendering_draws_the_yaml_box_and_plain_leaves_the_image_alone() -> None:
    doc = pointqa_docs()[0]  # 100x80, box x 10..39, y 20..59
    (plain,) = pointqa_doc_to_visual(doc, task_kwargs("pointqa_plain_general"))
    assert list(plain.getdata()) == list(doc["image"].getdata())
    (visual,) = pointqa_doc_to_visual(doc, task_kwargs("pointqa_visual_general"))
    assert visual.size == (100, 80)
    red = (255, 0, 0)
    assert visual.getpixel((10, 20)) == red and visual.getpixel((39, 59)) == red and visual.getpixel((12, 40)) == red
    assert visual.getpixel((13, 40)) == doc["image"].getpixel((13, 40)), "a 3-pixel outline, not more"
    assert doc["image"].getpixel((10, 20)) == (200, 200, 200), "the doc's image is not drawn on"

    thin_blue = {**task_kwargs("pointqa_visual_general"), "box_colour": "blue", "box_width": 1}
    (visual,) = pointqa_doc_to_visual(doc, thin_blue)
    assert visual.getpixel((10, 40)) == (0, 0, 255) and visual.getpixel((11, 40)) == doc["image"].getpixel((11, 40))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"question": "generl"}, "question 'generl' is not one of general, object, super (did you mean 'general'?)"),
        ({"rendering": "visuel"}, "(did you mean 'visual'?)"),
        ({"box_color": "red"}, "unknown lmms_eval_specific_kwargs key 'box_color' (did you mean 'box_colour'?)"),
        ({"box_colour": "redd"}, "box_colour 'redd' is not a colour"),
        ({"box_width": 0}, "box_width 0 is not a positive number"),
    ],
)
def test_bad_task_settings_fail_with_one_clear_line(change: dict, message: str) -> None:
    kwargs = {**task_kwargs("pointqa_visual_general"), **change}
    with pytest.raises(VisheadsError) as error:
        pointqa_doc_to_visual(pointqa_docs()[0], kwargs)
    assert message in str(error.value)


def test_scoring_reads_the_first_number() -> None:
    doc = {"answer": 3}
    assert pointqa_process_results(doc, ["3"]) == {"pointqa_acc": 1.0}
    assert pointqa_process_results(doc, ["There are three of them."]) == {"pointqa_acc": 1.0}
    assert pointqa_process_results(doc, ["4, not 3"]) == {"pointqa_acc": 0.0}
    assert pointqa_process_results(doc, ["none"]) == {"pointqa_acc": 0.0}


def _first_count(answer: str) -> int | None:
    """Independent reading of an answer: the first run of digits (the tiny vocabulary has no number words)."""
    match = re.search(r"\d+", answer)
    return int(match.group()) if match else None


@pytest.mark.slow
def test_all_six_tasks_run_through_lmms_eval_on_a_task_folder_and_record_their_regions(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "tasks" / "pointqa"
    folder.mkdir(parents=True)
    copy_pointqa_tasks(folder)
    docs = pointqa_docs()
    write_pointqa_parquet(docs, folder / POINTQA_DATA)
    out = tmp_path / "run" / "out"
    out.parent.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [
            str(BIN / "lmms_eval"),
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained={tiny_models['llava_llama']},record={tmp_path / 'records'}",
            "--tasks",
            "pointqa",
            "--include_path",
            str(folder),
            "--output_path",
            str(out),
            "--log_samples",
        ],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = out.glob("*/*_results.json")
    results = json.loads(results_file.read_text())
    assert results["configs"]["pointqa_plain_general"]["dataset_kwargs"]["data_files"]["test"] == str(folder / POINTQA_DATA)

    all_scores, numbers_given = [], 0
    for task in TASKS:
        (samples_file,) = out.glob(f"*/*_samples_{task}.jsonl")
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        assert sorted(s["doc_id"] for s in samples) == list(range(len(docs)))
        _, rendering, kind = task.split("_")
        scores = []
        for sample in samples:
            doc = docs[sample["doc_id"]]
            assert sample["target"] == str(doc["answer"])
            box = f" The object is at {BOX_TEXT[doc['id']]}." if rendering == "plain" else ""
            assert sample["input"] == f"{QUESTIONS[kind]}{box}\nAnswer with a single number."
            numbers_given += _first_count(sample["filtered_resps"]) is not None
            expected = float(_first_count(sample["filtered_resps"]) == doc["answer"])
            assert sample["pointqa_acc"] == expected
            scores.append(expected)
        assert results["results"][task]["pointqa_acc,none"] == pytest.approx(sum(scores) / len(scores))
        all_scores += scores
    assert results["results"]["pointqa"]["pointqa_acc,none"] == pytest.approx(sum(all_scores) / len(all_scores))
    assert numbers_given > 0, "the tiny model never answered with a number: the scoring was not exercised"

    # llava_visheads reads each doc's box (and the image it is given) to record region attention.
    meta = load_records(tmp_path / "records", progress=False).meta
    assert sorted(set(meta["task"])) == sorted(TASKS) and len(meta) == len(TASKS) * len(docs)
    for row in meta.itertuples():
        doc = docs[row.doc_id]
        assert list(row.bbox) == doc["bbox"]
        assert (row.image_width, row.image_height) == (doc["image_width"], doc["image_height"])
        assert 0 < row.n_region_tokens < row.n_image_tokens


def test_a_task_folder_without_its_data_fails_before_loading_a_model(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    copy_pointqa_tasks(tmp_path)
    argv = ["--model", "llava_visheads", "--model_args", f"pretrained={tiny_models['llava_llama']}", "--tasks", "pointqa"]
    with pytest.raises(VisheadsError) as error:
        runner.run([*argv, "--include_path", str(tmp_path)])
    assert str(error.value) == (
        f"task 'pointqa_plain_general' has no data: {tmp_path / POINTQA_DATA} does not exist; "
        "convert PointQA with `visheads data pointqa ... --out DIR` (or generate it) and pass --include_path DIR"
    )
