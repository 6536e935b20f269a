"""``visheads train-tiny``: train the organism (a tiny LLaVA) on synthetic PointQA, or install a run."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-tiny",
        help="train the tiny LLaVA organism on synthetic PointQA",
        description="Train the organism (a tiny LlavaForConditionalGeneration) on synthetic PointQA into a new "
        "folder OUT, reproducibly from --seed; or, with --install, make a finished run the shipped weights.",
    )
    parser.add_argument("out", type=Path, help="folder for the run (must not exist), or the run to install with --install")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); recorded in OUT/train_config.json")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: repeatable, and fastest on a shared CPU)")
    parser.add_argument("--install", action="store_true", help="install the finished run OUT as the shipped organism (no training)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.organism.runs import install_run, train_run
    from visheads_eval.organism.train import TrainConfig

    if args.install:
        target = install_run(args.out)
        print(f"installed {args.out} as the shipped organism in {target}")
        return 0
    config = TrainConfig(seed=args.seed, threads=args.threads)
    command = shlex.join(["visheads", "train-tiny", str(args.out), "--seed", str(args.seed), "--threads", str(args.threads)])
    summary = train_run(args.out, config, command)
    print(json.dumps({key: summary[key] for key in ("seed", "train_wall_s", "train_cpu_s", "heldout")}, indent=1))
    return 0
