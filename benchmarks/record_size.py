"""Size on disk and reading time of a record set at the paper's scale: a 40 x 40 model, 5,700 samples.

Writes seeded synthetic records (fixtures.synthetic_records: per-head Beta distributions at full
float32 precision, so they compress no better than real ones) with RecordWriter, then loads them back
and reads every statistic, timing each step. Prints a table and, last, one JSON line with every figure
and the seed.

    .venv/bin/python -m benchmarks.record_size                      # 40 x 40, 5,700 samples
    .venv/bin/python -m benchmarks.record_size --n-layers 32 --n-heads 32 --samples 1000 --out /tmp/rec
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fixtures.synthetic_records import write_synthetic_records
from visheads_eval.records import STATISTICS, load_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layers", type=int, default=40)
    parser.add_argument("--n-heads", type=int, default=40)
    parser.add_argument("--samples", type=int, default=5700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="record folder to write (default: a temporary folder, removed after)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.out or Path(temporary) / "records"
        started = time.perf_counter()
        write_synthetic_records(
            folder,
            model=f"synthetic-{args.n_layers}x{args.n_heads}",
            n_layers=args.n_layers,
            n_heads=args.n_heads,
            n_samples=args.samples,
            seed=args.seed,
        )
        write_s = time.perf_counter() - started
        shards = sorted((folder / "shards").glob("rank*.parquet"))
        size = sum(path.stat().st_size for path in shards)

        started = time.perf_counter()
        records = load_records(folder, progress=False)
        load_s = time.perf_counter() - started
        read_s = {}
        for name in STATISTICS:
            started = time.perf_counter()
            records.stat(name)
            read_s[name] = time.perf_counter() - started

    raw = args.samples * args.n_layers * args.n_heads * 4 * len(STATISTICS)
    figures = {
        "n_layers": args.n_layers,
        "n_heads": args.n_heads,
        "samples": args.samples,
        "seed": args.seed,
        "shards": len(shards),
        "size_mb": round(size / 1e6, 2),
        "bytes_per_sample": round(size / args.samples),
        "raw_float32_mb": round(raw / 1e6, 2),
        "generate_and_write_s": round(write_s, 2),
        "load_s": round(load_s, 3),
        "read_s": {name: round(seconds, 3) for name, seconds in read_s.items()},
        "read_all_s": round(load_s + sum(read_s.values()), 3),
    }
    print(f"{args.n_layers} x {args.n_heads} heads, {args.samples} samples, seed {args.seed}: {len(shards)} shards")
    print(f"  size on disk      {size / 1e6:8.1f} MB ({size / args.samples / 1e3:.1f} kB per sample; plain float32: {raw / 1e6:.1f} MB)")
    print(f"  generate + write  {write_s:8.2f} s")
    print(f"  load (meta)       {load_s:8.3f} s")
    for name, seconds in read_s.items():
        print(f"  read {name:<13}{seconds:8.3f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
