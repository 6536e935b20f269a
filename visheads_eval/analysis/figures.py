"""The paper's figures from head maps, drawn with matplotlib's object API (Agg; no pyplot state).

- :func:`heatmaps`: layer x head maps of one statistic, models across, tasks down (Fig. 3).
- :func:`attention_vs_concentration`: a point per head, models across, tasks down, the model's
  accuracy in each title (Fig. 1).
- :func:`layer_scatter`: the same points split by layer, coloured by model, one figure per task (Fig. 6).
- :func:`layer_profiles`: each layer's mean of a statistic, a line per model, a panel per task (Fig. 7).
- :func:`correlation_matrices`: Pearson r between models, a panel per task (Fig. 4).
- :func:`emd_matrices`: EMD between tasks, a panel per model (Fig. 8).

:func:`figure_set` lists every figure a set of head maps supports (what ``visheads plot`` draws);
:func:`save_figure` writes a figure as PNG and PDF, atomically.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from visheads_eval.analysis.compare import correlation_table, emd_table
from visheads_eval.analysis.output import safe_file_name, write_atomic
from visheads_eval.analysis.scores import HeadMaps

STAT_LABELS = {
    "image_attn": "attention to the image",
    "region_attn": "attention to the question's region",
    "concentration": "concentration on the image",
    "score": "head detection score",
}
PANEL = 2.3  # inches per panel side
DPI = 150


def short_names(models: Sequence[str]) -> dict[str, str]:
    """A readable label per model: the last part of its path or hub id, unless two models share it."""
    last = {model: model.rstrip("/").split("/")[-1] or model for model in models}
    counts = pd.Series(list(last.values())).value_counts()
    return {model: name if counts[name] == 1 else model for model, name in last.items()}


def _grid(maps: Sequence[HeadMaps]) -> tuple[list[str], list[str], dict[tuple[str, str], HeadMaps]]:
    models = list(dict.fromkeys(m.model for m in maps))
    tasks = list(dict.fromkeys(m.task for m in maps))
    return models, tasks, {(m.model, m.task): m for m in maps}


MIN_WIDTH = 6.5  # inches: room for the title and the colour bar's label when there are few panels


def _figure(n_rows: int, n_cols: int, width: float = PANEL, height: float = PANEL) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(width * n_cols + 1.2, MIN_WIDTH), height * n_rows + 0.8), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _label_outer(ax, bottom: bool, left: bool, xlabel: str, ylabel: str, y_ticks: bool = False) -> None:
    """Axis labels and tick labels on the outer panels only (panels of a grid share their scales);
    ``y_ticks`` keeps y tick labels on every panel (when columns have different scales)."""
    ax.tick_params(labelsize=6, labelbottom=bottom, labelleft=left or y_ticks)
    integer = len(ax.images) > 0  # layer and head indices
    ax.xaxis.set_major_locator(MaxNLocator(4, integer=integer))
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=integer))
    if bottom:
        ax.set_xlabel(xlabel, fontsize=7)
    if left:
        ax.set_ylabel(ylabel, fontsize=7)


def heatmaps(maps: Sequence[HeadMaps], stat: str = "image_attn") -> Figure:
    """Layer x head heatmaps of ``stat``, a panel per model (columns) and task (rows), one colour scale."""
    models, tasks, by_key = _grid(maps)
    names = short_names(models)
    values = [m.maps[stat] for m in maps if not np.isnan(m.maps[stat]).all()]
    vmax = max((float(np.nanmax(v)) for v in values), default=1.0) or 1.0
    norm = Normalize(0.0, vmax)
    fig, axes = _figure(len(tasks), len(models))
    image = None
    for row, task in enumerate(tasks):
        for col, model in enumerate(models):
            ax = axes[row, col]
            ax.set_title(f"{names[model]}\n{task}", fontsize=8)
            found = by_key.get((model, task))
            if found is None or np.isnan(found.maps[stat]).all():
                ax.text(
                    0.5,
                    0.5,
                    "no data" if found is None else "no region\nin this task",
                    ha="center",
                    va="center",
                    fontsize=8,
                    transform=ax.transAxes,
                )
                ax.set_xticks([]), ax.set_yticks([])
                continue
            image = ax.imshow(found.maps[stat], aspect="auto", cmap="viridis", norm=norm, interpolation="nearest")
            last = row == len(tasks) - 1 or (models[col], tasks[-1]) not in by_key
            _label_outer(ax, bottom=last, left=col == 0, xlabel="head", ylabel="layer", y_ticks=True)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=f"mean {STAT_LABELS[stat]}")
    fig.suptitle(f"Mean {STAT_LABELS[stat]} per head (layer x head)", fontsize=11)
    return fig


def attention_vs_concentration(maps: Sequence[HeadMaps], accuracy: Mapping[tuple[str, str], float] | None = None) -> Figure:
    """Mean image attention (x) against mean concentration (y), a point per head coloured by relative
    depth; models across, tasks down; ``accuracy[(model, task)]`` (points) ends each title."""
    models, tasks, by_key = _grid(maps)
    names = short_names(models)
    accuracy = accuracy or {}
    x_max = max(float(m.maps["image_attn"].max()) for m in maps) * 1.05 or 1.0
    y_max = max(float(m.maps["concentration"].max()) for m in maps) * 1.05 or 1.0
    depth = Normalize(0.0, 1.0)
    fig, axes = _figure(len(tasks), len(models))
    points = None
    for row, task in enumerate(tasks):
        for col, model in enumerate(models):
            ax = axes[row, col]
            found = by_key.get((model, task))
            acc = accuracy.get((model, task))
            ax.set_title(f"{names[model]}\n{task}" + (f" (acc {acc:.1f})" if acc is not None else ""), fontsize=8)
            ax.set_xlim(0, x_max), ax.set_ylim(0, y_max)
            _label_outer(ax, bottom=row == len(tasks) - 1, left=col == 0, xlabel="image attention", ylabel="concentration")
            if found is None:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=8, transform=ax.transAxes)
                continue
            relative = np.repeat((np.arange(found.n_layers) + 0.5) / found.n_layers, found.n_heads)
            points = ax.scatter(
                found.maps["image_attn"].ravel(),
                found.maps["concentration"].ravel(),
                c=relative,
                cmap="plasma",
                norm=depth,
                s=4,
                linewidths=0,
                rasterized=True,
            )
    if points is not None:
        fig.colorbar(points, ax=axes, shrink=0.8, label="relative depth of the head's layer")
    fig.suptitle("Attention to the image vs concentration, a point per head", fontsize=11)
    return fig


def model_colours(models: Sequence[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {model: cmap(i % cmap.N) for i, model in enumerate(models)}


def layer_scatter(maps: Sequence[HeadMaps], task: str) -> Figure:
    """For one task: a panel per layer index, image attention vs concentration, a point per head,
    coloured by model. Models shallower than a panel's layer are absent from it."""
    of_task = [m for m in maps if m.task == task]
    models = [m.model for m in of_task]
    names, colours = short_names(models), model_colours(models)
    n_layers = max(m.n_layers for m in of_task)
    n_cols = min(8, n_layers)
    n_rows = math.ceil(n_layers / n_cols)
    x_max = max(float(m.maps["image_attn"].max()) for m in of_task) * 1.05 or 1.0
    y_max = max(float(m.maps["concentration"].max()) for m in of_task) * 1.05 or 1.0
    fig, axes = _figure(n_rows, n_cols, width=1.9, height=1.9)
    for index, ax in enumerate(axes.ravel()):
        if index >= n_layers:
            ax.set_axis_off()
            continue
        for m in of_task:
            if index < m.n_layers:
                ax.scatter(
                    m.maps["image_attn"][index], m.maps["concentration"][index], s=5, color=colours[m.model], linewidths=0, rasterized=True
                )
        ax.set_title(f"layer {index}", fontsize=8)
        ax.set_xlim(0, x_max), ax.set_ylim(0, y_max)
        _label_outer(ax, bottom=index >= n_layers - n_cols, left=index % n_cols == 0, xlabel="image attention", ylabel="concentration")
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[model], label=names[model]) for model in models]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(models), 5), fontsize=8, frameon=False)
    fig.suptitle(f"{task}: attention vs concentration per layer, a point per head", fontsize=11)
    return fig


def layer_profiles(maps: Sequence[HeadMaps], stat: str = "score") -> Figure:
    """A panel per task: each layer's mean ``stat`` over its heads against relative depth, a line per model."""
    models, tasks, by_key = _grid(maps)
    names, colours = short_names(models), model_colours(models)
    n_cols = min(3, len(tasks))
    n_rows = math.ceil(len(tasks) / n_cols)
    fig, axes = _figure(n_rows, n_cols, width=3.4, height=2.6)
    for index, ax in enumerate(axes.ravel()):
        if index >= len(tasks):
            ax.set_axis_off()
            continue
        task = tasks[index]
        for model in models:
            found = by_key.get((model, task))
            if found is None or np.isnan(found.maps[stat]).all():
                continue
            depth = (np.arange(found.n_layers) + 0.5) / found.n_layers
            ax.plot(depth, found.maps[stat].mean(axis=1), color=colours[model], linewidth=1.2, label=names[model])
        ax.set_title(task, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("relative depth (layer / layers)", fontsize=8)
        ax.set_ylabel(f"layer mean {stat}", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=colours[model], label=names[model]) for model in models]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(models), 5), fontsize=8, frameon=False)
    fig.suptitle(f"Per-layer mean {STAT_LABELS[stat]}", fontsize=11)
    return fig


def _matrix(
    ax: Axes, matrix: pd.DataFrame, labels: Mapping[str, str], norm: Normalize, cmap: str, marks: pd.DataFrame | None = None
) -> None:
    """Draw a square matrix with its values written in the cells (up to 12 x 12), ``marks`` appended."""
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=cmap, norm=norm)
    ticks = range(len(matrix))
    ax.set_xticks(ticks, [labels.get(c, c) for c in matrix.columns], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(ticks, [labels.get(i, i) for i in matrix.index], fontsize=7)
    if len(matrix) <= 12:
        for (i, j), value in np.ndenumerate(values):
            rgb = np.asarray(image.cmap(norm(value))[:3])
            text = f"{value:.2f}" + ("" if marks is None else marks.iat[i, j])
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if rgb @ [0.299, 0.587, 0.114] < 0.5 else "black")


def correlation_matrices(table: pd.DataFrame) -> Figure:
    """Pearson r between models, a panel per task (``table`` from ``compare.correlation_table``)."""
    tasks = list(dict.fromkeys(table["task"]))
    models = list(dict.fromkeys([*table["model_a"], *table["model_b"]]))
    names = short_names(models)
    size = max(3.0, 0.45 * len(models) + 1.5)
    n_cols = min(3, len(tasks))
    fig, axes = _figure(math.ceil(len(tasks) / n_cols), n_cols, width=size, height=size)
    norm = Normalize(-1.0, 1.0)
    for ax in axes.ravel()[len(tasks) :]:
        ax.set_axis_off()
    for ax, task in zip(axes.ravel(), tasks, strict=False):
        rows = table[table["task"] == task]
        order = list(dict.fromkeys(rows["model_a"]))
        matrix = rows.pivot(index="model_a", columns="model_b", values="r").reindex(index=order, columns=order)
        on_grid = rows.pivot(index="model_a", columns="model_b", values="grid").reindex(index=order, columns=order)
        _matrix(ax, matrix, names, norm, "RdBu_r", marks=(on_grid != "heads").replace({True: "*", False: ""}))
        ax.set_title(task, fontsize=9)
    fig.colorbar(ScalarMappable(norm, "RdBu_r"), ax=axes, shrink=0.8, label="Pearson r")
    fig.suptitle("Correlation of head maps between models", fontsize=11)
    if (table["grid"] != "heads").any():
        fig.supxlabel("* models of different shape, compared by their per-layer means on a common grid of relative depth", fontsize=7)
    return fig


def emd_matrices(table: pd.DataFrame) -> Figure:
    """EMD (layers) between tasks, a panel per model (``table`` from ``compare.emd_table``)."""
    models = list(dict.fromkeys(table["model"]))
    names = short_names(models)
    n_tasks = max(len(set(table.loc[table["model"] == m, "task_a"])) for m in models)
    size = max(3.0, 0.45 * n_tasks + 1.5)
    n_cols = min(3, len(models))
    n_rows = math.ceil(len(models) / n_cols)
    fig, axes = _figure(n_rows, n_cols, width=size, height=size)
    norm = Normalize(0.0, float(table["emd"].max()) or 1.0)
    for index, ax in enumerate(axes.ravel()):
        if index >= len(models):
            ax.set_axis_off()
            continue
        rows = table[table["model"] == models[index]]
        order = list(dict.fromkeys(rows["task_a"]))
        matrix = rows.pivot(index="task_a", columns="task_b", values="emd").reindex(index=order, columns=order)
        _matrix(ax, matrix, {}, norm, "viridis")
        ax.set_title(names[models[index]], fontsize=9)
    fig.colorbar(ScalarMappable(norm, "viridis"), ax=axes, shrink=0.8, label="EMD between benchmarks (layers)")
    fig.suptitle("Earth mover's distance between benchmarks, per model", fontsize=11)
    return fig


def figure_set(
    maps: Sequence[HeadMaps], accuracy: Mapping[tuple[str, str], float] | None = None, stat: str = "score"
) -> tuple[list[tuple[str, Callable[[], Figure]]], list[str]]:
    """Every figure the maps support, as (file stem, function drawing it), and why others are skipped.

    ``stat`` is the statistic of the profile, correlation and EMD figures; ``accuracy`` goes into the
    titles of the attention-vs-concentration figure.
    """
    jobs: list[tuple[str, Callable[[], Figure]]] = [("heatmap_image_attn", lambda: heatmaps(maps, "image_attn"))]
    skipped = []
    if any(m.n_region_samples for m in maps):
        jobs.append(("heatmap_region_attn", lambda: heatmaps(maps, "region_attn")))
    else:
        skipped.append("no sample has a question region; skipping heatmap_region_attn")
    jobs.append(("attention_vs_concentration", lambda: attention_vs_concentration(maps, accuracy)))
    for task in dict.fromkeys(m.task for m in maps):
        jobs.append((f"layers_{safe_file_name(task)}", functools.partial(layer_scatter, maps, task)))
    jobs.append((f"layer_profile_{stat}", lambda: layer_profiles(maps, stat)))
    correlations = correlation_table(maps, stat)
    shared = correlations.groupby("task").filter(lambda rows: rows["model_a"].nunique() > 1)
    if len(shared):
        jobs.append((f"correlation_{stat}", lambda: correlation_matrices(shared)))
    else:
        skipped.append("no task was recorded for two models; skipping the correlation figure")
    distances = emd_table(maps, stat)
    several = distances.groupby("model").filter(lambda rows: rows["task_a"].nunique() > 1)
    if len(several):
        jobs.append((f"emd_{stat}", lambda: emd_matrices(several)))
    else:
        skipped.append("no model was recorded on two tasks; skipping the EMD figure")
    return jobs, skipped


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``fig`` to ``stem.png`` and ``stem.pdf`` atomically; returns the two paths.

    The constrained layout is computed once and then fixed, so that both files share it (and the
    figure is not laid out twice).
    """
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine("none")
    written = []
    for fmt in ("png", "pdf"):
        path = Path(f"{stem}.{fmt}")
        written.append(write_atomic(path, functools.partial(fig.savefig, format=fmt, dpi=DPI)))
    return written
