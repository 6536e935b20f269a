"""The YAML schema of a head-mask spec: reading one spec and checking everything that needs no model.

A spec either selects heads (``select: {stage, order, k}``) or lists them (``heads: [L2H5, ...]``), and
says how they are ablated (``mode``). Keys, types and values are checked here, each failure one line
naming the spec; which heads a selection picks for a given model is worked out in
:mod:`visheads_eval.masking.select`. The schema is documented in ``head_masks/README.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.heads import STAGES, Head

KEYS = ("description", "select", "heads", "seed", "mode", "means")
SELECT_KEYS = ("stage", "order", "k", "exclude_top")
SELECT_STAGES = (*STAGES, "all")
ORDERS = ("top", "random", "others")
MODES = ("zero", "mean", "uniform")

DEFAULT_MODE = "zero"
DEFAULT_SEED = 0
# How many of a stage's best-ranked heads `others` never draws from: the largest top-k of the shipped
# grid (early_top50), so no `others` set shares a head with any `top` set it is compared with.
DEFAULT_EXCLUDE_TOP = 50

_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)\s*%$")


def count_heads(count: int | str, total_heads: int) -> int:
    """A head count as written in a spec (``20`` or ``"10%"`` of all ``total_heads``) as a number.

    Percentages round half up and give at least one head.
    """
    if isinstance(count, int):
        return count
    match = _PERCENT.match(count)
    if match is None:
        raise VisheadsError(f"head count '{count}' is neither a whole number nor a percentage such as 10%")
    share = Fraction(match.group(1)) * total_heads / 100
    return max(1, math.floor(share + Fraction(1, 2)))


def describe_count(count: int | str) -> str:
    return str(count) if isinstance(count, int) else f"{count} of all heads"


@dataclass(frozen=True)
class Selection:
    """Which heads a spec picks: ``k`` heads of ``stage`` by ``order``."""

    stage: str  # early | mid | late | all
    order: str  # top | random | others
    k: int | str  # a number of heads, or a percentage of all heads ("10%")
    exclude_top: int | str | None  # others only: the size of the stage's top set never drawn from
    seed: int | None  # random and others only


@dataclass(frozen=True)
class MaskSpec:
    """A checked spec; ``heads`` is set for an explicit list, ``select`` for a selection."""

    name: str
    source: str  # the spec file, or "inline"
    description: str
    mode: str
    select: Selection | None
    heads: tuple[Head, ...] | None
    means: Path | None  # mode mean: the reference means the spec names (absolute)

    @property
    def seed(self) -> int | None:
        """The seed of a random or others selection; ``None`` when nothing is drawn at random."""
        return self.select.seed if self.select is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The spec with its defaults filled in, as recorded with the resolved heads."""
        spec: dict[str, Any] = {"description": self.description}
        if self.select is not None:
            select = {"stage": self.select.stage, "order": self.select.order, "k": self.select.k}
            if self.select.exclude_top is not None:
                select["exclude_top"] = self.select.exclude_top
            spec["select"] = select
        else:
            spec["heads"] = [str(head) for head in self.heads or ()]
        if self.seed is not None:
            spec["seed"] = self.seed
        spec["mode"] = self.mode
        if self.means is not None:
            spec["means"] = str(self.means)
        return spec

    def summary(self) -> str:
        """One phrase saying what the spec picks, e.g. ``early top 20`` or ``2 heads: L2H5 L10H3``."""
        if self.select is None:
            heads = self.heads or ()
            return f"{len(heads)} heads: {' '.join(map(str, heads))}" if heads else "no heads"
        select = self.select
        phrase = f"{select.stage} {select.order} {describe_count(select.k)}"
        if select.exclude_top is not None:
            phrase += f" outside the top {describe_count(select.exclude_top)}"
        return phrase + (f", seed {self.seed}" if self.seed is not None else "")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is written twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_spec_file(path: Path, name: str | None = None) -> MaskSpec:
    """Read and check the spec in ``path``; its name is the file stem unless ``name`` is given."""
    path = Path(path)
    where = f"mask spec {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VisheadsError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise VisheadsError(f"cannot read {where}: {error}") from error
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise VisheadsError(f"{where} is not valid YAML: {_yaml_problem(error)}") from error
    return parse_spec(data, name=name or path.stem, source=str(path), base_dir=path.parent)


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem is None:
        return " ".join(str(error).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def parse_spec(data: Any, name: str, source: str, base_dir: Path | None = None) -> MaskSpec:
    """Check a spec's parsed YAML ``data``; ``means`` paths are relative to ``base_dir``."""
    where = f"mask spec {source}"
    if not isinstance(data, Mapping):
        found = "nothing" if data is None else f"a {type(data).__name__}"
        raise VisheadsError(f"{where} must be a mapping with `select` or `heads` (and `mode`), but it holds {found}")
    _check_keys(data, KEYS, where)
    if ("select" in data) == ("heads" in data):
        raise VisheadsError(
            f"{where} needs exactly one of `select: {{stage, order, k}}` or `heads: [L2H5, ...]`"
            if "select" not in data
            else f"{where} has both `select` and `heads`; keep one"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise VisheadsError(f"{where}: description must be text")
    mode = _choice(data.get("mode", DEFAULT_MODE), "mode", MODES, where)
    select = _parse_select(data["select"], data.get("seed", DEFAULT_SEED), where) if "select" in data else None
    heads = _parse_heads(data["heads"], where) if "heads" in data else None
    if "seed" in data and (select is None or select.seed is None):
        raise VisheadsError(f"{where}: seed applies to random and others selections only; remove it")
    means = None
    if "means" in data:
        if mode != "mean":
            raise VisheadsError(f"{where}: means applies to mode mean only; remove it or set mode: mean")
        means = _parse_means(data["means"], base_dir, where)
    return MaskSpec(name=name, source=source, description=description, mode=mode, select=select, heads=heads, means=means)


def _check_keys(data: Mapping[Any, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise VisheadsError(f"{where}: unknown key '{key}'{did_you_mean(str(key), allowed)}; keys are {', '.join(allowed)}")


def _choice(value: Any, key: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise VisheadsError(f"{where}: unknown {key} '{value}'{did_you_mean(str(value), choices)}; {key} is one of {', '.join(choices)}")
    return value


def _parse_select(select: Any, seed: Any, where: str) -> Selection:
    if not isinstance(select, Mapping):
        raise VisheadsError(f"{where}: select must be a mapping like {{stage: early, order: top, k: 20}}")
    _check_keys(select, SELECT_KEYS, f"{where} select")
    missing = [key for key in ("stage", "order", "k") if key not in select]
    if missing:
        raise VisheadsError(f"{where}: select needs {', '.join(missing)} (e.g. {{stage: early, order: top, k: 20}})")
    stage = _choice(select["stage"], "stage", SELECT_STAGES, where)
    order = _choice(select["order"], "order", ORDERS, where)
    k = _parse_count(select["k"], "select.k", where)
    if "exclude_top" in select and order != "others":
        raise VisheadsError(f"{where}: select.exclude_top applies to order others only; remove it")
    exclude_top = None
    if order == "others":
        exclude_top = _parse_count(select.get("exclude_top", DEFAULT_EXCLUDE_TOP), "select.exclude_top", where)
    random = order in ("random", "others")
    return Selection(stage=stage, order=order, k=k, exclude_top=exclude_top, seed=_parse_seed(seed, where) if random else None)


def _parse_count(value: Any, key: str, where: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str):
        match = _PERCENT.match(value.strip())
        if match and 0 < Fraction(match.group(1)) <= 100:
            return f"{match.group(1)}%"
    raise VisheadsError(
        f"{where}: {key} must be a whole number of heads (at least 1) or a percentage of all heads "
        f"between 0 and 100 like '10%', not {value!r}"
    )


def _parse_heads(heads: Any, where: str) -> tuple[Head, ...]:
    if not isinstance(heads, list) or not all(isinstance(head, str) for head in heads):
        raise VisheadsError(f"{where}: heads must be a list of head names like [L2H5, L10H3] (or [] for none)")
    try:
        parsed = [Head.parse(head) for head in heads]
    except VisheadsError as error:
        raise VisheadsError(f"{where}: {error}") from error
    return unique_heads(parsed, where)


def unique_heads(heads: list[Head], where: str) -> tuple[Head, ...]:
    """``heads`` sorted, refusing a head named twice."""
    seen: set[Head] = set()
    for head in heads:
        if head in seen:
            raise VisheadsError(f"{where} names head {head} twice")
        seen.add(head)
    return tuple(sorted(heads))


def _parse_seed(seed: Any, where: str) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise VisheadsError(f"{where}: seed must be a whole number >= 0, not {seed!r}")
    return seed


def _parse_means(means: Any, base_dir: Path | None, where: str) -> Path:
    if not isinstance(means, str) or not means.strip():
        raise VisheadsError(f"{where}: means must be the path of a .npz file of reference means")
    path = Path(means).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    if not path.is_file():
        raise VisheadsError(f"{where}: means file {path} does not exist (a relative path is read from the spec's folder)")
    return path.resolve()
