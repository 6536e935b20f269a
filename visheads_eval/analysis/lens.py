"""The logit lens by layer, per task and model, beside the image attention of the layers' top heads.

Paper section 4.2 reads the hidden states at the answer position through the final norm and ``lm_head``
(see :mod:`visheads_eval.capture.lens`) to show where the answer settles: early on some benchmarks, in
the middle layers on others. From records that carry the lens, :func:`lens_curves` gives, per reading
(0 = the embeddings, ``l + 1`` = after layer ``l``; ``depth`` = reading / n_layers, to compare models of
different depth):

- ``answer_logprob``, ``kl_to_final``, ``entropy``: means over the samples; ``answer_rank``: the median;
  ``top1_share``: the share of samples whose answer is the reading's top-1;
- ``settled_share``: the share of samples whose answer has become, and stays, the top-1 by that reading
  (the distribution of the *settle reading*, the first reading from which the answer is top-1 to the end);

each with a 95% bootstrap band over the samples (scipy, percentile method, seeded). Per layer, the mean
image attention of the layer's top head (the head with the highest mean) and that head's concentration
come from the same samples. :func:`lens_figure` draws a panel column per task: attention above the
lens, so the reader sees where attention and the answer settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from visheads_eval.analysis.figures import MIN_WIDTH, model_colours, short_names
from visheads_eval.analysis.head_maps import model_label
from visheads_eval.errors import VisheadsError
from visheads_eval.records import Records, load_records

BOOTSTRAP_RESAMPLES = 1_000
BOOTSTRAP_SEED = 0
_BOOTSTRAP_CHUNK = 20_000_000  # values per vectorised batch of resamples, to bound memory

# measure -> (how it is summarised over samples, label)
MEASURES = {
    "answer_logprob": ("mean", "answer log-probability"),
    "answer_rank": ("median", "answer rank"),
    "top1_share": ("mean", "answer is top-1"),
    "settled_share": ("mean", "answer settled"),
    "kl_to_final": ("mean", "KL(final || layer), nats"),
    "entropy": ("mean", "entropy, nats"),
}


@dataclass(frozen=True)
class LensCurves:
    """One model on one task: the lens by reading, the settle readings, and the attention by layer."""

    model: str
    task: str
    position: str  # the recorded query: answer or last_prompt
    n_layers: int
    n_samples: int
    curves: pd.DataFrame  # measure, reading, depth, value, low, high
    settle: np.ndarray  # (n_samples,) first reading from which the answer stays top-1
    attention: pd.DataFrame  # layer, depth, top_head, image_attn, concentration


def settle_readings(rank: np.ndarray) -> np.ndarray:
    """``rank`` ``(n_samples, n_layers + 1)`` -> the first reading from which every later rank is 0."""
    trailing = np.cumprod(rank[:, ::-1] == 0, axis=1).sum(axis=1)  # readings at the end with the answer on top
    return rank.shape[1] - trailing


def _band(values: np.ndarray, how: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values`` ``(n_samples, n_readings)`` -> summary, 95% bootstrap low and high per reading."""
    summarise = np.mean if how == "mean" else np.median
    value = summarise(values, axis=0)
    if len(values) < 2:
        return value, np.full_like(value, np.nan, dtype=float), np.full_like(value, np.nan, dtype=float)
    interval = stats.bootstrap(
        (values,),
        lambda x, axis: summarise(x, axis=axis),
        axis=0,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        batch=max(1, _BOOTSTRAP_CHUNK // values.size),
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return value, np.asarray(interval.low, dtype=float), np.asarray(interval.high, dtype=float)


def lens_curves(records: Records, task: str, seed: int = BOOTSTRAP_SEED) -> LensCurves:
    """The lens curves of ``task`` in ``records`` (which must carry the lens)."""
    if not records.has_lens:
        raise VisheadsError(f"the records of {records.directory} carry no logit lens; record with logit_lens=true")
    selected = records if records.tasks == [task] else records.filter(tasks=task)
    n_layers = selected.n_layers
    rank = selected.lens("answer_rank")  # (sample, reading)
    settle = settle_readings(rank)
    readings = np.arange(n_layers + 1)
    per_sample = {
        "answer_logprob": selected.lens("answer_logprob").astype(float),
        "answer_rank": rank.astype(float),
        "top1_share": (rank == 0).astype(float),
        "settled_share": (settle[:, None] <= readings[None, :]).astype(float),
        "kl_to_final": selected.lens("kl_to_final").astype(float),
        "entropy": selected.lens("entropy").astype(float),
    }
    rows = []
    for measure, values in per_sample.items():
        value, low, high = _band(values, MEASURES[measure][0], seed)
        rows.append(
            pd.DataFrame({"measure": measure, "reading": readings, "depth": readings / n_layers, "value": value, "low": low, "high": high})
        )
    with_image = selected.meta["n_image_tokens"].to_numpy() > 0
    image = selected.stat("image_attn")[with_image].mean(axis=0)  # (layer, head)
    concentration = selected.stat("concentration")[with_image].mean(axis=0)
    top = image.argmax(axis=1) if with_image.any() else np.zeros(n_layers, dtype=int)
    layers = np.arange(n_layers)
    attention = pd.DataFrame(
        {
            "layer": layers,
            "depth": (layers + 0.5) / n_layers,  # inside layer l: between readings l and l + 1
            "top_head": [f"L{layer}H{head}" for layer, head in zip(layers, top, strict=False)],
            "image_attn": image[layers, top] if with_image.any() else np.nan,
            "concentration": concentration[layers, top] if with_image.any() else np.nan,
        }
    )
    return LensCurves(
        model_label(selected.run),
        task,
        str(selected.run.get("position")),
        n_layers,
        len(selected),
        pd.concat(rows, ignore_index=True),
        settle,
        attention,
    )


def record_lens_curves(directories: Sequence[Path], tasks: Sequence[str] | None = None, progress: bool = True) -> list[LensCurves]:
    """The lens curves of every (record folder, task) whose records carry the lens; ``tasks`` restricts the tasks."""
    curves = []
    for directory in dict.fromkeys(Path(d).resolve() for d in directories):
        records = load_records(directory, progress=progress)
        if records.has_lens:
            curves += [lens_curves(records, task) for task in records.tasks if tasks is None or task in tasks]
    return curves


def curves_table(curves: Sequence[LensCurves]) -> pd.DataFrame:
    """Every curve as one long table: model, task, n_samples, measure, reading, depth, value, low, high."""
    return pd.concat([c.curves.assign(model=c.model, task=c.task, n_samples=c.n_samples) for c in curves], ignore_index=True)[
        ["model", "task", "n_samples", "measure", "reading", "depth", "value", "low", "high"]
    ]


def settle_table(curves: Sequence[LensCurves]) -> pd.DataFrame:
    """Per model and task: where the answer settles (reading and relative depth: quartiles and mean)."""
    rows = []
    for c in curves:
        q25, median, q75 = np.percentile(c.settle, [25, 50, 75])
        rows.append(
            {
                "model": c.model,
                "task": c.task,
                "n_samples": c.n_samples,
                "n_layers": c.n_layers,
                "settle_q25": q25,
                "settle_median": median,
                "settle_q75": q75,
                "settle_mean": float(c.settle.mean()),
                "settle_depth_median": median / c.n_layers,
                "settled_at_embeddings": float((c.settle == 0).mean()),
            }
        )
    return pd.DataFrame(rows)


def lens_figure(curves: Sequence[LensCurves]) -> Figure:
    """A column per task: the top heads' image attention and concentration by layer, above the answer's
    log-probability, KL to the final distribution and the settled share by reading; a colour per model."""
    tasks = list(dict.fromkeys(c.task for c in curves))
    models = list(dict.fromkeys(c.model for c in curves))
    names, colours = short_names(models), model_colours(models)
    rows = [
        ("attention", "top head per layer"),
        ("answer_logprob", MEASURES["answer_logprob"][1]),
        ("kl_to_final", MEASURES["kl_to_final"][1]),
        ("settled_share", MEASURES["settled_share"][1]),
    ]
    fig = Figure(figsize=(max(2.4 * len(tasks) + 1.0, MIN_WIDTH), 1.9 * len(rows) + 1.0), layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), len(tasks), squeeze=False, sharex=True, sharey="row"))
    for column, task in enumerate(tasks):
        for c in (c for c in curves if c.task == task):
            colour = colours[c.model]
            ax = axes[0, column]
            ax.plot(c.attention["depth"], c.attention["image_attn"], color=colour, linewidth=1.2)
            ax.plot(c.attention["depth"], c.attention["concentration"], color=colour, linewidth=1.0, linestyle="--")
            for row, (measure, _) in enumerate(rows[1:], start=1):
                part = c.curves[c.curves["measure"] == measure]
                axes[row, column].fill_between(part["depth"], part["low"], part["high"], color=colour, alpha=0.2, linewidth=0)
                axes[row, column].plot(part["depth"], part["value"], color=colour, linewidth=1.2, marker=".", markersize=3)
            median = float(np.median(c.settle)) / c.n_layers
            for row in range(1, len(rows)):
                axes[row, column].axvline(median, color=colour, linewidth=0.8, linestyle=":")
        axes[0, column].set_title(f"{task}\n(n={max(c.n_samples for c in curves if c.task == task)})", fontsize=8)
    for row, (measure, label) in enumerate(rows):
        axes[row, 0].set_ylabel(label if measure != "attention" else "image attention (-)\nconcentration (--)", fontsize=7)
        for ax in axes[row]:
            ax.tick_params(labelsize=6)
            ax.set_xlim(0, 1)
            if measure in ("attention", "settled_share"):
                ax.set_ylim(-0.02, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("relative depth (0 = embeddings, 1 = output)", fontsize=7)
    handles = [Line2D([], [], color=colours[m], label=names[m]) for m in models]
    handles.append(Line2D([], [], color="grey", linestyle=":", label="median settle depth"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize=7, frameon=False)
    positions = " / ".join(dict.fromkeys(c.position.replace("_", " ") for c in curves))
    fig.suptitle(f"Where attention and the answer settle: the logit lens at the {positions} position", fontsize=10)
    return fig
