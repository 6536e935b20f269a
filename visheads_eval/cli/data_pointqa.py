"""``visheads data pointqa``: convert LookTwice-QA or ViP-LLaVA PointQA files into a PointQA task folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from visheads_eval.data.pointqa import DEFAULT_PRESET, PRESETS


def register(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "pointqa",
        help="convert PointQA (LookTwice-QA) files and Visual Genome images into a task folder",
        description=(
            "Convert the public PointQA (LookTwice-QA) file, in Mani et al.'s layout (looktwiceqa_dataset.json) or "
            "ViP-LLaVA's (pointQA_twice_test.json), with your Visual Genome image folder into OUT/data/test.parquet "
            "plus the six PointQA task YAMLs. Run them with `lmms_eval --include_path OUT --tasks pointqa`. "
            "Entries that cannot be converted are skipped and listed in OUT/skipped.csv."
        ),
    )
    parser.add_argument("source", type=Path, help="looktwiceqa_dataset.json or pointQA_twice_test.json")
    parser.add_argument("--images", type=Path, required=True, help="Visual Genome image folder (VG_100K and VG_100K_2 inside are searched)")
    parser.add_argument("--out", type=Path, required=True, help="task folder to create")
    parser.add_argument("--layout", default="auto", help="source layout: looktwice, vip or auto (the default: detected)")
    parser.add_argument(
        "--split-images", type=Path, help="looktwice layout: JSON list of the split's image ids, e.g. looktwiceqa_test_imgs.json"
    )
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=DEFAULT_PRESET,
        help=f"how the tasks draw the box and word the prompt (default {DEFAULT_PRESET}; paper: as the paper's code)",
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first entry that cannot be converted instead of skipping it")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: it loads datasets and pandas, which `visheads --help` does not need.
    from visheads_eval.data.pointqa_convert import convert_pointqa

    summary = convert_pointqa(
        args.source,
        args.images,
        args.out,
        layout=args.layout,
        split_images=args.split_images,
        strict=args.strict,
        overwrite=args.overwrite,
        preset=args.preset,
    )
    print(summary.line())
    print(f"run: lmms_eval --include_path {summary.out} --tasks pointqa ...")
    return 0
