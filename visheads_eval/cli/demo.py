"""``visheads demo``: the paper's pipeline end to end on one model (``make demo``); see visheads_eval.demo."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole method on one model: record, rank, mask grid, leaderboard, figures",
        description="Record the six PointQA settings, rank the heads, evaluate the mask grid and write the "
        "leaderboard and figures. A second run reuses what is already computed.",
    )
    parser.add_argument("--pretrained", default="visheads-tiny", help="the model (default: the shipped tiny organism)")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--k", default="10%", help="heads removed per mask: a count or a percentage of all heads (default 10%%)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N docs of each task")
    parser.add_argument(
        "--include_path",
        type=Path,
        help="a folder of PointQA tasks to use instead of the shipped ones (e.g. made by `visheads data pointqa`)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.demo import POINTQA_TASKS, Demo

    return Demo(args.out, args.pretrained, POINTQA_TASKS, args.k, args.limit, args.include_path).run()
