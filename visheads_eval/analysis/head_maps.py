"""Head maps from record folders: each model's per-head means on each task, read with ``load_records``.

A record folder holds one run of one model (its ``run.json`` names the model and the head shape); one
run may cover several tasks. Several folders of one model (e.g. one run per benchmark) are combined
per task; a sample (task, split, doc_id) recorded in two folders of one model is an error, as is one
model name recorded with two head shapes. Folders recorded under a mask are labelled
``<model> [mask=<name>]`` so they never mix with the unmasked model.

With :class:`CorrectOnly`, only the samples the model answered correctly are averaged; correctness
comes from the lmms-eval samples file of the run that wrote the folder (its results file names the
folder in ``visheads.record.dir``), or else from the newest unmasked run of that model and task.

:func:`ranking_maps` reads a ranking file back as head maps, so that rankings can be compared without
the records they came from.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from visheads_eval.analysis.results import NO_MASK, Run, correct_docs, primary_metric, task_metrics
from visheads_eval.analysis.scores import HeadMaps, HeadSums, ScoreParams
from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.heads import HeadShape
from visheads_eval.ranking import read_ranking
from visheads_eval.records import Records, load_records

READ_STATS = ("image_attn", "region_attn", "concentration")


def model_label(run: Mapping) -> str:
    """The model a record folder belongs to, with its mask when it was recorded under one."""
    mask = run.get("mask")
    name = mask.get("name") if isinstance(mask, Mapping) else mask
    return f"{run['model']} [mask={name}]" if name else str(run["model"])


@dataclass
class CorrectOnly:
    """Selects the correctly answered samples, reading correctness from the samples files of the run (lmms-eval's or lm-eval's)."""

    runs: list[Run]
    metrics: Mapping[str, str] = field(default_factory=dict)

    def keep(self, records: Records, task: str) -> np.ndarray:
        """(sample,) True where the sample of ``task`` in ``records`` was answered correctly."""
        run = self._run_for(records, task)
        metric = primary_metric(task, task_metrics(run, task), self.metrics)
        correct = correct_docs(run, task, metric)
        doc_ids = records.meta["doc_id"].to_numpy()
        missing = [int(d) for d in doc_ids if int(d) not in correct]
        if missing:
            raise VisheadsError(
                f"{len(missing)} samples of {task} recorded in {records.directory} (doc_id {missing[0]}, ...) are not in "
                f"{run.samples_path(task)}; give the results of the run that recorded them"
            )
        return np.array([correct[int(d)] for d in doc_ids], dtype=bool)

    def _run_for(self, records: Records, task: str) -> Run:
        folder = records.directory.resolve()
        recorded = [run for run in self.runs if run.record_dir and Path(run.record_dir).resolve() == folder and task in run.results]
        if recorded:
            return recorded[-1]
        same_model = [run for run in self.runs if run.model == records.run["model"] and run.mask == NO_MASK and task in run.results]
        if not same_model:
            raise VisheadsError(
                f"no results of {records.run['model']} on {task} without a mask among the results given; "
                "pass the output folder of the run that recorded "
                f"{records.directory} to know which samples were answered correctly"
            )
        return same_model[-1]


def record_maps(
    directories: Iterable[Path],
    params: ScoreParams = ScoreParams(),
    tasks: Iterable[str] | None = None,
    correct_only: CorrectOnly | None = None,
    pool_tasks: bool = False,
    allow_masked: bool = True,
    progress: bool = True,
) -> list[HeadMaps]:
    """Head maps of every (model, task) in the record folders, in the order first seen.

    ``tasks`` restricts the tasks (each must be present in some folder). ``pool_tasks`` averages all
    chosen tasks' samples of a model together into one map, whose task is the tasks joined by ``+``.
    ``allow_masked=False`` refuses folders recorded under a mask.
    """
    directories = list(dict.fromkeys(Path(d).resolve() for d in directories))
    if not directories:
        raise VisheadsError("give at least one record folder (the folder passed to llava_visheads as record=<dir>)")
    wanted = None if tasks is None else list(dict.fromkeys(tasks))
    parts: dict[tuple[str, str], list[dict]] = {}  # (model, task, or "" for pooled tasks) -> sums of each folder
    shapes = ShapeCheck()
    seen_tasks: set[str] = set()
    for directory in tqdm(directories, desc="record folders", unit="folder", disable=not progress or len(directories) < 2):
        records = load_records(directory, progress=progress)
        model = model_label(records.run)
        if not allow_masked and records.run.get("mask"):
            raise VisheadsError(f"{directory} was recorded with heads masked ({model}); rank heads from a run without a mask")
        shapes.check(model, records.n_layers, records.n_heads, directory)
        seen_tasks.update(records.tasks)
        for task in records.tasks:
            if wanted is not None and task not in wanted:
                continue
            selected = records if len(records.tasks) == 1 else records.filter(tasks=task)
            keep = None if correct_only is None else correct_only.keep(selected, task)
            image_attn, region_attn, concentration = (selected.stat(name) for name in READ_STATS)
            n_image_tokens = selected.meta["n_image_tokens"].to_numpy()
            sums = HeadSums.of(image_attn, region_attn, concentration, n_image_tokens, params, keep, f"{model} on {task} in {directory}")
            parts.setdefault((model, "" if pool_tasks else task), []).append(
                {"directory": directory, "keys": selected.meta[["task", "split", "doc_id"]], "sums": sums}
            )
    if wanted is not None:
        absent = [task for task in wanted if task not in seen_tasks]
        if absent:
            raise VisheadsError(
                f"no samples of task '{absent[0]}'{did_you_mean(absent[0], seen_tasks)} in the record folders; they hold "
                f"{', '.join(sorted(seen_tasks))}"
            )
    maps = []
    for (model, task), pieces in parts.items():
        _check_recorded_once(model, pieces)
        pooled = "+".join(dict.fromkeys(t for piece in pieces for t in piece["keys"]["task"].unique()))
        total = functools.reduce(operator.add, (piece["sums"] for piece in pieces))
        maps.append(total.means(model, task or pooled, params, tuple(dict.fromkeys(str(piece["directory"]) for piece in pieces))))
    return maps


class ShapeCheck:
    """Remembers each model's head shape and where it was seen; a second shape is an error."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int, Path]] = {}

    def check(self, model: str, n_layers: int, n_heads: int, source: Path) -> None:
        layers, heads, first = self.seen.setdefault(model, (n_layers, n_heads, source))
        if (layers, heads) != (n_layers, n_heads):
            raise VisheadsError(
                f"{model} has {layers} x {heads} heads in {first} but {n_layers} x {n_heads} in {source}; "
                "one model name cannot have two shapes: are these files of the same model?"
            )


def ranking_maps(path: Path) -> HeadMaps:
    """Head maps from a ranking file (``visheads rank``), to compare rankings without their records.

    The ranking must hold one model and every head of a full layers x heads grid. Its task is read
    from the JSON file that ``visheads rank`` writes beside it, else it is ``ranking``.
    """
    path = Path(path)
    table = read_ranking(path)
    models = table["model"].unique() if "model" in table.columns else []
    if len(models) != 1:
        raise VisheadsError(f"ranking file {path} must rank the heads of one model; it has {len(models)} model names")
    shape = HeadShape(n_layers=int(table["layer"].max()) + 1, n_heads=int(table["head"].max()) + 1, n_kv_heads=0, head_dim=0)
    table = read_ranking(path, shape)  # every head of the grid, once
    missing = [c for c in ("score", "image_attn", "region_attn", "concentration", "n_samples") if c not in table.columns]
    if missing:
        raise VisheadsError(f"ranking file {path} lacks the columns {', '.join(missing)}; write rankings with `visheads rank`")
    grid = table.sort_values(["layer", "head"])
    maps = {
        name: grid[name].to_numpy(dtype=float).reshape(shape.n_layers, shape.n_heads)
        for name in ("image_attn", "region_attn", "concentration", "score")
    }
    task = "ranking"
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            task = "+".join(json.loads(sidecar.read_text())["tasks"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise VisheadsError(
                f"{sidecar} (beside the ranking {path.name}) is not the JSON that `visheads rank` writes: {error}"
            ) from error
    n_samples = int(grid["n_samples"].iloc[0])
    return HeadMaps(str(models[0]), task, n_samples, 0, 0, maps, sources=(str(path.resolve()),))


def _check_recorded_once(model: str, pieces: list[dict]) -> None:
    """A sample recorded in two folders of one model would count twice: refuse it."""
    if len(pieces) < 2:
        return
    keys = pd.concat([piece["keys"].assign(directory=str(piece["directory"])) for piece in pieces], ignore_index=True)
    twice = keys.duplicated(["task", "split", "doc_id"], keep=False)
    if twice.any():
        first = keys[twice].iloc[0]
        same = twice & (keys["task"] == first["task"]) & (keys["split"] == first["split"]) & (keys["doc_id"] == first["doc_id"])
        raise VisheadsError(
            f"{model}: {int(keys.duplicated(['task', 'split', 'doc_id']).sum())} samples were recorded in more than one folder "
            f"(e.g. {first['task']}/{first['split']}/{first['doc_id']} in {' and '.join(keys.loc[same, 'directory'])}); give each "
            "sample's folder once"
        )
