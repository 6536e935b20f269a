"""``visheads sweep``: evaluate a grid of head masks through lmms-eval or lm-eval with one model load (see visheads_eval.sweep)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="evaluate a grid of masks on one loaded model: the results files of separate lmms_eval or visheads lm-eval runs",
        description="Evaluate every mask (and seed) on the tasks through lmms-eval (or lm-eval), loading the model once. Each "
        "writes exactly the results file (and samples logs) that `lmms_eval --model MODEL --model_args ...,mask=NAME` (or "
        "`visheads lm-eval ... --apply_chat_template`) writes, so `visheads leaderboard` reads them unchanged. Masks whose "
        "results exist are skipped.",
    )
    parser.add_argument(
        "--masks",
        nargs="+",
        required=True,
        metavar="MASK",
        help="spec names, globs over them (early_*), YAML files, inline heads (L2H5+L10H3), "
        "or paper: every shipped spec (the paper's grid and none)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[],
        metavar="SEED",
        help="evaluate every random and others spec once per seed (default: the spec's own seed)",
    )
    parser.add_argument(
        "--host",
        choices=("lmms-eval", "lm-eval"),
        default="lmms-eval",
        help="the evaluation harness every point runs in (default lmms-eval)",
    )
    parser.add_argument(
        "--model",
        choices=("llava_visheads", "visheads"),
        default="llava_visheads",
        help="the lmms-eval model: llava_visheads (the LLaVA family, the default) or visheads (every family)",
    )
    parser.add_argument("--pretrained", default="visheads-tiny", help="the model (default: the shipped organism)")
    parser.add_argument("--model_args", default="", help="more model_args shared by every point (e.g. dtype=bfloat16,mask_mode=mean)")
    parser.add_argument("--mask-dir", type=Path, help="a folder of your own specs, searched before the shipped ones")
    parser.add_argument("--ranking", type=Path, help="the ranking top and others specs read (default: the model's default ranking)")
    parser.add_argument("--tasks", required=True, help="the host's tasks, comma-separated")
    parser.add_argument("--output_path", type=Path, required=True, help="the host's output folder (shared by every point)")
    parser.add_argument("--record-dir", type=Path, help="record every point, into RECORD_DIR/<mask label>")
    parser.add_argument("--batch_size", type=int, default=1, help="documents per generate (default 1)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N docs of each task")
    parser.add_argument("--include_path", type=Path, help="a folder of extra task YAMLs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.sweep import HOSTS, evaluation_args, expand_masks, run_sweep

    points = expand_masks(args.masks, args.mask_dir, args.seeds)
    shared = [f"pretrained={args.pretrained}"]
    shared += [part for part in args.model_args.split(",") if part]
    if args.mask_dir is not None:
        shared.append(f"mask_dir={args.mask_dir}")
    if args.ranking is not None:
        shared.append(f"ranking={args.ranking}")
    host = HOSTS[args.host]
    host_args = evaluation_args(args.tasks, args.batch_size, args.limit, args.include_path, host)
    print(
        f"visheads sweep: {len(points)} points on {args.pretrained} ({args.model} in {host.name}), tasks {args.tasks}, "
        f"into {args.output_path}",
        flush=True,
    )
    run_sweep(
        points,
        ",".join(shared),
        host_args,
        args.output_path,
        record_dir=args.record_dir,
        say=lambda line: print(line, flush=True),
        model=args.model,
        host=host,
    )
    return 0
