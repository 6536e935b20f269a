"""``visheads leaderboard``: each benchmark's metric with no mask and its drop under every mask.

Reads lmms-eval and lm-eval results files (folders are searched recursively) and writes ``leaderboard.md``,
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
        help="accuracy with no mask and its drop under every mask, from lmms-eval or lm-eval results",
        description="Tabulate each model's benchmark metric with no mask and its drop (points) under every mask, "
        "as Markdown, CSV and LaTeX.",
    )
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="lmms-eval or lm-eval results files, or output folders")
    parser.add_argument("--task", action="append", metavar="TASK", help="only this task (repeatable; default every task in the results)")
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("MASK_A", "MASK_B"),
        help="also say whether MASK_A drops more than MASK_B (labels as in the table, e.g. 'early_random20 seed=1'): "
        "the paired difference of their drops with its 95%% interval and McNemar p-value (repeatable; needs samples logs)",
    )
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
    if args.compare:
        import pandas as pd

        from visheads_eval.analysis.leaderboard import compare_masks

        runs = find_runs(args.results)
        comparisons = pd.concat([compare_masks(runs, a, b, overrides, tasks=args.task) for a, b in args.compare], ignore_index=True)
        for row in comparisons.itertuples():
            verdict = "more than" if row.ci_low > 0 else "less than" if row.ci_high < 0 else "no differently from"
            print(
                f"{row.model} {row.task}: {row.mask_a} drops {verdict} {row.mask_b}: {row.difference:+.2f} points "
                f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}], McNemar p={row.p_mcnemar:.3g}, {row.n_docs} docs"
            )
        write_atomic(args.out / "compare.csv", lambda partial: comparisons.to_csv(partial, index=False))
        print(f"wrote {args.out / 'compare.csv'}")
    return 0
