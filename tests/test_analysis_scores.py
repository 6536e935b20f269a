"""Head statistics, the detection score and the ranking table, against hand-computed values and scipy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import entropy

from visheads_eval.analysis.ranking_table import ranking_table
from visheads_eval.analysis.scores import HeadSums, ScoreParams, summarize
from visheads_eval.errors import VisheadsError
from visheads_eval.heads import HeadShape
from visheads_eval.ranking import read_ranking, write_ranking


def _arrays(n: int, layers: int, heads: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, layers, heads)), np.full((n, layers, heads), np.nan), rng.uniform(0, 1, (n, layers, heads))


def test_func_defaults_raise_early_layers_and_fade() -> None:
    func = ScoreParams().func(32)
    assert func[0] == pytest.approx(2.0)  # 1 / (0 + 1) + exp(0)
    assert func[10] == pytest.approx(1 / 11 + math.exp(-1.0))
    assert func[20] == pytest.approx(1 / 21 + math.exp(-2.0))
    assert np.all(np.diff(func) < 0)
    custom = ScoreParams(k=2.0, a=0.5, b=1.0, eps=0.5).func(3)
    assert custom == pytest.approx([2 / 0.5 + 0.5, 2 / 1.5 + 0.5 * math.exp(-1), 2 / 2.5 + 0.5 * math.exp(-2)])


def test_score_is_computed_per_sample_then_averaged() -> None:
    # One layer (func(0) = 2), one head, two samples: the mean of products, not the product of means.
    image = np.array([0.5, 0.1]).reshape(2, 1, 1)
    conc = np.array([0.2, 0.8]).reshape(2, 1, 1)
    maps = summarize("m", "t", image, np.full_like(image, np.nan), conc, np.array([576, 576]))
    per_sample = (0.5 * (1 + 0.2 * 2) + 0.1 * (1 + 0.8 * 2)) / 2  # 0.48
    assert maps.maps["score"][0, 0] == pytest.approx(per_sample)
    assert maps.maps["score"][0, 0] != pytest.approx(0.3 * (1 + 0.5 * 2))  # score of the means: 0.6
    assert maps.maps["image_attn"][0, 0] == pytest.approx(0.3)


def test_concentration_aggregation_matches_scipy_entropy_means() -> None:
    # Per-sample concentration from attention rows over 16 image tokens (1 - H / log N, natural logs),
    # computed independently with scipy; the map is their mean over the chosen samples.
    rng = np.random.default_rng(1)
    rows = rng.dirichlet(np.full(16, 0.3), size=(5, 2, 3))  # (sample, layer, head, image token)
    conc = 1 - entropy(rows, axis=-1) / np.log(16)
    image = rng.uniform(0.1, 0.9, (5, 2, 3))
    n_image = np.array([16, 16, 0, 16, 16])  # sample 2 has no image: left out of every mean
    keep = np.array([True, False, True, True, True])  # e.g. correctly answered
    maps = summarize("m", "t", image, np.full_like(image, np.nan), conc, n_image, keep=keep)
    assert maps.n_samples == 3 and maps.n_without_image == 1
    np.testing.assert_allclose(maps.maps["concentration"], conc[[0, 3, 4]].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(maps.maps["image_attn"], image[[0, 3, 4]].mean(axis=0), rtol=1e-12)
    assert np.all((maps.maps["concentration"] >= 0) & (maps.maps["concentration"] <= 1))


def test_region_mean_skips_samples_without_a_region_and_scores_the_region() -> None:
    image, region, conc = _arrays(4, 3, 2)
    region[:2] = image[:2] * 0.25  # only the first two samples have a region
    maps = summarize("m", "t", image, region, conc, np.full(4, 9))
    assert maps.n_region_samples == 2
    np.testing.assert_allclose(maps.maps["region_attn"], region[:2].mean(axis=0))
    params = ScoreParams(part="region")
    region_maps = summarize("m", "t", image, region, conc, np.full(4, 9), params)
    func = params.func(3)[None, :, None]
    np.testing.assert_allclose(region_maps.maps["score"], (region[:2] * (1 + conc[:2] * func)).mean(axis=0))


def test_missing_region_and_bad_params_are_clear_errors() -> None:
    image, region, conc = _arrays(3, 3, 2)
    maps = summarize("m", "pope", image, region, conc, np.full(3, 9))
    assert np.isnan(maps.maps["region_attn"]).all()
    with pytest.raises(VisheadsError, match="m on pope has no region_attn"):
        maps.map("region_attn")
    with pytest.raises(VisheadsError, match="unknown head statistic 'scor' \\(did you mean 'score'\\?\\)"):
        maps.map("scor")
    with pytest.raises(VisheadsError, match="region score needs samples with a question region"):
        summarize("m", "pope", image, region, conc, np.full(3, 9), ScoreParams(part="region"))
    with pytest.raises(VisheadsError, match="eps must be > 0"):
        ScoreParams(eps=0.0)
    with pytest.raises(VisheadsError, match="must be >= 0"):
        ScoreParams(b=-0.1)
    with pytest.raises(VisheadsError, match="unknown score part 'regoin' \\(did you mean 'region'\\?\\)"):
        ScoreParams(part="regoin")
    with pytest.raises(VisheadsError, match=r"m on t: no sample to average \(0 left out .*; 3 without image tokens\)"):
        summarize("m", "t", image, region, conc, np.zeros(3))
    with pytest.raises(VisheadsError, match=r"m on t: no sample to average \(3 left out as not selected, e.g. answered wrongly; 0 without"):
        summarize("m", "t", image, region, conc, np.full(3, 9), keep=np.zeros(3, dtype=bool))
    image[1, 0, 0] = np.nan
    with pytest.raises(VisheadsError, match="image_attn is NaN or infinite in 1 samples"):
        summarize("m", "t", image, region, conc, np.full(3, 9))


def test_sums_of_parts_average_like_the_whole() -> None:
    image, region, conc = _arrays(7, 3, 2, seed=5)
    region[[1, 4, 5]] = image[[1, 4, 5]] / 3
    n_image = np.array([9, 9, 0, 9, 9, 9, 9])
    for params in (ScoreParams(), ScoreParams(part="region", k=0.5)):
        whole = summarize("m", "t", image, region, conc, n_image, params)
        parts = HeadSums.of(image[:3], region[:3], conc[:3], n_image[:3], params) + HeadSums.of(
            image[3:], region[3:], conc[3:], n_image[3:], params
        )
        pooled = parts.means("m", "t", params)
        assert (pooled.n_samples, pooled.n_region_samples, pooled.n_without_image, pooled.n_left_out) == (6, 3, 1, 0)
        for name in ("image_attn", "region_attn", "concentration", "score"):
            np.testing.assert_allclose(pooled.maps[name], whole.maps[name], rtol=1e-12)


def test_ranking_table_ranks_by_score_with_stable_ties(tmp_path: Path) -> None:
    # Three layers, two heads, one sample, no concentration: the score is the attention itself.
    image = np.array([[[0.1, 0.7], [0.7, 0.2], [0.05, 0.9]]])
    maps = summarize("llava", "pointqa", image, np.full_like(image, np.nan), np.zeros_like(image), np.array([5]))
    table = ranking_table(maps)
    assert list(table["name"]) == ["L2H1", "L0H1", "L1H0", "L1H1", "L0H0", "L2H0"]  # 0.7 tie: lower layer first
    assert list(table["rank"]) == [1, 2, 3, 4, 5, 6]
    assert list(table["stage"]) == ["late", "early", "mid", "mid", "early", "late"]
    assert table["n_samples"].eq(1).all() and table["model"].eq("llava").all()
    write_ranking(table, tmp_path / "r.csv")
    back = read_ranking(tmp_path / "r.csv", HeadShape(n_layers=3, n_heads=2, n_kv_heads=2, head_dim=4))
    assert list(back["name"]) == list(table["name"])
    np.testing.assert_allclose(back["score"], [0.9, 0.7, 0.7, 0.2, 0.1, 0.05])
