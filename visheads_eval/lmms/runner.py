"""The ``lmms_eval`` command: lmms-eval's own CLI, with failures that surface and a ``visheads`` block.

lmms-eval prints an evaluation's exception and exits 0; this command exits 1 instead, with the error on
one line (2 for bad input caught before anything runs). It also checks ``llava_visheads`` and ``visheads``
model_args, the task names and the tasks' local data files before any model loads, adds the tasks shipped
with visheads_eval to ``--include_path``, and writes what each run of those models did (model shape, masked
heads, recording) into the results file under ``"visheads"``. Subcommands (``lmms_eval tasks``,
``lmms_eval models`` ...) pass straight through. What it must reach inside lmms-eval to do so is in
:mod:`visheads_eval.lmms.shims`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from visheads_eval import command_line
from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.lmms import shims

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

        with command_line.argv([PROG, *argv]):
            lmms_eval_main()
        return 0
    with command_line.argv([PROG, *(argv[1:] if argv[0] == "eval" else argv)]), shims.reusing_task_index():
        return _run_evaluation()


def _run_evaluation() -> int:
    from lmms_eval.__main__ import parse_eval_args

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
    if args.model in ("llava_visheads", "visheads"):
        from lmms_eval.utils import simple_parse_args_string

        from visheads_eval.instrumentation import Instrumentation
        from visheads_eval.lmms.model import LlavaVisheadsChat
        from visheads_eval.lmms.model_args import check_batch_size
        from visheads_eval.lmms.visheads import Visheads

        check_batch_size(args.batch_size)
        model_class = LlavaVisheadsChat if args.model == "llava_visheads" else Visheads
        Instrumentation(model_class.check_args(simple_parse_args_string(args.model_args)))  # masks, record folder
    return _evaluate(args)


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


_last_end_second: int | None = None


def _evaluate(args: argparse.Namespace) -> int:
    """lmms-eval's evaluation of ``args``, its failures caught.

    lmms-eval names its output files by the second at which an evaluation took its timestamp, some time
    after it started, so two evaluations in one second (a sweep's points, or runs from Python) would write
    the same files. The previous evaluation's timestamp is no later than the second it ended in: starting
    the next one in a later second gives it a later timestamp.
    """
    import lmms_eval.__main__ as lmms_main

    from visheads_eval.lmms import run_blocks

    global _last_end_second
    while _last_end_second is not None and int(time.time()) <= _last_end_second:
        time.sleep(1 - time.time() % 1 + 0.01)
    failures: list[BaseException] = []
    try:
        with (
            run_blocks.evaluation_scope() as blocks,
            shims.capturing_failures(failures),
            shims.annotating_results(lambda: blocks[-1] if blocks else None, failures),
        ):
            lmms_main.cli_evaluate(args)
    finally:
        _last_end_second = int(time.time())
    if failures:
        error = failures[0]
        if args.verbosity == "DEBUG":
            traceback.print_exception(error)
        kind = "" if isinstance(error, VisheadsError) else f"{type(error).__name__}: "
        # On a line of its own: an interrupted progress bar may have left the cursor mid-line.
        print(f"\n{PROG}: error: evaluation failed: {kind}{error}", file=sys.stderr)
        return 2 if isinstance(error, VisheadsError) else 1
    return 0
