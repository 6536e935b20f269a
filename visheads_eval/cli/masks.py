"""``visheads masks``: list and check head-mask specs, and show the heads they mask in one model.

Without a model shape it lists every spec (shipped and ``--mask-dir``) with its description and checks
what needs no model; with ``--pretrained`` (read via ``AutoConfig``, no weights) or ``--layers/--heads``
it resolves each spec for that shape and prints its heads. Any invalid spec is one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visheads_eval.errors import VisheadsError
from visheads_eval.heads import HeadShape

if TYPE_CHECKING:
    from visheads_eval.masking.schema import MaskSpec
    from visheads_eval.masking.specs import ResolvedMask, SpecFile


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "masks",
        help="list and check head-mask specs, and resolve them to heads for a model",
        description="List the head-mask specs (shipped and --mask-dir) and check them. Given a model shape "
        "(--pretrained, or --layers and --heads), resolve each spec and print the heads it masks.",
    )
    parser.add_argument(
        "masks", nargs="*", metavar="MASK", help="spec names, YAML files or inline heads (L2H5+L10H3); default: every spec found"
    )
    parser.add_argument("--mask-dir", type=Path, help="a folder of your own spec YAML files, searched before the shipped ones")
    parser.add_argument(
        "--pretrained",
        help="a model folder, hub id or visheads-tiny whose config gives the shape (no weights are read); "
        "also names the model's default ranking",
    )
    parser.add_argument("--layers", type=int, help="number of language-model layers (with --heads, instead of --pretrained)")
    parser.add_argument("--heads", type=int, help="attention heads per layer (with --layers)")
    parser.add_argument(
        "--ranking", type=Path, help="ranking CSV for top and others selections (default: the --pretrained model's default ranking)"
    )
    parser.add_argument("--json", action="store_true", help="print the resolved masks as JSON (needs a shape)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from visheads_eval.masking.specs import load_mask, resolve_spec, spec_files  # pandas, via rankings

    shape = _shape(args)
    if args.json and shape is None:
        raise VisheadsError("--json prints resolved masks and needs a model shape: add --pretrained PATH or --layers N --heads H")
    origins = spec_files(args.mask_dir)
    errors: list[str] = []
    specs = _each(args.masks or list(origins), lambda name: load_mask(name, args.mask_dir), errors)
    if shape is None:
        if specs:
            _print_specs(specs, origins)
    else:
        resolved = _each(specs, lambda spec: resolve_spec(spec, shape, model=args.pretrained, ranking=args.ranking), errors)
        if args.json:
            print(json.dumps([mask.to_json() for mask in resolved], indent=2))
        elif resolved:
            _print_resolved(resolved, shape)
    for error in errors:
        print(f"visheads: error: {error}", file=sys.stderr)
    return 2 if errors else 0


def _shape(args: argparse.Namespace) -> HeadShape | None:
    if args.pretrained is not None:
        if args.layers is not None or args.heads is not None:
            raise VisheadsError("give the model shape either by --pretrained or by --layers and --heads, not both")
        return _shape_from_config(args.pretrained)
    if (args.layers is None) != (args.heads is None):
        raise VisheadsError("--layers and --heads go together: give both (or --pretrained PATH)")
    if args.layers is None:
        return None
    if args.layers < 1 or args.heads < 1:
        raise VisheadsError(f"--layers and --heads must be at least 1, got {args.layers} and {args.heads}")
    # Picking heads needs only the layer and head counts; key/value heads and widths are not known here.
    return HeadShape(n_layers=args.layers, n_heads=args.heads, n_kv_heads=args.heads, head_dim=0)


def _shape_from_config(pretrained: str) -> HeadShape:
    from transformers import AutoConfig

    from visheads_eval.model_args import resolve_pretrained

    try:
        config = AutoConfig.from_pretrained(resolve_pretrained(pretrained))
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise VisheadsError(f"cannot read the config of --pretrained {pretrained}: {reason}") from error
    return HeadShape.from_config(config)


def _each(items: list[Any], work: Callable[[Any], Any], errors: list[str]) -> list[Any]:
    """``work(item)`` for each item that succeeds; a failing item's one-line error goes to ``errors``."""
    done = []
    for item in items:
        try:
            done.append(work(item))
        except VisheadsError as error:
            errors.append(str(error))
    return done


def _print_specs(specs: list[MaskSpec], origins: dict[str, SpecFile]) -> None:
    rows: list[tuple[str, ...]] = [("name", "mode", "selects", "from", "description")]
    for spec in specs:
        rows.append((spec.name, spec.mode, spec.summary(), _origin(spec, origins), spec.description))
    _print_table(rows)


def _origin(spec: MaskSpec, origins: dict[str, SpecFile]) -> str:
    found = origins.get(spec.name)
    if found is None or str(found.path) != spec.source:
        return spec.source
    if found.origin == "shipped":
        return "shipped"
    return "mask-dir (overrides shipped)" if found.overrides_shipped else "mask-dir"


def _print_resolved(masks: list[ResolvedMask], shape: HeadShape) -> None:
    print(f"model shape: {shape.n_layers} layers x {shape.n_heads} heads")
    rows: list[tuple[str, ...]] = [("name", "mode", "seed", "n", "heads")]
    for mask in masks:
        seed = "-" if mask.seed is None else str(mask.seed)
        rows.append((mask.name, mask.mode, seed, str(len(mask.heads)), " ".join(map(str, mask.heads)) or "-"))
    _print_table(rows)
    for path in sorted({str(mask.ranking_path) for mask in masks if mask.ranking_path is not None}):
        print(f"ranking: {path}")
    for path in sorted({str(mask.means_path) for mask in masks if mask.means_path is not None}):
        print(f"means: {path}")


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip())
