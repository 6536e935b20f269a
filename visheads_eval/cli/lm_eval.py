"""``visheads lm-eval ARGS...``: lm-evaluation-harness's own command line, with ``visheads``, ``llava_visheads`` and PointQA.

It registers the ``visheads`` (every supported family) and ``llava_visheads`` (the LLaVA family) models
(importing :mod:`visheads_eval.lm_eval`), adds the PointQA tasks shipped for lm-eval to the task search
path and runs lm-eval's CLI with the arguments as given; the models give lm-eval the run's ``visheads``
block through ``get_model_info()``, which lm-eval writes into its results' ``config``. Exit status: 0 when the evaluation
ran, 2 for bad input caught before the model loads (one line), 1 when the evaluation failed. It installs
no ``lm_eval`` or ``lm-eval`` command: lm-eval owns those names.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lm-eval",
        help="run lm-evaluation-harness with the visheads and llava_visheads models and the PointQA tasks",
        description="Run lm-eval's own command line (`lm-eval run ...` arguments) with visheads (every supported family) and "
        "llava_visheads registered and the PointQA tasks on the task path, e.g. visheads lm-eval --model visheads "
        "--model_args pretrained=visheads-tiny,mask=early_top20 --tasks pointqa --apply_chat_template",
    )
    parser.set_defaults(handler=run, passthrough=[])


def run(args: argparse.Namespace) -> int:
    return evaluate([arg for arg in args.passthrough if arg != "--"])


def evaluate(argv: list[str]) -> int:
    """lm-eval's command line on ``argv`` (``lm-eval run`` arguments) in this process; its exit status."""
    from lm_eval.__main__ import cli_evaluate

    import visheads_eval.lm_eval  # noqa: F401  (registers visheads and llava_visheads)
    from visheads_eval import command_line
    from visheads_eval.errors import VisheadsError
    from visheads_eval.lm_eval import shims
    from visheads_eval.resources import lm_eval_tasks_dir

    with shims.shipped_tasks_on_the_path(str(lm_eval_tasks_dir())), command_line.argv(["lm-eval", *argv]):
        try:
            cli_evaluate()
        except VisheadsError:
            raise  # bad input, said in one line by the visheads command (exit 2)
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
        except Exception as error:  # noqa: BLE001 - any failure of the evaluation is the run's failure
            print(f"visheads lm-eval: evaluation failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    return 0
