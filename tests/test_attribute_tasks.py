"""The four attribute tasks (tasks/pointqa/pointqa_{plain,visual}_{colour,shape}.yaml): the colour or the shape of the
pointed object, box in the text or drawn, on the shipped synthetic test scenes."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from lmms_eval.utils import load_yaml_config
from PIL import Image

from fixtures.pointqa_docs import BOX_TEXT, pointqa_docs
from fixtures.task_kwargs import task_kwargs
from visheads_eval.data import synth
from visheads_eval.data.attribute_task import (
    attribute_doc_to_text,
    attribute_doc_to_visual,
    colour_process_results,
    colour_target,
    shape_process_results,
    shape_target,
)
from visheads_eval.data.task_folders import copy_pointqa_tasks, read_task_yaml
from visheads_eval.errors import VisheadsError
from visheads_eval.resources import tasks_dir

TASKS = [f"pointqa_{rendering}_{attribute}" for rendering in ("plain", "visual") for attribute in ("colour", "shape")]


def test_shipped_tasks_ask_what_their_names_say_and_form_a_group() -> None:
    for task in TASKS:
        config = load_yaml_config(str(tasks_dir() / "pointqa" / f"{task}.yaml"), mode="full")
        _, rendering, attribute = task.split("_")
        assert config["task"] == task
        assert config["dataset_kwargs"]["data_files"]["test"] == str(tasks_dir() / "pointqa" / "data" / "test.parquet")
        assert config["lmms_eval_specific_kwargs"]["default"] == {"attribute": attribute, "rendering": rendering}
        assert [m["metric"] for m in config["metric_list"]] == ["attribute_acc"]
        assert config["doc_to_target"].__name__ == f"{attribute}_target"
        assert config["process_results"].__name__ == f"{attribute}_process_results"
    group = load_yaml_config(str(tasks_dir() / "pointqa" / "pointqa_attributes.yaml"), mode="simple")
    assert group["group"] == "pointqa_attributes" and sorted(group["task"]) == sorted(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_prompts_written_out_by_hand(task: str) -> None:
    _, rendering, attribute = task.split("_")
    for doc in pointqa_docs():
        expected = (
            f"What {attribute} is the object? The object is at {BOX_TEXT[doc['id']]}."
            if rendering == "plain"
            else f"What {attribute} is the object in the box?"
        )
        assert attribute_doc_to_text(doc, task_kwargs(task)) == f"{expected}\nAnswer with a single word."


def test_visual_rendering_draws_the_box_and_plain_leaves_the_image_alone() -> None:
    doc = pointqa_docs()[0]  # 100x80, box x 10..39, y 20..59
    (plain,) = attribute_doc_to_visual(doc, task_kwargs("pointqa_plain_colour"))
    assert list(plain.getdata()) == list(doc["image"].getdata())
    (visual,) = attribute_doc_to_visual(doc, task_kwargs("pointqa_visual_shape"))
    assert visual.getpixel((10, 20)) == (255, 0, 0) and visual.getpixel((39, 59)) == (255, 0, 0)
    assert visual.getpixel((13, 40)) == doc["image"].getpixel((13, 40))


def test_targets_of_the_shipped_scenes_are_the_generators_objects() -> None:
    """The answers read from the shipped parquet equal the pointed object the generator drew (seed 0, split test)."""
    frame = pd.read_parquet(tasks_dir() / "pointqa" / "data" / "test.parquet").head(30)
    for index, row in enumerate(frame.to_dict("records")):
        target = synth.make_scene(0, "test", index).target
        doc = {**row, "image": Image.open(io.BytesIO(row["image"]["bytes"]))}
        assert (colour_target(doc), shape_target(doc)) == (target.colour, target.shape)


def test_scoring_reads_the_first_word() -> None:
    doc = pointqa_docs()[0]  # a red circle
    assert colour_process_results(doc, ["Red."]) == {"attribute_acc": 1.0}
    assert colour_process_results(doc, ["red circle"]) == {"attribute_acc": 1.0}
    assert colour_process_results(doc, ["It is red"]) == {"attribute_acc": 0.0}
    assert colour_process_results(doc, [""]) == {"attribute_acc": 0.0}
    assert shape_process_results(doc, ["circle"]) == {"attribute_acc": 1.0}
    assert shape_process_results(doc, ["red"]) == {"attribute_acc": 0.0}


def test_bad_settings_and_docs_without_a_colour_fail_in_one_line() -> None:
    doc = pointqa_docs()[0]
    with pytest.raises(VisheadsError, match="unknown lmms_eval_specific_kwargs key 'atribute' \\(did you mean 'attribute'\\?\\)"):
        attribute_doc_to_text(doc, {"atribute": "colour", "rendering": "plain"})
    with pytest.raises(VisheadsError, match="needs attribute \\(colour, shape\\) and rendering \\(plain, visual\\), got attribute='size'"):
        attribute_doc_to_text(doc, {"attribute": "size", "rendering": "plain"})
    with pytest.raises(VisheadsError, match="object 'car' is not '<colour> car'; the attribute tasks read synthetic PointQA docs"):
        colour_target({**doc, "object": "car", "supercategory": "car"})


def test_task_folders_copy_the_attribute_tasks_unchanged_where_asked(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    copy_pointqa_tasks(tmp_path / "real", preset="paper")  # e.g. converted LookTwice-QA docs: no colours to ask
    assert not list((tmp_path / "real").glob("*colour*")) and not (tmp_path / "real" / "_attribute_template_yaml").exists()
    tmp_path = tmp_path / "synthetic"
    tmp_path.mkdir()
    copy_pointqa_tasks(tmp_path, preset="paper", attributes=True)
    for task in TASKS:
        assert read_task_yaml(tmp_path / f"{task}.yaml") == read_task_yaml(tasks_dir() / "pointqa" / f"{task}.yaml")
    assert read_task_yaml(tmp_path / "pointqa_plain_general.yaml")["lmms_eval_specific_kwargs"]["default"]["preset"] == "paper"
