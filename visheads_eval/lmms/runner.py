"""The ``lmms_eval`` command: lmms-eval's own CLI, with failures that surface and a ``visheads`` block.

lmms-eval prints an evaluation's exception and exits 0; this command exits 1 instead, with the error on
one line (2 for bad input caught before anything runs). It also checks ``llava_visheads`` model_args, the
task names and the tasks' local data files before any model loads, adds the tasks shipped with visheads_eval to ``--include_path``,
and writes what each ``llava_visheads`` run did (model shape, masked heads, recording) into the results
file under ``"visheads"``. Subcommands (``lmms_eval tasks``, ``lmms_eval models`` ...) pass straight through.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visheads_eval.errors import VisheadsError, did_you_mean

PROG = "lmms_eval"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = run(argv)
    except VisheadsError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)


def run(argv: list[str]) -> int:
    """Run lmms-eval with ``argv``; return the exit status."""
    if not argv or not (argv[0].startswith("-") or argv[0] == "eval") or argv in (["-h"], ["--help"]):
        # Help and subcommands go straight to lmms-eval's dispatcher, which answers them without torch.
        from lmms_eval.cli.dispatch import main as lmms_eval_main

        sys.argv = [PROG, *argv]
        lmms_eval_main()
        return 0
    with _reusing_task_index():
        return _run_evaluation(argv)


def _run_evaluation(argv: list[str]) -> int:
    from lmms_eval.__main__ import parse_eval_args

    sys.argv = [PROG, *(argv[1:] if argv[0] == "eval" else argv)]
    _, args = parse_eval_args()
    if args.tasks is None:
        raise VisheadsError("no --tasks given; list them with `lmms_eval --tasks list`")
    if os.path.isdir(args.tasks):
        # lmms-eval then loads the folder's YAML files as tasks of the simple kind, which chat models cannot run.
        raise VisheadsError(
            f"--tasks {args.tasks} is a folder here, which lmms-eval would read instead of a task of that name; "
            "pass folders with --include_path and task names with --tasks, or run from another directory"
        )
    args.include_path = _with_shipped_tasks(args.include_path)
    if args.tasks not in ("list", "list_groups", "list_tags", "list_subtasks"):
        _check_tasks(args.tasks, args.include_path)
    if args.model == "llava_visheads":
        from lmms_eval.utils import simple_parse_args_string

        from visheads_eval.instrumentation import Instrumentation
        from visheads_eval.lmms.model_args import check_batch_size, check_model_args

        check_batch_size(args.batch_size)
        checked = check_model_args(simple_parse_args_string(args.model_args))
        Instrumentation(checked)  # masks, record folder
    return _evaluate(args)


_TASK_INDEX: dict[tuple[str, float], dict] = {}


def _newest_change(folder: str) -> float:
    newest = 0.0
    for root, _, files in os.walk(folder):
        for name in files:
            newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
    return newest


@contextlib.contextmanager
def _reusing_task_index() -> Iterator[None]:
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


def _with_shipped_tasks(include_path: str | None) -> list[str]:
    from visheads_eval.resources import tasks_dir

    return [*([include_path] if include_path else []), str(tasks_dir())]


def _check_tasks(tasks: str, include_path: list[str]) -> None:
    """Every task name is known and every task reading local files finds them."""
    from lmms_eval.tasks import TaskManager

    from visheads_eval.data.task_folders import missing_task_data

    names = [name for name in tasks.split(",") if name and "*" not in name and not os.path.exists(name)]
    if not names:
        return
    manager = TaskManager("ERROR", include_path=include_path)
    for name in names:
        if name not in manager.all_tasks:
            raise VisheadsError(
                f"unknown task '{name}'{did_you_mean(name, manager.all_tasks)}; "
                f"list tasks with `{PROG} --tasks list` or add a folder with --include_path"
            )
    missing = missing_task_data(names, manager.task_index)
    if missing:
        raise VisheadsError(missing[0])


def _evaluate(args: argparse.Namespace) -> int:
    import lmms_eval.__main__ as lmms_main

    failures: list[BaseException] = []
    with _capturing_failures(lmms_main, failures), _annotating_results(failures):
        lmms_main.cli_evaluate(args)
    if failures:
        error = failures[0]
        if args.verbosity == "DEBUG":
            traceback.print_exception(error)
        kind = "" if isinstance(error, VisheadsError) else f"{type(error).__name__}: "
        # On a line of its own: an interrupted progress bar may have left the cursor mid-line.
        print(f"\n{PROG}: error: evaluation failed: {kind}{error}", file=sys.stderr)
        return 2 if isinstance(error, VisheadsError) else 1
    return 0


@contextlib.contextmanager
def _capturing_failures(lmms_main: Any, failures: list[BaseException]) -> Iterator[None]:
    """Catch what lmms-eval would print and swallow, so that it can decide the exit status."""
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
def _annotating_results(failures: list[BaseException]) -> Iterator[None]:
    """Add the ``visheads`` block to the results file, and fail if lmms-eval could not write it."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    save = EvaluationTracker.save_results_aggregated

    def saving(tracker: EvaluationTracker, results: dict, samples: Any, datetime_str: str) -> None:
        from visheads_eval.instrumentation import run_block

        block = run_block(results.get("config", {}).get("model_args"))
        if block is not None:
            results["visheads"] = block
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


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
