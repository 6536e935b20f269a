"""``visheads data synth``: write synthetic PointQA splits (parquet + manifest) to a folder."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from visheads_eval.data.synth_files import MANIFEST, write_splits
from visheads_eval.errors import VisheadsError


def _split(value: str) -> tuple[str, int]:
    name, sep, count = value.partition("=")
    if not sep or not count.strip().isdigit():
        raise argparse.ArgumentTypeError(f"'{value}' is not NAME=COUNT; write e.g. test=210")
    return name.strip(), int(count)


def register(data_subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` to the subcommands of ``visheads data``."""
    parser = data_subparsers.add_parser(
        "synth",
        help="generate synthetic PointQA splits",
        description="Render synthetic PointQA docs (coloured shapes; answers 1..7, balanced) deterministically "
        f"from a seed into OUT/<split>.parquet, with OUT/{MANIFEST} describing them.",
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); recorded in the manifest")
    parser.add_argument(
        "--split", dest="splits", type=_split, action="append", required=True, metavar="NAME=COUNT",
        help="a split and its number of docs, e.g. --split test=210 (repeat for more splits)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace split files that already exist")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    splits: dict[str, int] = {}
    for name, count in args.splits:
        if name in splits:
            raise VisheadsError(f"split '{name}' is given twice; give each split once")
        splits[name] = count
    command = shlex.join(
        ["visheads", "data", "synth", str(args.out), "--seed", str(args.seed), *(f"--split={n}={c}" for n, c in splits.items())]
    )
    manifest = write_splits(args.out, args.seed, splits, command, overwrite=args.overwrite)
    for name in splits:
        entry = manifest["splits"][name]
        print(f"wrote {args.out / entry['file']}: {entry['n_docs']} docs, answers {entry['answer_histogram']}")
    return 0
