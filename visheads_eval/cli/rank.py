"""``visheads rank``: score every head of each recorded model and write its ranking table.

One ranking per model, over all the chosen tasks' samples together (``--task`` picks them; the paper
ranks on PointQA). By default each ranking goes where mask specs look for it
(``$VISHEADS_HOME/rankings/<model>.csv``); ``--out DIR`` writes ``DIR/<model>.csv`` instead. Beside each
ranking, ``<model>.json`` records what it was computed from (folders, tasks, samples, score constants).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visheads_eval import __version__
from visheads_eval.analysis.output import write_text_atomic
from visheads_eval.analysis.ranking_table import ranking_table
from visheads_eval.analysis.scores import HeadMaps
from visheads_eval.cli.analysis_options import add_records_options, load_maps
from visheads_eval.ranking import default_ranking_path, write_ranking

TOP_SHOWN = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rank",
        help="score and rank every head of each recorded model",
        description="Score every head (the paper's detection score, averaged over samples) and write one ranking table per model.",
    )
    add_records_options(parser)
    parser.add_argument("--out", type=Path, help="write DIR/<model>.csv instead of the default ranking location that mask specs read")
    parser.set_defaults(handler=run)


def provenance(maps: HeadMaps, correct_only: bool) -> dict:
    """What a ranking was computed from, for the JSON file beside it."""
    return {
        "model": maps.model,
        "tasks": maps.task.split("+"),
        "n_samples": maps.n_samples,
        "n_without_image": maps.n_without_image,
        "n_region_samples": maps.n_region_samples,
        "correct_only": correct_only,
        "score": {"formula": "mean over samples of attn * (1 + C * (k / (l + eps) + a * exp(-b * l)))", **maps.params.describe()},
        "record_folders": list(maps.sources),
        "visheads_eval_version": __version__,
    }


def run(args: argparse.Namespace) -> int:
    all_maps = load_maps(args, pool_tasks=True, allow_masked=False)
    for maps in all_maps:
        table = ranking_table(maps)
        path = default_ranking_path(maps.model)
        if args.out is not None:
            path = args.out / path.name
        write_ranking(table, path)
        write_text_atomic(path.with_suffix(".json"), json.dumps(provenance(maps, bool(args.correct_only)), indent=2) + "\n")
        top = ", ".join(f"{row.name} {row.score:.3f}" for row in table.head(TOP_SHOWN).itertuples())
        print(f"{maps.model}: {maps.n_layers} x {maps.n_heads} heads ranked over {maps.n_samples} samples of {maps.task} -> {path}")
        print(f"  top {min(TOP_SHOWN, len(table))}: {top}")
    return 0
