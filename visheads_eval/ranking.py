"""The ranking table: every head of one model with its score and rank, in a CSV file.

``visheads rank`` writes it; mask specs that pick ``top`` or ``others`` heads read it. Columns are
``model, layer, head, name, stage, score, rank, image_attn, region_attn, concentration, n_samples``;
``rank`` 1 is the most visual head. A model's default ranking lives at
``<user cache>/rankings/<model>.csv`` (:func:`visheads_eval.user_cache.rankings_dir`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from visheads_eval.errors import VisheadsError
from visheads_eval.heads import HeadShape
from visheads_eval.user_cache import rankings_dir

COLUMNS = ("model", "layer", "head", "name", "stage", "score", "rank", "image_attn", "region_attn", "concentration", "n_samples")


def default_ranking_path(model: str) -> Path:
    """The default ranking file of ``model`` (a hub id or a local path)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "__", model.strip("/")) or "model"
    return rankings_dir() / f"{safe}.csv"


def write_ranking(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` (columns :data:`COLUMNS`) to ``path`` atomically."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise VisheadsError(f"a ranking table needs the columns {', '.join(missing)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    table.loc[:, list(COLUMNS)].to_csv(partial, index=False)
    os.replace(partial, path)


def read_ranking(path: Path, shape: HeadShape | None = None) -> pd.DataFrame:
    """Read and check a ranking file; with ``shape``, check that it ranks every head of that model."""
    path = Path(path)
    if not path.is_file():
        raise VisheadsError(f"ranking file {path} does not exist; make one with `visheads rank`")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise VisheadsError(f"ranking file {path} is not a CSV table: {error}") from error
    missing = [c for c in ("layer", "head", "rank") if c not in table.columns]
    if missing:
        raise VisheadsError(f"ranking file {path} lacks the columns {', '.join(missing)}; is it a visheads ranking?")
    if shape is not None:
        expected = {(layer, head) for layer in range(shape.n_layers) for head in range(shape.n_heads)}
        found = set(zip(table["layer"].astype(int), table["head"].astype(int), strict=False))
        if found != expected or len(table) != len(expected):
            raise VisheadsError(
                f"ranking file {path} does not rank the {shape.n_layers} x {shape.n_heads} heads of this model "
                f"(it has {len(table)} rows over layers {table['layer'].min()}..{table['layer'].max()}, "
                f"heads {table['head'].min()}..{table['head'].max()})"
            )
    if not np.array_equal(np.sort(table["rank"].to_numpy()), np.arange(1, len(table) + 1)):
        raise VisheadsError(f"ranking file {path} has ranks that are not 1..{len(table)} exactly once each")
    return table.sort_values("rank", kind="stable").reset_index(drop=True)
