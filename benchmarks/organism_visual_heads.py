"""Does the organism have visual heads? Rank its heads, mask the top k and k random ones, compare.

Heads are scored on synthetic PointQA docs of a split of their own (``--rank-seed``), asked in all six
settings, with ``HeadRecorder`` at the answer position: the paper's detection score (the project's
``ScoreParams``) and, for comparison, the plain attention mass on the image. Each ranking's top k heads
(k = a tenth of all heads by default) are then zeroed with ``HeadMask`` on the evaluation docs, and so
are k random heads drawn as the ``random`` mask specs draw them (seeds 0, 1, 2). The report gives the
accuracy drops and their ratio (top drop / mean random drop).

    python -m benchmarks.organism_visual_heads [--model DIR] [--docs 210] [--k 10%] [--json out.json]

The evaluation docs are the shipped PointQA test split (``tasks/pointqa/data/test.parquet``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import datasets
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from tools.organism.evaluate import accuracy_by_setting, pointqa_head_maps
from visheads_eval.analysis.ranking_table import ranking_table
from visheads_eval.data import synth
from visheads_eval.heads import HeadShape
from visheads_eval.masking.ablation import HeadMask
from visheads_eval.masking.schema import Selection
from visheads_eval.masking.select import select_heads
from visheads_eval.organism import weights_dir
from visheads_eval.resources import tasks_dir

SEEDS = (0, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped organism)")
    parser.add_argument("--docs", type=int, default=210, help="evaluation docs from the shipped test split (each asked in six settings)")
    parser.add_argument("--rank-docs", type=int, default=70, help="docs of the ranking split")
    parser.add_argument("--rank-seed", type=int, default=3, help="seed of the synthetic split 'ranking'")
    parser.add_argument("--k", default="10%", help="heads to mask: a count or a percentage of all heads")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    path = args.model or weights_dir()
    model = LlavaForConditionalGeneration.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    shape = HeadShape.from_config(model.config)
    k = int(args.k) if args.k.isdigit() else args.k
    docs = list(datasets.load_dataset("parquet", data_files=str(tasks_dir() / "pointqa" / "data" / "test.parquet"), split="train"))[
        : args.docs
    ]
    maps = pointqa_head_maps(model, processor, list(synth.generate_docs(args.rank_seed, "ranking", args.rank_docs)), name=str(path))
    image_maps = dataclasses.replace(maps, maps={**maps.maps, "score": maps.maps["image_attn"]})
    base = accuracy_by_setting(model, processor, docs)
    report = {"model": str(path), "docs": len(docs), "rank_docs": args.rank_docs, "rank_seed": args.rank_seed, "k": args.k,
              "score_params": maps.params.describe(), "accuracy": base, "rankings": {}}  # fmt: skip

    def masked_accuracy(heads) -> float:
        with HeadMask(model, heads):
            return accuracy_by_setting(model, processor, docs)["mean"]

    random_accuracy = [masked_accuracy(select_heads(Selection("all", "random", k, None, seed), shape, None)) for seed in SEEDS]
    random_drop = base["mean"] - sum(random_accuracy) / len(SEEDS)
    for name, ranked in (("paper score", maps), ("image attention", image_maps)):
        top = select_heads(Selection("all", "top", k, None, None), shape, ranking_table(ranked))
        top_drop = base["mean"] - masked_accuracy(top)
        ratio = top_drop / random_drop if random_drop > 0 else float("inf")
        report["rankings"][name] = {"top_heads": [str(h) for h in top], "top_drop": top_drop, "random_drop": random_drop,
                                    "masked_random_accuracy": random_accuracy, "ratio": ratio}  # fmt: skip
        print(f"{name:>15}: top {[str(h) for h in top]} drop {top_drop:.3f}; random drop {random_drop:.3f} -> ratio {ratio:.1f}")
    report["wall_s"] = round(time.time() - started, 1)
    print(json.dumps({"accuracy": base, "wall_s": report["wall_s"]}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
