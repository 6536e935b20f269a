"""Comparing head maps: Pearson correlation across models, earth mover's distance across benchmarks.

**Pearson (models, one task).** Two models of the same shape are compared head by head: the
correlation of their (layer, head) maps flattened alike (``scipy.stats.pearsonr``), which is what the
paper's Fig. 4 shows for models of one family. Models of different depth or width have no head-to-head
correspondence (head indices carry no meaning across models), so they are compared by their per-layer
profiles: each layer's mean over its heads, averaged into ``min(depths)`` equal bins of relative depth
(each layer weighted by how much of the bin it covers; the identity for a model of that depth). That
asks whether the two models put their attention at the same relative depths. Sorting heads within
layers to keep a head axis was rejected: every sorted layer falls from its largest head to its smallest,
a shape that any two models share, so unrelated models correlated at about 0.85 on synthetic data. The
table says which comparison each pair got (``grid``: ``heads``, or ``depth<D>`` for the D-bin profile).

**EMD (benchmarks, one model).** A head map becomes a distribution: each head's share of the map's
total (for ``image_attn``, of the model's total attention to the image). The ground distance between two
heads is the distance between their layers, in layers (heads of one layer are interchangeable: their
indices carry no order). With that ground metric the optimal transport between two head distributions
moves mass only between layers, so the EMD equals the 1-D Wasserstein distance between the two
per-layer profiles, computed with ``scipy.stats.wasserstein_distance``: "how many layers, on average,
the attention moved".
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, wasserstein_distance

from visheads_eval.analysis.scores import HeadMaps
from visheads_eval.errors import VisheadsError


def rebin_weights(n_from: int, n_to: int) -> np.ndarray:
    """Averaging weights (n_to, n_from) from ``n_from`` equal bins of [0, 1] onto ``n_to`` equal bins.

    Row ``j`` gives each source bin its overlap with target bin ``j``, normalised to sum to 1.
    """
    edges_from = np.linspace(0.0, 1.0, n_from + 1)
    edges_to = np.linspace(0.0, 1.0, n_to + 1)
    low = np.maximum(edges_to[:-1, None], edges_from[None, :-1])
    high = np.minimum(edges_to[1:, None], edges_from[None, 1:])
    overlap = np.clip(high - low, 0.0, None)  # (n_to, n_from)
    return overlap / overlap.sum(axis=1, keepdims=True)


def depth_profile(values: np.ndarray, n_depth: int) -> np.ndarray:
    """A (layer, head) map's per-layer means on ``n_depth`` equal bins of relative depth, shape (n_depth,)."""
    return rebin_weights(values.shape[0], n_depth) @ values.mean(axis=1)


def pearson(a: HeadMaps, b: HeadMaps, stat: str = "score") -> dict[str, float | int | str]:
    """Pearson correlation of two models' ``stat`` maps: head by head, or of their depth profiles."""
    map_a, map_b = a.map(stat), b.map(stat)
    if map_a.shape == map_b.shape:
        grid = "heads"
    else:
        depth = min(map_a.shape[0], map_b.shape[0])
        map_a, map_b = depth_profile(map_a, depth), depth_profile(map_b, depth)
        grid = f"depth{depth}"
    for maps, values in ((a, map_a), (b, map_b)):
        if np.ptp(values) == 0:
            raise VisheadsError(
                f"{maps.model} on {maps.task}: every head (or layer) has the same {stat}, so its correlation with other models is undefined"
            )
    result = pearsonr(map_a.ravel(), map_b.ravel())
    return {"r": float(result.statistic), "p_value": float(result.pvalue), "n_points": int(map_a.size), "grid": grid}


def layer_profile(values: np.ndarray) -> np.ndarray:
    """Each layer's share of a non-negative (layer, head) map's total, shape (layer,)."""
    if (values < 0).any():
        raise VisheadsError("an EMD needs non-negative head values (attention, concentration or score)")
    per_layer = values.sum(axis=1)
    total = per_layer.sum()
    if total <= 0:
        raise VisheadsError("an EMD needs a head map with some mass; this one is all zero")
    return per_layer / total


def emd(a: HeadMaps, b: HeadMaps, stat: str = "score") -> float:
    """Earth mover's distance, in layers, between the head distributions of ``stat`` in ``a`` and ``b``."""
    if (a.n_layers, a.n_heads) != (b.n_layers, b.n_heads):
        raise VisheadsError(
            f"EMD compares one model across benchmarks, but {a.model} on {a.task} has {a.n_layers} x {a.n_heads} heads "
            f"and {b.model} on {b.task} has {b.n_layers} x {b.n_heads}"
        )
    layers = np.arange(a.n_layers)
    return float(wasserstein_distance(layers, layers, layer_profile(a.map(stat)), layer_profile(b.map(stat))))


def correlation_table(all_maps: Sequence[HeadMaps], stat: str = "score") -> pd.DataFrame:
    """Pearson r for every pair of models on every task they share (both orders and the diagonal).

    Columns ``task, model_a, model_b, r, p_value, n_points, grid``; ``r`` is 1 on the diagonal.
    """
    rows = []
    for task in _unique(m.task for m in all_maps):
        of_task = [m for m in all_maps if m.task == task]
        for m in of_task:
            rows.append(
                {
                    "task": task,
                    "model_a": m.model,
                    "model_b": m.model,
                    "r": 1.0,
                    "p_value": 0.0,
                    "n_points": m.map(stat).size,
                    "grid": "heads",
                }
            )
        for a, b in combinations(of_task, 2):
            result = pearson(a, b, stat)
            rows.append({"task": task, "model_a": a.model, "model_b": b.model, **result})
            rows.append({"task": task, "model_a": b.model, "model_b": a.model, **result})
    return pd.DataFrame(rows, columns=["task", "model_a", "model_b", "r", "p_value", "n_points", "grid"])


def emd_table(all_maps: Sequence[HeadMaps], stat: str = "score") -> pd.DataFrame:
    """EMD between every pair of tasks of every model (both orders and the zero diagonal).

    Columns ``model, task_a, task_b, emd``.
    """
    rows = []
    for model in _unique(m.model for m in all_maps):
        of_model = [m for m in all_maps if m.model == model]
        for m in of_model:
            rows.append({"model": model, "task_a": m.task, "task_b": m.task, "emd": 0.0})
        for a, b in combinations(of_model, 2):
            distance = emd(a, b, stat)
            rows.append({"model": model, "task_a": a.task, "task_b": b.task, "emd": distance})
            rows.append({"model": model, "task_a": b.task, "task_b": a.task, "emd": distance})
    return pd.DataFrame(rows, columns=["model", "task_a", "task_b", "emd"])


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))
