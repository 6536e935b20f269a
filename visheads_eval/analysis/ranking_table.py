"""One model's head ranking, in the table format that mask specs read (visheads_eval.ranking).

Heads are ranked by their detection score, largest first; ties go to the lower layer, then the lower
head, so a ranking is a pure function of the scores. Every head of the model appears once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from visheads_eval.analysis.scores import HeadMaps
from visheads_eval.heads import Head, stage_of
from visheads_eval.ranking import COLUMNS


def ranking_table(maps: HeadMaps) -> pd.DataFrame:
    """Every head of ``maps`` with its score, rank (1 = most visual), stage and mean statistics."""
    n_layers, n_heads = maps.n_layers, maps.n_heads
    layer, head = np.divmod(np.arange(n_layers * n_heads), n_heads)  # (layer * head,) each, layer-major
    score = maps.maps["score"].ravel()
    order = np.lexsort((head, layer, -score))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    table = pd.DataFrame({
        "model": maps.model,
        "layer": layer,
        "head": head,
        "name": [str(Head(int(l), int(h))) for l, h in zip(layer, head)],
        "stage": [stage_of(int(l), n_layers) for l in layer],
        "score": score,
        "rank": rank,
        "image_attn": maps.maps["image_attn"].ravel(),
        "region_attn": maps.maps["region_attn"].ravel(),
        "concentration": maps.maps["concentration"].ravel(),
        "n_samples": maps.n_samples,
    })
    return table.sort_values("rank").loc[:, list(COLUMNS)].reset_index(drop=True)
