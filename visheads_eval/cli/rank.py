"""``visheads rank``: score every head of each recorded model and write its ranking table.

One ranking per model, over all the chosen tasks' samples together (``--task`` picks them; the paper
ranks on PointQA), or with ``--per-task`` one per model and task (``<model>__<task>.csv``). By default
rankings go where mask specs look for them (``$VISHEADS_CACHE/rankings/<model>.csv``, by default under
``~/.cache/visheads_eval``); ``--out DIR`` writes into DIR instead. Beside each ranking, a ``.json`` file records what it was computed from
(folders, tasks, samples, score constants).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visheads_eval.cli.analysis_options import add_records_options, load_maps

TOP_SHOWN = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rank",
        help="score and rank every head of each recorded model",
        description="Score every head (the paper's detection score, averaged over samples) and write one ranking table per model.",
    )
    add_records_options(parser)
    parser.add_argument(
        "--per-task", action="store_true", help="one ranking per model and task (<model>__<task>.csv) instead of one per model"
    )
    parser.add_argument("--out", type=Path, help="write rankings into DIR instead of the default location that mask specs read")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.analysis.output import safe_file_name
    from visheads_eval.analysis.ranking_table import ranking_table, save_ranking
    from visheads_eval.ranking import default_ranking_path

    for maps in load_maps(args, pool_tasks=not args.per_task, allow_masked=False):
        path = default_ranking_path(maps.model)
        if args.per_task:
            path = path.with_name(f"{path.stem}__{safe_file_name(maps.task)}.csv")
        if args.out is not None:
            path = args.out / path.name
        save_ranking(maps, path, correct_only=bool(args.correct_only))
        table = ranking_table(maps).head(TOP_SHOWN)
        top = ", ".join(f"{name} {score:.3f}" for name, score in zip(table["name"], table["score"], strict=False))
        print(f"{maps.model}: {maps.n_layers} x {maps.n_heads} heads ranked over {maps.n_samples} samples of {maps.task} -> {path}")
        print(f"  top {len(table)}: {top}")
    return 0
