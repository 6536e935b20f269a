"""Picking a selection's heads in one model: a stage's top k by rank, k at random, or k outside the top.

Candidates are a stage's heads in layer-major order (``L0H0, L0H1, ..., L1H0, ...``). A random draw
takes the candidates at the first ``k`` indices of ``numpy.random.default_rng(seed).permutation(n)``
(``n`` candidates): uniform without replacement, reproducible from the seed, and with one seed a
smaller ``k`` picks a subset of a larger ``k``'s heads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from visheads_eval.errors import VisheadsError
from visheads_eval.heads import Head, HeadShape, stage_layers
from visheads_eval.masking.schema import Selection, count_heads


def stage_heads(stage: str, shape: HeadShape) -> list[Head]:
    """Every head of ``stage`` (``early``, ``mid``, ``late`` or ``all``), in layer-major order."""
    layers = range(shape.n_layers) if stage == "all" else stage_layers(stage, shape.n_layers)
    return [Head(layer, head) for layer in layers for head in range(shape.n_heads)]


def draw_heads(candidates: list[Head], k: int, seed: int) -> list[Head]:
    """``k`` of ``candidates`` drawn uniformly without replacement, seeded; sorted."""
    order = np.random.default_rng(seed).permutation(len(candidates))  # (n_candidates,)
    return sorted(candidates[i] for i in order[:k])


def ranked_heads(ranking: pd.DataFrame, candidates: list[Head]) -> list[Head]:
    """``candidates`` from the best-ranked to the worst (``ranking`` as read by ``read_ranking``)."""
    wanted = set(candidates)
    by_rank = ranking.sort_values("rank", kind="stable")
    ranked = (Head(int(layer), int(head)) for layer, head in zip(by_rank["layer"], by_rank["head"], strict=False))
    return [head for head in ranked if head in wanted]


def select_heads(selection: Selection, shape: HeadShape, ranking: pd.DataFrame | None) -> list[Head]:
    """The heads ``selection`` picks in a model of ``shape``, sorted; ``ranking`` for top and others."""
    total = shape.n_layers * shape.n_heads
    pool = stage_heads(selection.stage, shape)
    k = count_heads(selection.k, total)
    where = _stage_phrase(selection.stage, shape)
    if selection.order == "random":
        _check_fits(k, selection.k, len(pool), where)
        return draw_heads(pool, k, _seed(selection))
    if ranking is None:
        raise VisheadsError(f"a {selection.order} selection needs a ranking of the model's heads")
    ranked = ranked_heads(ranking, pool)
    if selection.order == "top":
        _check_fits(k, selection.k, len(pool), where)
        return sorted(ranked[:k])
    if selection.exclude_top is None:
        raise VisheadsError("an others selection needs exclude_top (the spec parser sets its default)")
    n_top = count_heads(selection.exclude_top, total)
    if n_top >= len(pool):
        raise VisheadsError(
            f"select.exclude_top = {_count_text(n_top, selection.exclude_top)} leaves none of the {len(pool)} heads of "
            f"{where} to draw from; make exclude_top smaller (a percentage like '10%' fits any model)"
        )
    top = set(ranked[:n_top])
    candidates = [head for head in pool if head not in top]
    _check_fits(k, selection.k, len(candidates), f"{where} outside its top {n_top}")
    return draw_heads(candidates, k, _seed(selection))


def _seed(selection: Selection) -> int:
    """The seed of a selection that draws at random (the spec parser gives every random and others selection one)."""
    if selection.seed is None:
        raise VisheadsError(f"a {selection.order} selection draws at random and needs a seed")
    return selection.seed


def _stage_phrase(stage: str, shape: HeadShape) -> str:
    layers = range(shape.n_layers) if stage == "all" else stage_layers(stage, shape.n_layers)
    name = "the model" if stage == "all" else f"the {stage} stage"
    return f"{name} (layers {layers[0]}-{layers[-1]} x {shape.n_heads} heads)"


def _count_text(n: int, written: int | str | None) -> str:
    return str(n) if isinstance(written, int) else f"{written} = {n} heads"


def _check_fits(k: int, written: int | str, available: int, where: str) -> None:
    if k > available:
        raise VisheadsError(
            f"select.k = {_count_text(k, written)} is more than the {available} heads of {where}; "
            f"use a smaller k (a percentage like '10%' fits any model)"
        )
