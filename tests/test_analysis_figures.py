"""Every figure type is drawn, saved as PNG and PDF atomically, and shows what it should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visheads_eval.analysis import figures
from visheads_eval.analysis.compare import correlation_table, emd_table
from visheads_eval.analysis.scores import summarize

SHAPES = {"org/model-a": (4, 3), "org/model-b": (6, 2)}
TASKS = ("pointqa_visual", "pope")


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    out = []
    for model, (layers, heads) in SHAPES.items():
        for task in TASKS:
            image = rng.uniform(0, 1, (3, layers, heads))
            region = image * 0.3 if task == "pointqa_visual" else np.full_like(image, np.nan)
            out.append(summarize(model, task, image, region, rng.uniform(0, 1, image.shape), np.full(3, 16)))
    return out


def _check_saved(fig, stem: Path) -> tuple[int, int]:
    png, pdf = figures.save_figure(fig, stem)
    assert png == stem.with_suffix(".png") and pdf == stem.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    with Image.open(png) as image:
        size = image.size
    width, height = fig.get_size_inches() * figures.DPI
    assert size == pytest.approx((width, height), abs=2)
    assert not list(stem.parent.glob(".*partial"))
    return size


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_heatmaps(maps, tmp_path: Path) -> None:
    fig = figures.heatmaps(maps, "image_attn")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 4 and images[0].get_array().shape == (4, 3)  # (layer, head) of model-a
    assert "model-a\npointqa_visual" in _titles(fig) and "model-b\npope" in _titles(fig)
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    _check_saved(fig, tmp_path / "heat")
    region = figures.heatmaps(maps, "region_attn")
    texts = [t.get_text() for ax in region.axes for t in ax.texts]
    assert texts.count("no region\nin this task") == 2  # pope has no regions
    _check_saved(region, tmp_path / "region")


def test_attention_vs_concentration_shows_accuracy(maps, tmp_path: Path) -> None:
    fig = figures.attention_vs_concentration(maps, {("org/model-a", "pope"): 85.27})
    assert "model-a\npope (acc 85.3)" in _titles(fig)
    points = [ax.collections[0] for ax in fig.axes if ax.collections and ax.get_label() != "<colorbar>"]
    assert sorted(len(p.get_offsets()) for p in points) == [12, 12, 12, 12]  # a point per head
    _check_saved(fig, tmp_path / "scatter")


def test_layer_figures(maps, tmp_path: Path) -> None:
    fig = figures.layer_scatter(maps, "pope")
    titles = _titles(fig)
    assert titles[:6] == [f"layer {i}" for i in range(6)]  # the deepest model has 6 layers
    layer5 = fig.axes[5]
    assert len(layer5.collections) == 1  # only model-b reaches layer 5
    _check_saved(fig, tmp_path / "layers")
    profile = figures.layer_profiles(maps, "score")
    assert [len(line.get_xdata()) for line in profile.axes[0].lines] == [4, 6]
    _check_saved(profile, tmp_path / "profile")


def test_matrices(maps, tmp_path: Path) -> None:
    corr = figures.correlation_matrices(correlation_table(maps))
    values = corr.axes[0].images[0].get_array()
    assert values.shape == (2, 2) and values[0, 0] == pytest.approx(1.0)
    assert "*" in corr.axes[0].texts[1].get_text()  # different shapes: compared on the common grid
    _check_saved(corr, tmp_path / "corr")
    distances = figures.emd_matrices(emd_table(maps))
    assert [ax.get_title() for ax in distances.axes[:2]] == ["model-a", "model-b"]
    assert distances.axes[0].images[0].get_array().shape == (2, 2)
    _check_saved(distances, tmp_path / "emd")


def test_short_names_keep_full_names_when_ambiguous() -> None:
    assert figures.short_names(["a/x", "b/y"]) == {"a/x": "x", "b/y": "y"}
    assert figures.short_names(["a/x", "b/x", "/local/path/z/"]) == {"a/x": "a/x", "b/x": "b/x", "/local/path/z/": "z"}


def test_figure_set_skips_what_the_data_cannot_show(maps) -> None:
    jobs, skipped = figures.figure_set(maps, stat="image_attn")
    assert [stem for stem, _ in jobs] == [
        "heatmap_image_attn",
        "heatmap_region_attn",
        "attention_vs_concentration",
        "layers_pointqa_visual",
        "layers_pope",
        "layer_profile_image_attn",
        "correlation_image_attn",
        "emd_image_attn",
    ]
    assert skipped == []
    one = [m for m in maps if m.model == "org/model-a" and m.task == "pope"]
    jobs, skipped = figures.figure_set(one)
    assert [stem for stem, _ in jobs] == ["heatmap_image_attn", "attention_vs_concentration", "layers_pope", "layer_profile_score"]
    assert len(skipped) == 3 and "no sample has a question region" in skipped[0]
