"""Pearson correlation and EMD between head maps, against hand-computed values, numpy and scipy's LP solver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from visheads_eval.analysis.compare import correlation_table, depth_profile, emd, emd_table, pearson, rebin_weights
from visheads_eval.analysis.scores import HeadMaps
from visheads_eval.errors import VisheadsError


def _maps(model: str, task: str, values: np.ndarray) -> HeadMaps:
    values = np.asarray(values, dtype=float)
    nan = np.full_like(values, np.nan)
    return HeadMaps(model, task, 1, 0, 0, {"image_attn": values, "region_attn": nan, "concentration": values, "score": values})


def test_same_shape_models_compare_head_by_head() -> None:
    a = _maps("a", "t", [[1, 2], [3, 4]])
    assert pearson(a, _maps("b", "t", [[2, 4], [6, 8]]))["r"] == pytest.approx(1.0)
    assert pearson(a, _maps("b", "t", [[4, 3], [2, 1]]))["r"] == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(4, 5)), rng.uniform(size=(4, 5))
    result = pearson(_maps("a", "t", x), _maps("b", "t", y))
    assert result["r"] == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1])
    assert result["grid"] == "heads" and result["n_points"] == 20


def test_rebin_weights_by_hand() -> None:
    # Three source bins [0,1/3), [1/3,2/3), [2/3,1] onto two halves: the middle bin is split in two.
    np.testing.assert_allclose(rebin_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(rebin_weights(4, 4), np.eye(4))
    np.testing.assert_allclose(rebin_weights(2, 4), [[1, 0], [1, 0], [0, 1], [0, 1]])


def test_depth_profile_averages_heads_then_rebins_depth() -> None:
    values = np.array([[1.0, 3.0], [5.0, 2.0], [0.0, 4.0], [6.0, 8.0]])  # layer means 2, 3.5, 2, 7
    np.testing.assert_allclose(depth_profile(values, 4), [2.0, 3.5, 2.0, 7.0])
    np.testing.assert_allclose(depth_profile(values, 2), [2.75, 4.5])
    np.testing.assert_allclose(depth_profile(values, 1), [3.625])


def test_different_shapes_compare_their_depth_profiles() -> None:
    rng = np.random.default_rng(2)
    deep, shallow = rng.uniform(size=(6, 4)), rng.uniform(size=(3, 2))
    result = pearson(_maps("deep", "t", deep), _maps("shallow", "t", shallow))
    assert result["grid"] == "depth3" and result["n_points"] == 3
    deep_profile = deep.mean(axis=1).reshape(3, 2).mean(axis=1)  # layer pairs of the deep model
    assert result["r"] == pytest.approx(np.corrcoef(deep_profile, shallow.mean(axis=1))[0, 1])
    # Both fall linearly with relative depth: a perfect correlation whatever the widths.
    falling_deep = np.repeat(np.linspace(1.0, 0.0, 8)[:, None], 5, axis=1) + np.array([0.0, 0.1, -0.1, 0.2, -0.2])
    falling_shallow = np.repeat(np.linspace(4.0, 1.0, 4)[:, None], 3, axis=1)
    assert pearson(_maps("a", "t", falling_deep), _maps("b", "t", falling_shallow))["r"] == pytest.approx(1.0)


def test_emd_by_hand() -> None:
    at_first = _maps("m", "a", [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    at_last = _maps("m", "b", [[0.0, 0.0], [0.0, 0.0], [0.5, 0.5]])
    assert emd(at_first, at_last, "image_attn") == pytest.approx(2.0)
    half = _maps("m", "c", [[0.25, 0.25], [0.0, 0.0], [0.25, 0.25]])  # half the mass moves 2 layers
    assert emd(at_first, half, "image_attn") == pytest.approx(1.0)
    assert emd(at_first, _maps("m", "d", [[0.0, 7.0], [0.0, 0.0], [0.0, 0.0]]), "image_attn") == pytest.approx(0.0)


def test_emd_equals_optimal_transport_over_heads_with_layer_ground_distance() -> None:
    # The full transport problem between head distributions (6 x 3 heads), solved as an LP by scipy.
    rng = np.random.default_rng(3)
    a, b = rng.gamma(0.5, size=(6, 3)), rng.gamma(0.5, size=(6, 3))
    p, q = (a / a.sum()).ravel(), (b / b.sum()).ravel()
    layer = np.repeat(np.arange(6), 3)
    cost = np.abs(layer[:, None] - layer[None, :]).astype(float)
    n = len(p)
    rows = np.kron(np.eye(n), np.ones(n))  # sum_j T[i, j] = p[i]
    cols = np.kron(np.ones(n), np.eye(n))  # sum_i T[i, j] = q[j]
    solved = linprog(cost.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([p, q]), bounds=(0, None), method="highs")
    assert solved.success
    assert emd(_maps("m", "x", a), _maps("m", "y", b), "score") == pytest.approx(solved.fun, abs=1e-9)


def test_tables_are_symmetric_with_a_unit_or_zero_diagonal() -> None:
    rng = np.random.default_rng(4)
    maps = [_maps(model, task, rng.uniform(size=(3, 2))) for model in ("a", "b") for task in ("x", "y", "z")]
    corr = correlation_table(maps)
    assert len(corr) == 3 * 4  # three tasks, 2 x 2 model pairs
    pivot = corr[corr["task"] == "y"].pivot(index="model_a", columns="model_b", values="r")
    np.testing.assert_allclose(pivot.to_numpy(), pivot.to_numpy().T)
    assert np.diag(pivot.to_numpy()) == pytest.approx([1.0, 1.0])
    distances = emd_table(maps)
    assert len(distances) == 2 * 9
    pivot = distances[distances["model"] == "b"].pivot(index="task_a", columns="task_b", values="emd")
    np.testing.assert_allclose(pivot.to_numpy(), pivot.to_numpy().T)
    assert np.diag(pivot.to_numpy()) == pytest.approx([0, 0, 0])
    assert pivot.loc["x", "z"] == pytest.approx(emd(maps[3], maps[5]))


def test_degenerate_maps_are_clear_errors() -> None:
    with pytest.raises(VisheadsError, match="every head \\(or layer\\) has the same score"):
        pearson(_maps("a", "t", np.ones((2, 2))), _maps("b", "t", [[1, 2], [3, 4]]))
    with pytest.raises(VisheadsError, match="non-negative"):
        emd(_maps("a", "x", [[-1, 2], [3, 4]]), _maps("a", "y", [[1, 2], [3, 4]]))
    with pytest.raises(VisheadsError, match="all zero"):
        emd(_maps("a", "x", np.zeros((2, 2))), _maps("a", "y", [[1, 2], [3, 4]]))
    with pytest.raises(VisheadsError, match="EMD compares one model across benchmarks"):
        emd(_maps("a", "x", np.ones((2, 2))), _maps("a", "y", np.ones((3, 2))))
