"""Time `visheads data pointqa` at the paper's scale: 5,700 LookTwice-QA entries over Visual Genome-sized JPEGs.

Writes a seeded stand-in for Visual Genome (JPEGs of VG's typical sizes, 500 px on the long side, drawn
as smooth shapes so that they compress like photos), a looktwiceqa_dataset.json over them with a few
broken entries of each kind, converts it with the converter the command runs, then loads the
resulting parquet as lmms-eval does (datasets) and decodes every image. Prints a table and, last, one
JSON line with every figure and the seed.

    .venv/bin/python benchmarks/pointqa_convert_scale.py                       # 5,700 entries, 2,000 images
    .venv/bin/python benchmarks/pointqa_convert_scale.py --entries 500 --images 200 --out /tmp/pq
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw

from visheads_eval.data.pointqa_convert import convert_pointqa
from visheads_eval.data.task_folders import POINTQA_DATA

SIZES = [(500, 375), (500, 333), (375, 500), (500, 500), (333, 500), (500, 281)]  # common Visual Genome sizes


def write_images(folder: Path, n_images: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    sizes = []
    for image_id in range(n_images):
        width, height = SIZES[rng.integers(len(SIZES))]
        image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            w, h = int(rng.integers(10, width // 3)), int(rng.integers(10, height // 3))
            draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        sub = "VG_100K" if image_id % 2 else "VG_100K_2"
        (folder / sub).mkdir(parents=True, exist_ok=True)
        image.save(folder / sub / f"{image_id}.jpg", format="JPEG", quality=85)
        sizes.append((width, height))
    return sizes


def write_entries(path: Path, sizes: list[tuple[int, int]], n_entries: int, rng: np.random.Generator) -> int:
    """The LookTwice-QA layout; every 100th entry is broken (missing image, bad answer, missing question)."""
    data: dict[str, list[dict]] = {}
    broken = 0
    for k in range(n_entries):
        image_id = int(rng.integers(len(sizes)))
        width, height = sizes[image_id]
        w, h = int(rng.integers(10, width // 2)), int(rng.integers(10, height // 2))
        qa = {
            "id": image_id,
            "general_question": "How many of these are there?",
            "obj_question": "How many clocks are there?",
            "super_question": "How many of these devices are there?",
            "ans": str(int(rng.integers(1, 8))),
            "bbox": {"x": int(rng.integers(0, width - w)), "y": int(rng.integers(0, height - h)), "w": w, "h": h},
            "obj_type": "clocks",
        }
        if k % 100 == 99:
            broken += 1
            kind = (k // 100) % 3
            if kind == 0:
                qa["id"] = 10**9 + k  # an image that is not in the folder
            elif kind == 1:
                qa["ans"] = "0"
            else:
                del qa["super_question"]
        data.setdefault(str(qa["id"]), []).append(qa)
    path.write_text(json.dumps(data))
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5700)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="working folder (default: a temporary folder, removed after)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as temporary:
        work = args.out or Path(temporary)
        started = time.perf_counter()
        sizes = write_images(work / "vg", args.images, rng)
        broken = write_entries(work / "looktwiceqa_dataset.json", sizes, args.entries, rng)
        setup_s = time.perf_counter() - started
        image_mb = sum(p.stat().st_size for p in (work / "vg").rglob("*.jpg")) / 2**20

        started = time.perf_counter()
        summary = convert_pointqa(work / "looktwiceqa_dataset.json", work / "vg", work / "pointqa", progress=False)
        convert_s = time.perf_counter() - started
        parquet_mb = (work / "pointqa" / POINTQA_DATA).stat().st_size / 2**20

        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as cache:
            loaded = datasets.load_dataset("parquet", data_files=str(work / "pointqa" / POINTQA_DATA), split="train", cache_dir=cache)
            pixels = sum(doc["image"].convert("RGB").size[0] for doc in loaded)
        load_s = time.perf_counter() - started

    figures = {
        "seed": args.seed,
        "entries": args.entries,
        "images": args.images,
        "broken_entries": broken,
        "converted": summary.converted,
        "skipped": len(summary.skipped),
        "image_folder_mb": round(image_mb, 1),
        "parquet_mb": round(parquet_mb, 1),
        "setup_s": round(setup_s, 1),
        "convert_s": round(convert_s, 1),
        "convert_entries_per_s": round(args.entries / convert_s, 1),
        "load_and_decode_s": round(load_s, 1),
        "decoded_width_sum": pixels,
    }
    print(f"{'entries (broken)':28s} {args.entries} ({broken})")
    print(f"{'converted / skipped':28s} {summary.converted} / {len(summary.skipped)}")
    print(f"{'image folder / parquet':28s} {image_mb:.1f} MB / {parquet_mb:.1f} MB")
    print(f"{'convert':28s} {convert_s:.1f} s ({args.entries / convert_s:.0f} entries/s)")
    print(f"{'load + decode every image':28s} {load_s:.1f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
