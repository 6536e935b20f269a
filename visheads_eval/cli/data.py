"""``visheads data``: the command group that makes the data the tasks read (``synth``, ...)."""

from __future__ import annotations

import argparse

from visheads_eval.cli.data_synth import register_synth


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="make the data the PointQA tasks read", description="Make the data the PointQA tasks read.")
    data_subparsers = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    register_synth(data_subparsers)
