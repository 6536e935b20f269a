"""``visheads leaderboard``: each benchmark's metric with no mask and its drop under every mask.

Reads lmms-eval results files (folders are searched recursively) and writes ``leaderboard.md``,
``leaderboard.csv`` and ``leaderboard.tex`` into ``--out``; prints the Markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visheads_eval.cli.analysis_options import add_metric_options, add_out_option, metric_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="accuracy with no mask and its drop under every mask, from lmms-eval results",
        description="Tabulate each model's benchmark metric with no mask and its drop (points) under every mask, as Markdown, CSV and LaTeX.",
    )
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="lmms-eval results files or output folders")
    parser.add_argument("--task", action="append", metavar="TASK", help="only this task (repeatable; default every task in the results)")
    add_metric_options(parser)
    add_out_option(parser, "leaderboard files")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.analysis.leaderboard import leaderboard, to_latex, to_markdown
    from visheads_eval.analysis.output import write_atomic, write_text_atomic
    from visheads_eval.analysis.results import NO_MASK, find_runs

    overrides = metric_overrides(args)
    table = leaderboard(find_runs(args.results), overrides, args.percent_metric, tasks=args.task)
    orphans = table[(table["mask"] != NO_MASK) & table["drop"].isna()][["model", "task"]].drop_duplicates()
    for row in orphans.itertuples():
        print(f"visheads leaderboard: note: {row.model} has no unmasked run of {row.task}; its drops are left empty", file=sys.stderr)
    markdown = to_markdown(table, links_from=args.out)
    write_atomic(args.out / "leaderboard.csv", lambda partial: table.to_csv(partial, index=False))
    write_text_atomic(args.out / "leaderboard.md", markdown)
    write_text_atomic(args.out / "leaderboard.tex", to_latex(table))
    print(markdown)
    print(f"wrote {args.out / 'leaderboard.md'}, .csv and .tex")
    return 0
