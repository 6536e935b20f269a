"""Every place visheads_eval reaches into lmms-eval beyond its public API, each a context manager that
restores what it changed on exit, also after an error. ``tests/test_shims.py`` checks that each attribute
reached still exists with the signature used here, and names this module when lmms-eval changes it.

- :func:`reusing_task_index`: ``TaskManager._get_task_and_group`` indexes a task folder (seconds, every time);
- :func:`capturing_failures`: ``lmms_eval.__main__.cli_evaluate_single`` prints an evaluation's exception
  and returns, so the exit status would be 0;
- :func:`annotating_results`: ``EvaluationTracker.save_results_aggregated`` writes the results file, which
  gets the run's ``visheads`` block (lmms-eval offers no hook for a model's information);
- :func:`llava_family_known_to_llava_hf`: ``lmms_eval.models.simple.llava_hf.model_map`` lists the classes
  ``llava_hf`` loads (not ViP-LLaVA or OneVision).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_TASK_INDEX: dict[tuple[str, float], dict] = {}


def _newest_change(folder: str) -> float:
    newest = 0.0
    for root, _, files in os.walk(folder):
        for name in files:
            newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
    return newest


@contextlib.contextmanager
def reusing_task_index() -> Iterator[None]:
    """Index each task folder once per process and content: lmms-eval parses thousands of YAML files
    every time it builds a TaskManager (seconds), once for the name check and again for the run."""
    from lmms_eval.tasks import TaskManager

    index_folder = TaskManager._get_task_and_group

    def indexing(manager: TaskManager, task_dir: str) -> dict:
        key = (os.path.abspath(task_dir), _newest_change(task_dir))
        if key not in _TASK_INDEX:
            _TASK_INDEX[key] = index_folder(manager, task_dir)
        return copy.deepcopy(_TASK_INDEX[key])

    TaskManager._get_task_and_group = indexing
    try:
        yield
    finally:
        TaskManager._get_task_and_group = index_folder


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def capturing_failures(failures: list[BaseException]) -> Iterator[None]:
    """Catch what lmms-eval would print and swallow into ``failures``, so that the caller decides the exit status."""
    import lmms_eval.__main__ as lmms_main

    evaluate_single = lmms_main.cli_evaluate_single

    def capturing(args: argparse.Namespace) -> tuple[Any, Any]:
        try:
            results, samples = evaluate_single(args)
        except Exception as error:
            failures.append(error)
            return None, None
        if results is None and _is_main_process():
            failures.append(RuntimeError("lmms-eval returned no results"))
        return results, samples

    lmms_main.cli_evaluate_single = capturing
    try:
        yield
    finally:
        lmms_main.cli_evaluate_single = evaluate_single


@contextlib.contextmanager
def annotating_results(block: Callable[[], dict | None], failures: list[BaseException]) -> Iterator[None]:
    """Add ``block()`` (the run's, when a visheads model ran) to the results file as ``"visheads"``, and append a
    failure to ``failures`` when lmms-eval could not write the file."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    save = EvaluationTracker.save_results_aggregated

    def saving(tracker: EvaluationTracker, results: dict, samples: Any, datetime_str: str) -> None:
        annotation = block()
        if annotation is not None:
            results["visheads"] = annotation
        save(tracker, results, samples, datetime_str)
        if tracker.output_path:
            written = Path(tracker.output_path, tracker.general_config_tracker.model_name_sanitized)
            written = written / f"{datetime_str.replace(':', '-')}_results.json"
            if not written.is_file():
                failures.append(RuntimeError(f"lmms-eval could not write {written}"))

    EvaluationTracker.save_results_aggregated = saving
    try:
        yield
    finally:
        EvaluationTracker.save_results_aggregated = save


@contextlib.contextmanager
def llava_family_known_to_llava_hf(classes: dict[str, type]) -> Iterator[None]:
    """Let ``llava_hf`` load ``classes`` (model_type -> class) besides the ones it knows."""
    from lmms_eval.models.simple import llava_hf as llava_hf_module

    added = {name: cls for name, cls in classes.items() if name not in llava_hf_module.model_map}
    llava_hf_module.model_map.update(added)
    try:
        yield
    finally:
        for name in added:
            llava_hf_module.model_map.pop(name, None)
