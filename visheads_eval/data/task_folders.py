"""Folders of lmms-eval tasks that read a user's data, and the check that a task's local data exists.

A task folder is passed to ``lmms_eval --include_path DIR``; the user's folder comes before the tasks
shipped in ``tasks/``, so its tasks replace the shipped ones of the same name. ``visheads data
pointqa`` writes a folder with the six PointQA tasks (copies of ``tasks/pointqa/``, reading
``data/test.parquet`` next to them), built in a temporary sibling and renamed so that it appears whole;
``visheads data benchmark`` adds one ``<name>_local`` task whose ``data_files`` name the user's parquet
files to a folder. lmms-eval searches an include path recursively, so one parent folder can hold several.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from visheads_eval.data.attribute_task import TASKS as ATTRIBUTE_TASKS
from visheads_eval.data.local_benchmarks import BENCHMARKS, LocalBenchmark
from visheads_eval.data.pointqa import DEFAULT_PRESET, get_preset
from visheads_eval.errors import VisheadsError
from visheads_eval.resources import tasks_dir

POINTQA_DATA = Path("data") / "test.parquet"  # relative to the PointQA task folder
# The attribute tasks' files among the shipped PointQA tasks (visheads_eval.data.attribute_task).
ATTRIBUTE_TASK_FILES = frozenset(["_attribute_template_yaml", "pointqa_attributes.yaml", *(f"{task}.yaml" for task in ATTRIBUTE_TASKS)])
_LOCAL_BUILDERS = ("csv", "json", "parquet", "text", "pandas", "arrow")  # lmms-eval's local dataset_path values


class FunctionRef(str):
    """A ``!function module.name`` value of a task YAML, kept as written."""


class _TaskLoader(yaml.SafeLoader):
    pass


class _TaskDumper(yaml.SafeDumper):
    pass


_TaskLoader.add_constructor("!function", lambda loader, node: FunctionRef(loader.construct_scalar(node)))
_TaskDumper.add_representer(FunctionRef, lambda dumper, value: dumper.represent_scalar("!function", str(value)))
# Prompts such as "\nAnswer with ..." stay on one line, with their escapes, as in the shipped YAMLs.
_TaskDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)
)


def read_task_yaml(path: Path) -> dict[str, Any]:
    """A task YAML as a dict; ``!function`` values become :class:`FunctionRef`."""
    with open(path, encoding="utf-8") as file:
        return yaml.load(file, Loader=_TaskLoader)


def task_yaml_text(config: dict[str, Any]) -> str:
    return yaml.dump(config, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True)


def copy_pointqa_tasks(folder: Path, preset: str = DEFAULT_PRESET, attributes: bool = False) -> list[Path]:
    """Copy the shipped PointQA task YAMLs (the six counting tasks, their template, the group) into ``folder``, the
    six rendering with ``preset`` (said in their ``lmms_eval_specific_kwargs`` and their metadata); with
    ``attributes``, the four attribute tasks too (:data:`ATTRIBUTE_TASK_FILES`: they read synthetic docs only,
    whose object is "<colour> <shape>", and draw the ``visheads`` box)."""
    get_preset(preset)
    source = tasks_dir() / "pointqa"
    copied = []
    for path in sorted(source.iterdir()):
        if not (path.is_file() and (path.suffix == ".yaml" or path.name.endswith("_yaml"))):
            continue
        if path.name in ATTRIBUTE_TASK_FILES and not attributes:
            continue
        target = folder / path.name
        config = read_task_yaml(path) if path.suffix == ".yaml" else {}
        if "preset" in config.get("lmms_eval_specific_kwargs", {}).get("default", {}):
            config["lmms_eval_specific_kwargs"]["default"]["preset"] = preset
            config["metadata"]["preset"] = preset
            target.write_text(task_yaml_text(config))
        else:
            shutil.copy2(path, target)
        copied.append(target)
    return copied


def benchmark_task_config(benchmark: LocalBenchmark, files: Sequence[Path]) -> dict[str, Any]:
    """The shipped ``<name>_local`` task reading ``files`` (absolute paths) instead of its default data."""
    config = read_task_yaml(tasks_dir() / "benchmarks" / f"{benchmark.task}.yaml")
    config["dataset_kwargs"] = {**config["dataset_kwargs"], "data_files": {benchmark.split: [str(Path(f).absolute()) for f in files]}}
    return config


def write_benchmark_task(benchmark: LocalBenchmark, files: Sequence[Path], folder: Path, overwrite: bool = False) -> Path:
    """Write ``folder/<task>.yaml``, the local task reading ``files``; other files in ``folder`` stay as they are."""
    path = Path(folder).absolute() / f"{benchmark.task}.yaml"
    if path.exists() and not overwrite:
        raise VisheadsError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(task_yaml_text(benchmark_task_config(benchmark, files)), encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _data_paths(data_files: Any) -> Iterator[str]:
    if isinstance(data_files, str):
        yield data_files
    elif isinstance(data_files, dict):
        for value in data_files.values():
            yield from _data_paths(value)
    elif isinstance(data_files, list):
        for value in data_files:
            yield from _data_paths(value)


def _how_to_fix(task: str) -> str:
    for benchmark in BENCHMARKS.values():
        if benchmark.task == task:
            return f"point it at your files with `visheads data benchmark {benchmark.name} FILES --out DIR` and pass --include_path DIR"
    if task.startswith("pointqa"):
        return "convert PointQA with `visheads data pointqa ... --out DIR` (or generate it) and pass --include_path DIR"
    return "fix dataset_kwargs.data_files in its YAML"


def missing_task_data(names: Iterable[str], task_index: dict[str, dict]) -> list[str]:
    """One line per task among ``names`` (groups and tags expanded) whose local data files do not exist.

    Only tasks reading local files (``dataset_path: parquet``, ``json`` ...) are checked; glob patterns
    and URLs are left to the datasets library.
    """
    from lmms_eval import utils as lmms_utils

    problems: list[str] = []
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop(0)
        entry = task_index.get(name)
        if name in seen or entry is None:
            continue
        seen.add(name)
        if entry["type"] == "tag":
            pending.extend(entry["task"])
            continue
        if entry["yaml_path"] == -1:
            continue
        config = lmms_utils.load_yaml_config(entry["yaml_path"], mode="simple")
        if "group" in config and "task" in config:
            pending.extend(task for task in config["task"] if isinstance(task, str))
            continue
        if config.get("dataset_path") not in _LOCAL_BUILDERS:
            continue
        for data in _data_paths((config.get("dataset_kwargs") or {}).get("data_files")):
            if glob.has_magic(data) or "://" in data or os.path.exists(data):
                continue
            expected = data if os.path.isabs(data) else os.path.join(os.path.dirname(entry["yaml_path"]), data)
            problems.append(f"task '{name}' has no data: {expected} does not exist; {_how_to_fix(name)}")
    return problems
