"""``visheads data synth``: write synthetic PointQA splits (parquet + manifest) to a folder, or with
``--preset`` a task folder: the splits under ``OUT/data/`` and the six PointQA tasks and the four attribute tasks
reading its test split."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from visheads_eval.data.pointqa import PRESETS
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
        "--split",
        dest="splits",
        type=_split,
        action="append",
        required=True,
        metavar="NAME=COUNT",
        help="a split and its number of docs, e.g. --split test=210 (repeat for more splits)",
    )
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="write a task folder instead: the splits in OUT/data/ and the six PointQA task YAMLs in OUT, "
        "reading its test split and drawing the box and wording the prompt as PRESET says",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace split files (and with --preset task YAMLs) that already exist")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    splits: dict[str, int] = {}
    for name, count in args.splits:
        if name in splits:
            raise VisheadsError(f"split '{name}' is given twice; give each split once")
        splits[name] = count
    preset = [f"--preset={args.preset}"] if args.preset else []
    command = shlex.join(
        ["visheads", "data", "synth", str(args.out), "--seed", str(args.seed), *(f"--split={n}={c}" for n, c in splits.items()), *preset]
    )
    data = args.out
    if args.preset:
        from visheads_eval.data.task_folders import POINTQA_DATA

        data = args.out / POINTQA_DATA.parent
        if POINTQA_DATA.stem not in splits:
            raise VisheadsError(f"--preset writes tasks that read the '{POINTQA_DATA.stem}' split: add --split {POINTQA_DATA.stem}=N")
        existing = sorted(args.out.glob("*.yaml"))
        if existing and not args.overwrite:
            raise VisheadsError(f"{args.out} already holds task YAMLs ({existing[0].name}, ...); pass --overwrite to replace them")
    manifest = write_splits(data, args.seed, splits, command, overwrite=args.overwrite)
    for name in splits:
        entry = manifest["splits"][name]
        print(f"wrote {data / entry['file']}: {entry['n_docs']} docs, answers {entry['answer_histogram']}")
    if args.preset:
        from visheads_eval.data.task_folders import copy_pointqa_tasks

        copy_pointqa_tasks(args.out, args.preset, attributes=True)
        print(
            f"wrote the six PointQA tasks ({args.preset} preset) and the four attribute tasks to {args.out}; run: lmms_eval "
            f"--include_path {args.out} --tasks pointqa ..."
        )
    return 0
