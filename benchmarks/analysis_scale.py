"""Time the analysis pipeline at the paper's scale: 5,700 samples x 9 models x 5 benchmarks.

Writes seeded synthetic record folders with the records writer (one folder per model x benchmark run,
the nine head shapes of the paper's Table 1, 576 image tokens) and lmms-eval results files (an unmasked
run and six masks per model) into ``--root``, unless they are already there, then times every table and
figure two ways:

- ``cli``: ``visheads rank``, ``plot``, ``compare`` and ``leaderboard``, each a fresh process that reads
  the records it needs (rank reads the PointQA folders, plot and compare all 45);
- ``api``: the same outputs from Python, the records read once.

Each step is reported in wall-clock seconds and in CPU seconds (user + system, of this process and of
the ``visheads`` processes it starts): on a shared machine the CPU seconds are what one free CPU needs.

usage: python -m benchmarks.analysis_scale [--root DIR] [--samples 5700] [--seed 0] [--keep]

Without ``--root`` the data go to a temporary folder that is removed at the end (``--keep`` keeps it).
About 6.5 GB at full size; writing it takes minutes, and is not part of the timings.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fixtures.synthetic_records import write_synthetic_records
from fixtures.synthetic_results import write_results
from visheads_eval.analysis import figures
from visheads_eval.analysis.compare import correlation_table, emd_table
from visheads_eval.analysis.head_maps import record_maps
from visheads_eval.analysis.leaderboard import leaderboard, to_latex, to_markdown
from visheads_eval.analysis.output import write_atomic, write_text_atomic
from visheads_eval.analysis.ranking_table import ranking_table
from visheads_eval.analysis.results import NO_MASK, find_runs
from visheads_eval.ranking import default_ranking_path, write_ranking

# The paper's Table 1: model -> (layers, heads).
MODELS = {
    "llava-hf/vip-llava-phi-3-3.8b": (24, 32),
    "llava-hf/llava-v1.6-mistral-7b-hf": (32, 32),
    "llava-hf/vip-llava-llama-3-8b": (24, 32),
    "llava-hf/llava-1.5-7b-hf": (32, 32),
    "llava-hf/llava-v1.6-vicuna-7b-hf": (32, 32),
    "llava-hf/vip-llava-7b-hf": (32, 32),
    "llava-hf/llava-1.5-13b-hf": (40, 40),
    "llava-hf/llava-v1.6-vicuna-13b-hf": (40, 40),
    "llava-hf/vip-llava-13b-hf": (40, 40),
}
# Benchmark -> (its primary metric, whether lmms-eval reports it in percent); PointQA has regions.
BENCHMARKS = {
    "pointqa_visual_general": ("exact_match", False),
    "mmbench_en_dev_static": ("gpt_eval_score", True),
    "pope": ("pope_accuracy", False),
    "seedbench": ("seed_image", False),
    "qbench_dev": ("qbench_acc", False),
}
MASKS = ("early_top20", "mid_top20", "late_top20", "early_random20", "mid_random20", "late_random20")


def generate(root: Path, n_samples: int, seed: int) -> list[Path]:
    """Record folders (written once) and results files under ``root``; the record folders, in order."""
    folders = []
    jobs = [(model, task) for model in MODELS for task in BENCHMARKS]
    for index, (model, task) in enumerate(tqdm(jobs, desc="writing record folders", unit="folder")):
        folder = root / "records" / f"{model.split('/')[-1]}__{task}"
        if not (folder / "run.json").is_file():
            n_layers, n_heads = MODELS[model]
            write_synthetic_records(
                folder,
                model=model,
                n_layers=n_layers,
                n_heads=n_heads,
                n_samples=n_samples,
                tasks=[task],
                seed=seed * 1000 + index,
                region_share=1.0 if task.startswith("pointqa") else 0.0,
            )
        folders.append(folder)
    rng = np.random.default_rng(seed)
    results = root / "results"
    if results.is_dir():
        shutil.rmtree(results)
    for model, (n_layers, n_heads) in MODELS.items():
        base = {task: rng.uniform(0.55, 0.9) for task in BENCHMARKS}
        for day, mask in enumerate((None, *MASKS), start=1):
            drop = 0.0 if mask is None else rng.uniform(0.0, 0.3)
            metrics = {
                task: {metric: (100 if percent else 1) * max(base[task] - drop, 0.0)} for task, (metric, percent) in BENCHMARKS.items()
            }
            heads = None if mask is None else [f"L{rng.integers(n_layers)}H{rng.integers(n_heads)}" for _ in range(20)]
            write_results(results, f"202501{day:02d}_000000", model, metrics, mask=mask, heads=heads, shape=(n_layers, n_heads))
    (root / "benchmark.json").write_text(
        json.dumps({"samples": n_samples, "seed": seed, "models": MODELS, "benchmarks": list(BENCHMARKS)}, indent=2)
    )
    return folders


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(name: str, timings: dict[str, dict[str, float]], step) -> object:
    """Run ``step()``, recording its wall-clock and CPU seconds under ``name``."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = step()
    timings[name] = {"wall": time.perf_counter() - wall, "cpu": _cpu_seconds() - cpu}
    print(f"  {name}: {timings[name]['wall']:.1f} s wall, {timings[name]['cpu']:.1f} s CPU", file=sys.stderr)
    return result


def run_cli(root: Path, folders: list[Path]) -> dict[str, float]:
    visheads = str(Path(sys.executable).parent / "visheads")
    out = root / "out_cli"
    pointqa = [f for f in folders if f.name.endswith("__pointqa_visual_general")]
    commands = {
        "rank": [visheads, "rank", *pointqa, "--task", "pointqa_visual_general", "--out", out / "rankings"],
        "plot": [visheads, "plot", *folders, "--results", root / "results", "--out", out / "figures"],
        "compare": [visheads, "compare", *folders, "--out", out],
        "leaderboard": [visheads, "leaderboard", root / "results", "--out", out],
    }
    timings: dict[str, dict[str, float]] = {}
    for name, command in commands.items():
        timed(
            f"cli {name}", timings, lambda command=command: subprocess.run([str(c) for c in command], check=True, stdout=subprocess.DEVNULL)
        )
    return timings


def run_api(root: Path, folders: list[Path]) -> dict[str, float]:
    out = root / "out_api"
    timings: dict[str, dict[str, float]] = {}
    maps = timed("api read records", timings, lambda: record_maps(folders))

    def rank() -> None:
        for m in maps:
            if m.task == "pointqa_visual_general":
                write_ranking(ranking_table(m), out / "rankings" / default_ranking_path(m.model).name)

    def compare() -> None:
        for name, table in (("correlation.csv", correlation_table(maps)), ("emd.csv", emd_table(maps))):
            write_atomic(out / name, lambda partial, table=table: table.to_csv(partial, index=False))

    def board() -> dict:
        table = leaderboard(find_runs([root / "results"]))
        write_atomic(out / "leaderboard.csv", lambda partial: table.to_csv(partial, index=False))
        write_text_atomic(out / "leaderboard.md", to_markdown(table))
        write_text_atomic(out / "leaderboard.tex", to_latex(table))
        return {(r.model, r.task): r.value for r in table[table["mask"] == NO_MASK].itertuples()}

    def plot(accuracy: dict) -> None:
        for stem, draw in tqdm(figures.figure_set(maps, accuracy, "score")[0], desc="figures", unit="figure"):
            figures.save_figure(draw(), out / "figures" / stem)

    timed("api rank", timings, rank)
    timed("api compare", timings, compare)
    accuracy = timed("api leaderboard", timings, board)
    timed("api plot", timings, lambda: plot(accuracy))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="folder for the data and outputs (default: a temporary folder, removed at the end)")
    parser.add_argument(
        "--samples", type=int, default=5700, help="samples per model and benchmark (default 5700, the paper's PointQA size)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="visheads_scale_"))
    try:
        folders = generate(root, args.samples, args.seed)
        size = sum(p.stat().st_size for p in (root / "records").rglob("*.parquet"))
        print(
            f"{len(MODELS)} models x {len(BENCHMARKS)} benchmarks x {args.samples} samples, {size / 1e9:.2f} GB of records in {root}",
            file=sys.stderr,
        )
        timings = {**run_cli(root, folders), **run_api(root, folders)}
        totals = {
            f"{way} total": {clock: sum(t[clock] for name, t in timings.items() if name.startswith(way)) for clock in ("wall", "cpu")}
            for way in ("cli", "api")
        }
        report = {"samples": args.samples, "seed": args.seed, "record_bytes": size, "seconds": {**timings, **totals}}
        write_text_atomic(root / "timings.json", json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        if args.root is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
