"""``visheads compare``: Pearson correlation of head maps across models, EMD across benchmarks.

Writes ``correlation.csv`` (task, model_a, model_b, r, p_value, n_points, grid, stat) and ``emd.csv``
(model, task_a, task_b, emd, stat) into ``--out`` and prints both as matrices. How models of different
shapes are compared and how the EMD is defined: see :mod:`visheads_eval.analysis.compare`. Ranking files
(``--ranking``) can stand in for record folders: their score and statistics columns are the head maps.
"""

from __future__ import annotations

import argparse
import functools

from visheads_eval.analysis.scores import MAP_NAMES
from visheads_eval.cli.analysis_options import add_out_option, add_records_options, load_maps


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="Pearson correlation of head maps across models, EMD across benchmarks",
        description="Compare head maps: Pearson r between models on each task, EMD (in layers) between tasks of each model.",
    )
    add_records_options(parser, rankings=True)
    parser.add_argument("--stat", choices=MAP_NAMES, default="score", help="head statistic compared (default score)")
    add_out_option(parser, "tables")
    parser.set_defaults(handler=run)


def _matrices(table, group: str, rows: str, cols: str, value: str) -> str:
    parts = []
    for name, part in table.groupby(group, sort=False):
        order = list(dict.fromkeys(part[rows]))
        if len(order) < 2:
            continue
        matrix = part.pivot(index=rows, columns=cols, values=value).reindex(index=order, columns=order)
        matrix.index.name = matrix.columns.name = None
        parts.append(f"{value} on {name}:\n{matrix.to_markdown(floatfmt='.3f')}\n")
    return "\n".join(parts)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.analysis.compare import correlation_table, emd_table
    from visheads_eval.analysis.output import write_atomic

    maps = load_maps(args)
    correlations = correlation_table(maps, args.stat).assign(stat=args.stat)
    distances = emd_table(maps, args.stat).assign(stat=args.stat)
    for name, table in (("correlation.csv", correlations), ("emd.csv", distances)):
        write_atomic(args.out / name, functools.partial(table.to_csv, index=False))
    print(_matrices(correlations, "task", "model_a", "model_b", "r"))
    print(_matrices(distances, "model", "task_a", "task_b", "emd"))
    print(f"wrote {args.out / 'correlation.csv'} and {args.out / 'emd.csv'}")
    return 0
