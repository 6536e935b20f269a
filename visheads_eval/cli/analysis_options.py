"""Options shared by the analysis subcommands (rank, plot, compare, leaderboard), and their parsing.

Not a subcommand itself: ``rank``, ``plot``, ``compare`` and ``leaderboard`` add these options so that
record folders, score constants, metric choices and correctness filters read the same everywhere.
The analysis modules that read files (pyarrow, torch, scipy) are imported by the handlers, when a
command runs, so that ``visheads --help`` stays quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visheads_eval.analysis.scores import PARTS, HeadMaps, ScoreParams
from visheads_eval.errors import VisheadsError

DEFAULT_REPORTS = Path("visheads_reports")


def add_records_options(parser: argparse.ArgumentParser, rankings: bool = False) -> None:
    """Record folders, task selection, score constants and the correct-only filter; with ``rankings``,
    ranking files may stand in for record folders."""
    parser.add_argument(
        "records",
        nargs="*" if rankings else "+",
        type=Path,
        metavar="RECORD_DIR",
        help="record folders written by llava_visheads (record=<dir>)",
    )
    if rankings:
        parser.add_argument(
            "--ranking",
            action="append",
            default=[],
            type=Path,
            metavar="CSV",
            help="a ranking file written by `visheads rank`, compared like a record folder (repeatable)",
        )
    parser.add_argument(
        "--task", action="append", metavar="TASK", help="use only this task's samples (repeat for several; default: every task recorded)"
    )
    defaults = ScoreParams()
    score = parser.add_argument_group("head detection score: func(l) = k / (l + eps) + a * exp(-b * l), score = attn * (1 + C * func(l))")
    score.add_argument("--k", type=float, default=defaults.k, help=f"weight of k / (l + eps) (default {defaults.k})")
    score.add_argument("--a", type=float, default=defaults.a, help=f"weight of a * exp(-b * l) (default {defaults.a})")
    score.add_argument("--b", type=float, default=defaults.b, help=f"decay per layer of the exponential (default {defaults.b})")
    score.add_argument("--eps", type=float, default=defaults.eps, help=f"keeps k / (l + eps) finite at layer 0 (default {defaults.eps})")
    score.add_argument(
        "--part",
        choices=PARTS,
        default=defaults.part,
        help="score attention to all image tokens or to the question's region (default image)",
    )
    parser.add_argument(
        "--correct-only",
        action="append",
        type=Path,
        metavar="RESULTS",
        help="average only correctly answered samples, judged from the samples files (lmms-eval's or lm-eval's) under RESULTS "
        "(an output folder or results file of the recorded run; run lmms-eval with --log_samples)",
    )
    add_metric_options(parser)


def add_metric_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="TASK=METRIC",
        help="report METRIC for TASK instead of its primary metric (repeatable)",
    )
    parser.add_argument(
        "--percent-metric",
        action="append",
        default=[],
        metavar="METRIC",
        help="METRIC is already in percent (lmms-eval reports most accuracies as fractions)",
    )


def add_out_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_REPORTS, help=f"folder for the {what} (default {DEFAULT_REPORTS})")


def score_params(args: argparse.Namespace) -> ScoreParams:
    return ScoreParams(k=args.k, a=args.a, b=args.b, eps=args.eps, part=args.part)


def metric_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--metric TASK=METRIC`` options as a dict."""
    overrides = {}
    for item in args.metric:
        task, sep, metric = item.partition("=")
        if not sep or not task or not metric:
            raise VisheadsError(f"--metric {item!r} is not TASK=METRIC, e.g. --metric pope=pope_f1_score")
        overrides[task] = metric
    return overrides


def load_maps(args: argparse.Namespace, pool_tasks: bool = False, allow_masked: bool = True) -> list[HeadMaps]:
    """The head maps of the record folders (and ranking files, where the command takes them) given."""
    from visheads_eval.analysis.head_maps import CorrectOnly, ShapeCheck, ranking_maps, record_maps
    from visheads_eval.analysis.results import find_runs

    rankings = getattr(args, "ranking", [])
    if not args.records and not rankings:
        raise VisheadsError("give record folders (or --ranking files) to compare")
    params, overrides = score_params(args), metric_overrides(args)
    correct = None
    if args.correct_only:
        correct = CorrectOnly(find_runs(args.correct_only), overrides)
    maps = []
    if args.records:
        maps = record_maps(args.records, params, tasks=args.task, correct_only=correct, pool_tasks=pool_tasks, allow_masked=allow_masked)
    maps += [ranking_maps(path) for path in rankings]
    shapes = ShapeCheck()
    seen: dict[tuple[str, str], str] = {}
    for m in maps:
        source = m.sources[0] if m.sources else m.model
        shapes.check(m.model, m.n_layers, m.n_heads, Path(source))
        if seen.setdefault((m.model, m.task), source) != source:
            raise VisheadsError(f"{m.model} on {m.task} is given twice, by {seen[(m.model, m.task)]} and {source}; give it once")
    return maps
