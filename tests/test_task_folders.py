"""Task folders: task YAMLs written back as lmms-eval reads them, and the check of a task's local data."""

from __future__ import annotations

from pathlib import Path

from lmms_eval.utils import load_yaml_config

from visheads_eval.data.task_folders import (
    FunctionRef,
    missing_task_data,
    read_task_yaml,
    task_yaml_text,
)
from visheads_eval.resources import tasks_dir


def test_rewritten_task_yaml_loads_in_lmms_eval_as_the_original(tmp_path: Path) -> None:
    original = tasks_dir() / "benchmarks" / "qbench_dev_local.yaml"
    config = read_task_yaml(original)
    assert config["process_results"] == FunctionRef("visheads_eval.data.local_benchmarks.qbench_process_results")
    (tmp_path / "qbench_dev_local.yaml").write_text(task_yaml_text(config))
    ours = load_yaml_config(str(tmp_path / "qbench_dev_local.yaml"), mode="full")
    theirs = load_yaml_config(str(original), mode="full")
    assert ours.keys() == theirs.keys()
    assert (
        ours["lmms_eval_specific_kwargs"]["default"]["post_prompt"] == "Answer with the option's letter from the given choices directly.\n"
    )
    for key in ours:
        if key != "metric_list":
            assert ours[key] == theirs[key], key
    assert ours["metric_list"][0]["aggregation"] is theirs["metric_list"][0]["aggregation"]


def _task(folder: Path, name: str, data_files: str) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(f"task: {name}\ndataset_path: parquet\ndataset_kwargs:\n  data_files:\n    test: {data_files}\n")
    return str(path)


def test_missing_data_is_found_through_tags_and_groups_and_globs_and_urls_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "present.parquet").write_bytes(b"")
    group = tmp_path / "grp.yaml"
    group.write_text("group: grp\ntask:\n  - in_group\n")
    index = {
        "tagged": {"type": "tag", "task": ["missing_one", "present_one"], "yaml_path": -1},
        "grp": {"type": "group", "task": -1, "yaml_path": str(group)},
        "missing_one": {"type": "task", "yaml_path": _task(tmp_path, "missing_one", "nowhere.parquet")},
        "present_one": {"type": "task", "yaml_path": _task(tmp_path, "present_one", str(tmp_path / "present.parquet"))},
        "in_group": {"type": "task", "yaml_path": _task(tmp_path, "in_group", "/abs/missing.parquet")},
        "globbed": {"type": "task", "yaml_path": _task(tmp_path, "globbed", "shards/*.parquet")},
        "remote": {"type": "task", "yaml_path": _task(tmp_path, "remote", "https://example.org/x.parquet")},
    }
    assert missing_task_data(["tagged", "grp", "globbed", "remote", "unknown"], index) == [
        f"task 'missing_one' has no data: {tmp_path / 'nowhere.parquet'} does not exist; fix dataset_kwargs.data_files in its YAML",
        "task 'in_group' has no data: /abs/missing.parquet does not exist; fix dataset_kwargs.data_files in its YAML",
    ]
