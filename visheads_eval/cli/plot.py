"""``visheads plot``: the paper's figures from record folders (and lmms-eval results for accuracies).

Writes PNG and PDF files into ``--out``: ``heatmap_image_attn`` and ``heatmap_region_attn`` (Fig. 3),
``attention_vs_concentration`` (Fig. 1; with ``--results``, each panel's title ends with the model's
unmasked accuracy), ``layers_<task>`` (Fig. 6), ``layer_profile_<stat>`` (Fig. 7),
``correlation_<stat>`` (Fig. 4; tasks with two or more models) and ``emd_<stat>`` (Fig. 8; models with
two or more tasks). A figure that the data cannot support is skipped with a note on stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tqdm.auto import tqdm

from visheads_eval.analysis import figures
from visheads_eval.analysis.compare import correlation_table, emd_table
from visheads_eval.analysis.leaderboard import leaderboard
from visheads_eval.analysis.results import NO_MASK, find_runs
from visheads_eval.analysis.scores import MAP_NAMES, HeadMaps
from visheads_eval.cli.analysis_options import add_out_option, add_records_options, load_maps, metric_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw the paper's figures (heatmaps, attention vs concentration, per layer, correlation, EMD)",
        description="Draw the paper's figures from record folders, as PNG and PDF.",
    )
    add_records_options(parser)
    parser.add_argument("--results", action="append", type=Path, metavar="RESULTS",
                        help="lmms-eval output folder or results file: adds each model's unmasked accuracy to the panel titles")
    parser.add_argument("--stat", choices=MAP_NAMES, default="score", help="head statistic of the profile, correlation and EMD figures (default score)")
    add_out_option(parser, "figures")
    parser.set_defaults(handler=run)


def accuracies(args: argparse.Namespace, maps: list[HeadMaps]) -> dict[tuple[str, str], float]:
    """Each (model, task)'s unmasked primary metric, in points, from the results given."""
    if not args.results:
        return {}
    tasks = list(dict.fromkeys(m.task for m in maps))
    runs = [run for run in find_runs(args.results) if run.mask == NO_MASK and set(run.results) & set(tasks)]
    if not runs:
        print("visheads plot: note: no unmasked results of the recorded tasks; titles show no accuracy", file=sys.stderr)
        return {}
    table = leaderboard(runs, metric_overrides(args), args.percent_metric, tasks=[t for t in tasks if any(t in r.results for r in runs)])
    return {(row.model, row.task): row.value for row in table.itertuples()}


def figure_jobs(maps: list[HeadMaps], accuracy: dict, stat: str) -> list[tuple[str, object]]:
    """(file stem, function drawing the figure) for every figure the maps support."""
    jobs: list[tuple[str, object]] = [("heatmap_image_attn", lambda: figures.heatmaps(maps, "image_attn"))]
    if any(m.n_region_samples for m in maps):
        jobs.append(("heatmap_region_attn", lambda: figures.heatmaps(maps, "region_attn")))
    else:
        print("visheads plot: note: no sample has a question region; skipping heatmap_region_attn", file=sys.stderr)
    jobs.append(("attention_vs_concentration", lambda: figures.attention_vs_concentration(maps, accuracy)))
    for task in dict.fromkeys(m.task for m in maps):
        jobs.append((f"layers_{_safe(task)}", lambda task=task: figures.layer_scatter(maps, task)))
    jobs.append((f"layer_profile_{stat}", lambda: figures.layer_profiles(maps, stat)))
    correlations = correlation_table(maps, stat)
    if (correlations["model_a"] != correlations["model_b"]).any():
        shared = correlations.groupby("task").filter(lambda rows: rows["model_a"].nunique() > 1)
        jobs.append((f"correlation_{stat}", lambda: figures.correlation_matrices(shared)))
    else:
        print("visheads plot: note: no task was recorded for two models; skipping the correlation figure", file=sys.stderr)
    distances = emd_table(maps, stat)
    if (distances["task_a"] != distances["task_b"]).any():
        several = distances.groupby("model").filter(lambda rows: rows["task_a"].nunique() > 1)
        jobs.append((f"emd_{stat}", lambda: figures.emd_matrices(several)))
    else:
        print("visheads plot: note: no model was recorded on two tasks; skipping the EMD figure", file=sys.stderr)
    return jobs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def run(args: argparse.Namespace) -> int:
    maps = load_maps(args)
    accuracy = accuracies(args, maps)
    jobs = figure_jobs(maps, accuracy, args.stat)
    written = []
    for stem, draw in tqdm(jobs, desc="figures", unit="figure"):
        written += figures.save_figure(draw(), args.out / stem)
    for path in written:
        print(path)
    return 0
