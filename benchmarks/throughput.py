"""Documents per second of ``llava_visheads`` at batch sizes 1, 4 and 16, in lmms-eval's own evaluation time.

The shipped organism (``pretrained=visheads-tiny``) on the six PointQA tasks (the ``pointqa`` group, 6 x 210
docs), recording every doc (``record=``, position ``answer``), CPU. Every run is a full ``lmms_eval`` evaluation in this process
(``visheads_eval.lmms.runner``); the figure is lmms-eval's ``total_evaluation_time_seconds`` from the
results file. Batch sizes are interleaved over ``--rounds`` rounds and each one's median is reported, so
that the speed-ups come from one run on the same machine state. Each run also sums the seconds spent
inside the model's ``generate`` (recording included): what batching leaves of the model's own compute,
beside lmms-eval's work per document outside it.

    python benchmarks/throughput.py                     # batch 1, 4, 16; 2 rounds
    python benchmarks/throughput.py --batch-sizes 1 16 --rounds 3 --out result.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TASKS = "pointqa"


@contextlib.contextmanager
def generate_timer() -> Iterator[list[float]]:
    """Seconds of every ``LlavaForConditionalGeneration.generate`` call made inside the block."""
    from transformers import LlavaForConditionalGeneration

    original, spent = LlavaForConditionalGeneration.generate, []

    @functools.wraps(original)
    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    LlavaForConditionalGeneration.generate = timed
    try:
        yield spent
    finally:
        LlavaForConditionalGeneration.generate = original


def evaluate(batch_size: int, work: Path) -> tuple[float, float, int]:
    """One evaluation: lmms-eval's evaluation seconds, the seconds inside ``generate``, and the number of
    docs it answered."""
    from visheads_eval.lmms import runner

    out = Path(tempfile.mkdtemp(dir=work))
    argv = [
        "--model",
        "llava_visheads",
        "--model_args",
        f"pretrained=visheads-tiny,record={out / 'rec'}",
        "--tasks",
        TASKS,
        "--batch_size",
        str(batch_size),
        "--output_path",
        str(out / "out"),
        "--log_samples",
        "--verbosity",
        "WARNING",
    ]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), generate_timer() as spent:
        code = runner.run(argv)
    if code != 0:
        raise RuntimeError(f"lmms_eval {' '.join(argv)} exited {code}")
    (results,) = (out / "out").glob("*/*_results.json")
    summary = json.loads(results.read_text())
    n_docs = sum(int(n["effective"]) for n in summary["n-samples"].values())
    return float(summary["total_evaluation_time_seconds"]), sum(spent), n_docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "throughput.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    seconds: dict[int, list[float]] = {size: [] for size in args.batch_sizes}
    generating: dict[int, list[float]] = {size: [] for size in args.batch_sizes}
    with tempfile.TemporaryDirectory(prefix="visheads-throughput-") as work:
        evaluate(args.batch_sizes[0], Path(work))  # warm-up: datasets cache, first model load
        for round_ in range(args.rounds):
            for size in args.batch_sizes:
                elapsed, in_generate, n_docs = evaluate(size, Path(work))
                seconds[size].append(elapsed)
                generating[size].append(in_generate)
                print(
                    f"round {round_ + 1}: batch {size:2d}: {elapsed:6.1f} s for {n_docs} docs ({in_generate:.1f} s in generate)", flush=True
                )
    base = statistics.median(seconds[args.batch_sizes[0]])
    rows = [
        {
            "batch_size": size,
            "seconds": statistics.median(values),
            "docs": n_docs,
            "docs_per_s": n_docs / statistics.median(values),
            "speedup": base / statistics.median(values),
            "generate_seconds": statistics.median(generating[size]),
        }
        for size, values in seconds.items()
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(
        f"\n| batch size | lmms-eval evaluation time ({n_docs} docs, median of {args.rounds}) | docs/s | vs batch {args.batch_sizes[0]} "
        "| of which in `generate` | outside it |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['batch_size']} | {row['seconds']:.1f} s | {row['docs_per_s']:.1f} | {row['speedup']:.1f}x "
            f"| {row['generate_seconds']:.1f} s | {row['seconds'] - row['generate_seconds']:.1f} s |"
        )


if __name__ == "__main__":
    main()
