"""``visheads data benchmark``: a task folder whose ``<name>_local`` task reads your copy of a benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

from visheads_eval.data.local_benchmarks import (
    BENCHMARKS,
    check_benchmark_files,
    get_benchmark,
)


def register(data_subparsers: argparse._SubParsersAction) -> None:
    lines = "; ".join(f"{b.name}: {b.task}, {b.upstream_dataset}" for b in BENCHMARKS.values())
    parser = data_subparsers.add_parser(
        "benchmark",
        help="point a local benchmark task (pope_local, ...) at your parquet files",
        description=(
            "Write OUT/<task>.yaml: the shipped local copy of an lmms-eval benchmark task reading FILES, parquet files "
            f"in the benchmark's Hugging Face format ({lines}). Run it with `lmms_eval --include_path OUT --tasks <task>`. "
            "OUT may already hold other tasks; several benchmarks can share it."
        ),
    )
    parser.add_argument("benchmark", help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument("files", type=Path, nargs="+", help="the parquet files of the benchmark's split")
    parser.add_argument("--out", type=Path, required=True, help="task folder to write the task into (created if needed)")
    parser.add_argument("--overwrite", action="store_true", help="replace the task's YAML if OUT already has it")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.data.task_folders import write_benchmark_task

    benchmark = get_benchmark(args.benchmark)
    rows = check_benchmark_files(benchmark, args.files)
    path = write_benchmark_task(benchmark, args.files, args.out, overwrite=args.overwrite)
    print(f"wrote {path}: {benchmark.task} reads {len(args.files)} file(s), {rows} rows")
    print(f"run: lmms_eval --include_path {path.parent} --tasks {benchmark.task} ...")
    return 0
