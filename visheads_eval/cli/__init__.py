"""The ``visheads`` command: one subcommand per step of the method.

Each subcommand lives in its own module of this package and adds itself with ``register(subparsers)``;
its handler returns an exit status. Bad input raises :class:`~visheads_eval.errors.VisheadsError`,
printed here as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from visheads_eval.errors import VisheadsError

# Modules of this package that define subcommands, in the order ``visheads --help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "records",
    "rank",
    "plot",
    "compare",
    "masks",
    "leaderboard",
    "sweep",
    "lm_eval",
    "doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visheads", description="Find, score and ablate the visual heads of vision-language models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"visheads_eval.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "passthrough"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.passthrough = extra  # a command that hands its arguments to another tool (visheads lm-eval)
    try:
        code = args.handler(args)
    except VisheadsError as error:
        print(f"visheads: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)
