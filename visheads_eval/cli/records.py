"""``visheads records DIR...``: check record folders in full and say what they hold.

Every shard of every rank is read completely (so a damaged file shows now, not in the middle of an
analysis) and the values are checked against the statistics' definitions. Per folder it prints the run,
the samples of each task and split, the shards and their size, and any duplicates. Exit status: 0 if
every folder is sound, 1 if some recorded values are wrong, 2 if a folder cannot be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from visheads_eval.records import Records


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "records", help="check record folders and summarise what they hold", description=__doc__.split("\n\n")[1].replace("\n", " ")
    )
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="a folder written with record=DIR")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.records import load_records
    from visheads_eval.records.validate import value_problems

    status = 0
    for folder in args.folders:
        records = load_records(folder)
        problems = value_problems(records)  # reads every statistic of every shard
        print(summary(records))
        print("  values: " + ("sound" if not problems else f"{len(problems)} problems"))
        for problem in problems:
            print(f"    {problem}")
        status = max(status, 1 if problems else 0)
    return status


def summary(records: Records) -> str:
    """A few lines on what a record folder holds."""
    import numpy as np

    run = records.run
    mask = run.get("mask")
    mask_name = mask.get("name", "unnamed") if isinstance(mask, dict) else mask or "none"
    shards = records.shards
    size_mb = sum(path.stat().st_size for path in shards) / 1e6
    lines = [
        f"{records.directory}: {run.get('model')}, {records.n_layers} x {records.n_heads} heads, position {run.get('position')}, "
        f"mask {mask_name}" + (f", logit lens over {records.n_layers + 1} readings" if records.has_lens else ""),
        f"  {len(records)} samples in {len(shards)} shards from {len(records.ranks)} rank{'s' if len(records.ranks) > 1 else ''}, "
        f"{size_mb:.1f} MB",
    ]
    has_region = ~np.isnan(records.stat("region_attn")).all(axis=(1, 2))
    groups = records.meta.assign(has_region=has_region).groupby(["task", "split"], sort=True)["has_region"]
    for (task, split), regions in groups:
        lines.append(f"  {task}/{split}: {len(regions)} samples, {int(regions.sum())} with a region")
    if len(records.duplicates):
        differing = int((~records.duplicates["identical"]).sum())
        lines.append(
            f"  {len(records.duplicates)} duplicate copies dropped (earliest kept; {differing} differ in answer, token counts, "
            "box or image size)"
        )
    return "\n".join(lines)
