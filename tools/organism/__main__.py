"""``python -m tools.organism``: train the organism (a tiny LLaVA) on synthetic PointQA, or install a run.

A finished run installs into the user's cache (``--install``, what ``pretrained=visheads-tiny`` then loads
on this machine) or, for a maintainer, into this repository's shipped weights (``--ship``); never into an
installed package.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from tools.organism.runs import install_run, train_run
from tools.organism.train import TrainConfig
from visheads_eval.errors import VisheadsError
from visheads_eval.organism import installed_dir

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[2] / "visheads_eval" / "organism" / "weights"  # this checkout's


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.organism",
        description="Train the organism (a tiny LlavaForConditionalGeneration) on synthetic PointQA into a new "
        "folder OUT, reproducibly from --seed; or install a finished run OUT with --install or --ship.",
    )
    parser.add_argument("out", type=Path, help="folder for the run (must not exist), or the run to install")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); recorded in OUT/train_config.json")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: repeatable, and fastest on a shared CPU)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--install", action="store_true", help=f"install the finished run OUT in the user's cache ({installed_dir()}), no training"
    )
    where.add_argument(
        "--ship", action="store_true", help=f"make the finished run OUT this checkout's shipped weights ({SHIPPED_WEIGHTS}), no training"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.install or args.ship:
            target = install_run(args.out, installed_dir() if args.install else SHIPPED_WEIGHTS)
            print(f"installed {args.out} as the organism in {target}")
            return 0
        config = TrainConfig(seed=args.seed, threads=args.threads)
        command = shlex.join(["python", "-m", "tools.organism", str(args.out), "--seed", str(args.seed), "--threads", str(args.threads)])
        summary = train_run(args.out, config, command)
    except VisheadsError as error:
        print(f"python -m tools.organism: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: summary[key] for key in ("seed", "train_wall_s", "train_cpu_s", "heldout")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
