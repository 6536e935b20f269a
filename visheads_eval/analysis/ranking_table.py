"""One model's head ranking, in the table format that mask specs read (visheads_eval.ranking).

Heads are ranked by their detection score, largest first; ties go to the lower layer, then the lower
head, so a ranking is a pure function of the scores. Every head of the model appears once. Beside a
ranking file, a JSON file of the same name records what it was computed from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from visheads_eval import __version__
from visheads_eval.analysis.output import write_text_atomic
from visheads_eval.analysis.scores import HeadMaps
from visheads_eval.errors import VisheadsError
from visheads_eval.heads import Head, stage_of
from visheads_eval.ranking import COLUMNS, default_ranking_path, write_ranking
from visheads_eval.records.format import RUN_FILE, read_run
from visheads_eval.weights import weights_difference


def ranking_table(maps: HeadMaps) -> pd.DataFrame:
    """Every head of ``maps`` with its score, rank (1 = most visual), stage and mean statistics."""
    n_layers, n_heads = maps.n_layers, maps.n_heads
    layer, head = np.divmod(np.arange(n_layers * n_heads), n_heads)  # (layer * head,) each, layer-major
    score = maps.maps["score"].ravel()
    order = np.lexsort((head, layer, -score))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    table = pd.DataFrame(
        {
            "model": maps.model,
            "layer": layer,
            "head": head,
            "name": [str(Head(int(layer_), int(head_))) for layer_, head_ in zip(layer, head, strict=True)],
            "stage": [stage_of(int(layer_), n_layers) for layer_ in layer],
            "score": score,
            "rank": rank,
            "image_attn": maps.maps["image_attn"].ravel(),
            "region_attn": maps.maps["region_attn"].ravel(),
            "concentration": maps.maps["concentration"].ravel(),
            "n_samples": maps.n_samples,
        }
    )
    return table.sort_values("rank").loc[:, list(COLUMNS)].reset_index(drop=True)


def recorded_weights(sources: tuple[str, ...]) -> dict | None:
    """The weights (``run.json``'s ``weights``) the record folders among ``sources`` were recorded on; an
    error when they differ, since one ranking cannot describe two sets of weights."""
    found: dict[str, dict] = {}
    for source in sources:
        if (Path(source) / RUN_FILE).is_file():
            weights = read_run(Path(source)).get("weights")
            if weights is not None:
                found.setdefault(json.dumps(weights, sort_keys=True), {"weights": weights, "folder": source})
    if len(found) > 1:
        first, second = list(found.values())[:2]
        raise VisheadsError(
            f"{first['folder']} and {second['folder']} were recorded on different weights "
            f"({weights_difference(first['weights'], second['weights'])}); rank them separately"
        )
    return next(iter(found.values()))["weights"] if found else None


def provenance(maps: HeadMaps, correct_only: bool = False) -> dict:
    """What a ranking was computed from, for the JSON file beside it."""
    return {
        "model": maps.model,
        "weights": recorded_weights(maps.sources),
        "tasks": maps.task.split("+"),
        "n_samples": maps.n_samples,
        "n_without_image": maps.n_without_image,
        "n_left_out": maps.n_left_out,
        "n_region_samples": maps.n_region_samples,
        "correct_only": correct_only,
        "score": {"formula": "mean over samples of attn * (1 + C * (k / (l + eps) + a * exp(-b * l)))", **maps.params.describe()},
        "record_folders": list(maps.sources),
        "visheads_eval_version": __version__,
    }


def save_ranking(maps: HeadMaps, path: Path | None = None, correct_only: bool = False) -> Path:
    """Write the ranking of ``maps`` to ``path`` (default: where mask specs look for the model's
    ranking) and its provenance to the ``.json`` beside it, both atomically; returns ``path``."""
    path = default_ranking_path(maps.model) if path is None else Path(path)
    write_ranking(ranking_table(maps), path)
    write_text_atomic(path.with_suffix(".json"), json.dumps(provenance(maps, correct_only), indent=2) + "\n")
    return path
