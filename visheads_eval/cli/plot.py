"""``visheads plot``: the paper's figures from record folders (and lmms-eval or lm-eval results for accuracies).

Writes PNG and PDF files into ``--out``: ``heatmap_image_attn`` and ``heatmap_region_attn`` (Fig. 3),
``attention_vs_concentration`` (Fig. 1; with ``--results``, each panel's title ends with the model's
unmasked accuracy), ``layers_<task>`` (Fig. 6), ``layer_profile_<stat>`` (Fig. 7),
``correlation_<stat>`` (Fig. 4; tasks with two or more models) and ``emd_<stat>`` (Fig. 8; models with
two or more tasks), and from records made with ``logit_lens=true`` ``logit_lens`` (paper section 4.2:
attention of each layer's top head above the lens, a column per task) with its numbers in
``logit_lens_curves.csv`` and ``logit_lens_settle.csv``. A figure that the data cannot support is
skipped with a note on stderr.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from visheads_eval.analysis.scores import MAP_NAMES
from visheads_eval.cli.analysis_options import add_out_option, add_records_options, load_maps, metric_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw the paper's figures (heatmaps, attention vs concentration, per layer, correlation, EMD)",
        description="Draw the paper's figures from record folders, as PNG and PDF.",
    )
    add_records_options(parser)
    parser.add_argument(
        "--results",
        action="append",
        type=Path,
        metavar="RESULTS",
        help="lmms-eval output folder or results file: adds each model's unmasked accuracy to the panel titles",
    )
    parser.add_argument(
        "--stat", choices=MAP_NAMES, default="score", help="head statistic of the profile, correlation and EMD figures (default score)"
    )
    add_out_option(parser, "figures")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from visheads_eval.analysis import figures, lens
    from visheads_eval.analysis.leaderboard import unmasked_values
    from visheads_eval.analysis.output import write_atomic
    from visheads_eval.analysis.results import find_runs

    overrides = metric_overrides(args)
    maps = load_maps(args)
    accuracy = {}
    if args.results:
        accuracy = unmasked_values(find_runs(args.results), [m.task for m in maps], overrides, args.percent_metric)
        if not accuracy:
            print("visheads plot: note: no unmasked results of the recorded tasks; titles show no accuracy", file=sys.stderr)
    jobs, skipped = figures.figure_set(maps, accuracy, args.stat)
    tables = []
    curves = lens.record_lens_curves(args.records, args.task)
    if curves:
        jobs.append(("logit_lens", lambda: lens.lens_figure(curves)))
        tables = [("logit_lens_curves.csv", lens.curves_table(curves)), ("logit_lens_settle.csv", lens.settle_table(curves))]
    else:
        skipped.append("no record folder carries the logit lens (record with logit_lens=true); skipping the logit_lens figure")
    for reason in skipped:
        print(f"visheads plot: note: {reason}", file=sys.stderr)
    written = []
    for stem, draw in tqdm(jobs, desc="figures", unit="figure"):
        written += figures.save_figure(draw(), args.out / stem)
    for name, table in tables:
        written.append(write_atomic(args.out / name, functools.partial(table.to_csv, index=False, float_format="%.6g")))
    for path in written:
        print(path)
    return 0
