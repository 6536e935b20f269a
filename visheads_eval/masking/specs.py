"""Mask specs by name, file or inline list, resolved for one model into the heads to mask.

``mask=`` takes a spec name (looked up in the user's ``mask_dir`` first, then in the shipped
``head_masks/``), the path of a YAML file, an inline list of heads (``L2H5+L10H3``, mode zero) or
``none``. :func:`resolve_mask` checks the spec against the model's shape, reads the ranking that
``top`` and ``others`` selections need, draws ``random`` and ``others`` heads from the spec's seed, and
returns a :class:`ResolvedMask`: the heads that get masked, and what to record about them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.heads import Head, HeadShape
from visheads_eval.masking.schema import DEFAULT_MODE, MaskSpec, load_spec_file, unique_heads
from visheads_eval.masking.select import select_heads
from visheads_eval.ranking import default_ranking_path, read_ranking
from visheads_eval.resources import head_masks_dir
from visheads_eval.weights import weights_difference

INLINE = "inline"
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SpecFile:
    """A spec file found by name: where it is, and whether it hides a shipped spec of the same name."""

    name: str
    path: Path
    origin: str  # "mask_dir" or "shipped"
    overrides_shipped: bool = False


def _folder_specs(folder: Path, origin: str) -> dict[str, SpecFile]:
    found: dict[str, SpecFile] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in SPEC_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem in found:
            raise VisheadsError(
                f"mask folder {folder} has two specs named '{path.stem}' ({found[path.stem].path.name} and {path.name}); keep one"
            )
        found[path.stem] = SpecFile(path.stem, path, origin)
    return found


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def spec_files(mask_dir: Path | str | None = None) -> dict[str, SpecFile]:
    """Every spec usable by name, sorted by name: the user's ``mask_dir`` ones, then shipped ones they do not hide."""
    shipped = _folder_specs(head_masks_dir(), "shipped")
    found = dict(shipped)
    if mask_dir is not None:
        folder = Path(mask_dir).expanduser()
        if not folder.is_dir():
            raise VisheadsError(f"mask_dir {folder} is not a folder; give the folder that holds your mask spec YAML files")
        for name, spec in _folder_specs(folder, "mask_dir").items():
            found[name] = SpecFile(name, spec.path, spec.origin, overrides_shipped=name in shipped)
    return {name: found[name] for name in sorted(found, key=_natural_key)}


def _looks_like_path(text: str) -> bool:
    return text.lower().endswith(SPEC_SUFFIXES) or "/" in text or os.sep in text


def load_mask(mask_arg: str | os.PathLike[str], mask_dir: Path | str | None = None) -> MaskSpec:
    """The spec that ``mask_arg`` names (a spec name, a YAML file, or an inline ``L2H5+L10H3``), checked."""
    text = str(mask_arg).strip()
    if not text:
        raise VisheadsError("the mask is empty; give a spec name (e.g. early_top20), a YAML file, or heads like L2H5+L10H3")
    if isinstance(mask_arg, os.PathLike) or _looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise VisheadsError(f"mask spec file {path} does not exist")
        return load_spec_file(path)
    files = spec_files(mask_dir)
    if text in files:
        return load_spec_file(files[text].path, name=text)
    if "+" in text:
        return _inline(text)
    try:
        return _inline(text)
    except VisheadsError:
        raise VisheadsError(
            f"unknown mask '{text}'{did_you_mean(text, files)}; give a spec name (`visheads masks` lists them), "
            f"a YAML file, or heads like L2H5+L10H3"
        ) from None


def _inline(text: str) -> MaskSpec:
    try:
        parsed = [Head.parse(part) for part in text.split("+")]
    except VisheadsError as error:
        raise VisheadsError(f"mask '{text}': {error}") from error
    heads = unique_heads(parsed, f"mask '{text}'")
    return MaskSpec(
        name="+".join(map(str, heads)),
        source=INLINE,
        description="inline list of heads",
        mode=DEFAULT_MODE,
        select=None,
        heads=heads,
        means=None,
    )


@dataclass(frozen=True)
class ResolvedMask:
    """A spec resolved for one model: the heads to mask and what to record about them."""

    name: str
    mode: str  # zero | mean | uniform
    heads: tuple[Head, ...]  # sorted
    seed: int | None  # the seed of a random or others selection, else None
    spec: dict[str, Any]  # the spec with its defaults filled in
    source: str  # the spec file, or "inline"
    ranking_path: Path | None  # the ranking that top / others read
    ranking_sha256: str | None
    means_path: Path | None  # mode mean: the reference means file (checked to exist, not read)

    def to_json(self) -> dict[str, Any]:
        """The ``mask`` entry of the ``visheads`` block of lmms-eval results."""
        return {
            "name": self.name,
            "mode": self.mode,
            "heads": [str(head) for head in self.heads],
            "seed": self.seed,
            "spec": self.spec,
            "source": self.source,
            "ranking": None if self.ranking_path is None else str(self.ranking_path),
            "ranking_sha256": self.ranking_sha256,
            "means": None if self.means_path is None else str(self.means_path),
        }


def resolve_mask(
    mask_arg: str | os.PathLike[str],
    shape: HeadShape,
    model: str | None = None,
    mask_dir: Path | str | None = None,
    ranking: Path | str | None = None,
) -> ResolvedMask:
    """Resolve ``mask_arg`` for a model of ``shape`` (``model``: its name, for its default ranking).

    ``ranking`` (a ranking CSV) overrides the model's default ranking; ``mask_dir`` is searched for
    spec names before the shipped specs. Every problem raises a one-line :class:`VisheadsError`.
    """
    return resolve_spec(load_mask(mask_arg, mask_dir), shape, model=model, ranking=ranking)


def resolve_spec(
    spec: MaskSpec, shape: HeadShape, model: str | None = None, ranking: Path | str | None = None, weights: dict | None = None
) -> ResolvedMask:
    """Resolve a loaded ``spec`` for a model of ``shape``; see :func:`resolve_mask`. With ``weights`` (what the
    run loads, :func:`visheads_eval.weights.weights_identity`), a ranking made on other weights is refused."""
    try:
        return _resolve(spec, shape, model, ranking, weights)
    except VisheadsError as error:
        raise VisheadsError(f"mask '{spec.name}' ({spec.source}): {error}") from error


def _resolve(spec: MaskSpec, shape: HeadShape, model: str | None, ranking: Path | str | None, weights: dict | None) -> ResolvedMask:
    ranking_path = ranking_sha256 = None
    if spec.heads is not None:
        for head in spec.heads:
            shape.check(head)
        heads = list(spec.heads)
    elif spec.select is not None:
        table = None
        if spec.select.order in ("top", "others"):
            ranking_path = _ranking_path(spec.select.order, model, ranking)
            table = read_ranking(ranking_path, shape)
            _check_ranked_weights(ranking_path, weights)
            ranking_sha256 = hashlib.sha256(ranking_path.read_bytes()).hexdigest()
        heads = select_heads(spec.select, shape, table)
    else:
        raise VisheadsError(f"mask spec {spec.name} has neither heads nor select")
    means_path = _means_path(spec, model, ranking) if spec.mode == "mean" else None
    return ResolvedMask(
        name=spec.name,
        mode=spec.mode,
        heads=tuple(sorted(heads)),
        seed=spec.seed,
        spec=spec.to_dict(),
        source=spec.source,
        ranking_path=ranking_path,
        ranking_sha256=ranking_sha256,
        means_path=means_path,
    )


def _check_ranked_weights(ranking_path: Path, weights: dict | None) -> None:
    """Refuse a ranking whose provenance (the JSON beside it) names other weights than the run loads."""
    provenance = ranking_path.with_suffix(".json")
    if weights is None or not provenance.is_file():
        return
    ranked = json.loads(provenance.read_text()).get("weights") or {}
    if ranked.get("digest") is None or weights.get("digest") is None:
        return  # one side's weights are not known (a hub model not yet downloaded when it was recorded)
    if (ranked.get("digest"), ranked.get("commit")) != (weights.get("digest"), weights.get("commit")):
        raise VisheadsError(
            f"ranking {ranking_path} was made on other weights ({weights_difference(ranked, weights)}); "
            "rank the records of the weights this run loads with `visheads rank`, or pass ranking=FILE"
        )


def _ranking_path(order: str, model: str | None, ranking: Path | str | None) -> Path:
    if ranking is not None:
        path = Path(ranking).expanduser().resolve()
        if not path.is_file():
            raise VisheadsError(f"ranking file {path} does not exist")
        return path
    if model is None:
        raise VisheadsError(f"selecting {order} heads needs a ranking of the model's heads; pass ranking=FILE (--ranking FILE)")
    path = default_ranking_path(model)
    if not path.is_file():
        raise VisheadsError(
            f"selecting {order} heads needs a ranking of {model}, and its default ranking {path} does not exist; "
            f"make it with `visheads rank ... --out {path}` or pass ranking=FILE (--ranking FILE)"
        )
    return path


def _means_path(spec: MaskSpec, model: str | None, ranking: Path | str | None) -> Path:
    if spec.means is not None:
        return spec.means
    if ranking is not None:
        ranking_file = Path(ranking).expanduser().resolve()
    elif model is not None:
        ranking_file = default_ranking_path(model)
    else:
        raise VisheadsError(
            "mode mean needs reference means: give `means: FILE.npz` in the spec, or a ranking "
            "(ranking=FILE) to find <ranking stem>.means.npz next to it"
        )
    path = ranking_file.with_name(f"{ranking_file.stem}.means.npz")
    if not path.is_file():
        raise VisheadsError(
            f"mode mean needs reference means, and {path} (next to the ranking) does not exist; "
            f"make it there or give `means: FILE.npz` in the spec"
        )
    return path
