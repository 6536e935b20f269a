"""The ``visheads data`` command group: commands that prepare the local data the lmms-eval tasks read.

Each ``data`` subcommand lives in its own module of this package, listed in ``DATA_SUBCOMMAND_MODULES``,
whose ``register(data_subparsers)`` adds it to the group and sets its ``handler``.
"""

from __future__ import annotations

import argparse
import importlib

# Modules of this package that define ``visheads data`` subcommands, in the order ``--help`` lists them.
DATA_SUBCOMMAND_MODULES: tuple[str, ...] = ("data_pointqa", "data_benchmark", "data_synth")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="prepare local data for the lmms-eval tasks", description="Prepare local data for the lmms-eval tasks."
    )
    data_subparsers = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    for name in DATA_SUBCOMMAND_MODULES:
        importlib.import_module(f"visheads_eval.cli.{name}").register(data_subparsers)
