"""``load_records``: every shard of every rank of a record folder, merged into one table of samples.

The key and scalar columns are read when the folder is loaded; each statistic is read on its first
``stat(name)`` (only that column of each shard) and kept. Rows are sorted by ``(task, split, doc_id)``,
so the same samples give the same arrays however many processes recorded them.

A key recorded more than once (a sample recomputed by a resumed or a concurrent run) is kept once: the
copy in the earliest-written shard (shards written in the same nanosecond: lower rank, then lower shard
number first). The dropped copies are listed in ``Records.duplicates`` with whether their scalar columns
(answer, token counts, box, image size) equal the kept copy's; a warning gives the counts. Statistics of
dropped copies are not compared: reading them would defeat lazy reading, and a recomputation on a GPU
may differ in the last bits anyway.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.records.format import (
    KEY_COLUMNS,
    LENS_STATISTICS,
    LENS_TOKEN_COLUMN,
    SCALAR_COLUMNS,
    SHARD_DIR,
    STATISTICS,
    ShardFile,
    check_lens_name,
    check_statistic_name,
    has_lens,
    lens_column,
    list_shards,
    read_run,
    read_shard,
)

_COMPARED_COLUMNS = [column for column in SCALAR_COLUMNS if column not in KEY_COLUMNS]


@dataclass
class _Shards:
    """The shards of one folder, where each of their rows goes in the merged table, and the statistics read so far."""

    directory: Path
    run: dict[str, Any]
    files: list[ShardFile]  # in merge order (earliest written first)
    destinations: list[np.ndarray]  # per shard: (rows,) index in the merged table, -1 for a dropped copy
    n_samples: int
    progress: bool
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # column -> (n_samples, *shape)

    def stat(self, name: str) -> np.ndarray:
        """A head statistic, ``(n_samples, n_layers, n_heads)``."""
        if name not in self.stats:
            self.stats[name] = self._read(name, STATISTICS[name], (self.run["n_layers"], self.run["n_heads"]))
        return self.stats[name]

    def lens(self, name: str) -> np.ndarray:
        """A logit-lens statistic, ``(n_samples, n_layers + 1)``."""
        column = lens_column(name)
        if column not in self.stats:
            self.stats[column] = self._read(column, LENS_STATISTICS[name], (self.run["n_layers"] + 1,))
        return self.stats[column]

    def _read(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        merged = np.empty((self.n_samples, int(np.prod(shape))), dtype)  # (sample, values)
        shards = zip(self.files, self.destinations, strict=False)
        for shard, destination in tqdm(
            shards, total=len(self.files), desc=f"reading {name}", unit="shard", leave=False, delay=1.0, disable=not self.progress
        ):
            column = read_shard(shard, self.run, [name]).table.column(name).combine_chunks()
            if len(column) != len(destination):
                raise VisheadsError(f"record shard {shard.path} changed while it was being read; reload the records")
            values = column.values.slice(column.offset * column.type.list_size, len(column) * column.type.list_size)
            block = values.to_numpy(zero_copy_only=False).reshape(len(column), -1)  # (rows, values)
            if column.null_count:
                if dtype.kind != "f":
                    raise VisheadsError(f"record shard {shard.path} has rows without '{name}'; the shard is damaged")
                block = np.where(column.is_null().to_numpy(zero_copy_only=False)[:, None], np.nan, block)
            kept = destination >= 0
            merged[destination[kept]] = block[kept]
        merged = merged.reshape(self.n_samples, *shape)
        merged.flags.writeable = False  # shared by every selection of these records
        return merged


class Records:
    """The samples of one record folder: ``run`` (run.json), ``meta`` (one row per sample), ``stat(name)``.

    Made by :func:`load_records`; ``filter`` selects samples without reading anything again.
    """

    def __init__(self, shards: _Shards, meta: pd.DataFrame, duplicates: pd.DataFrame, rows: np.ndarray | None = None) -> None:
        self._shards = shards
        self._rows = rows  # positions in the merged table, or None for all of it
        self.meta = meta
        self.duplicates = duplicates

    @property
    def run(self) -> dict[str, Any]:
        """The run.json of the folder: model, model_args, n_layers, n_heads, position, versions, seeds."""
        return self._shards.run

    @property
    def directory(self) -> Path:
        return self._shards.directory

    @property
    def n_layers(self) -> int:
        return int(self.run["n_layers"])

    @property
    def n_heads(self) -> int:
        return int(self.run["n_heads"])

    @property
    def shards(self) -> list[Path]:
        """The shard files read, earliest written first."""
        return [shard.path for shard in self._shards.files]

    @property
    def ranks(self) -> list[int]:
        """The ranks (processes) that wrote shards, sorted."""
        return sorted({shard.rank for shard in self._shards.files})

    @property
    def tasks(self) -> list[str]:
        """The tasks present, sorted."""
        return sorted(self.meta["task"].unique())

    def __len__(self) -> int:
        return len(self.meta)

    def __repr__(self) -> str:
        return (
            f"Records({str(self.directory)!r}, model={self.run.get('model')!r}, {len(self)} samples, "
            f"{self.n_layers} x {self.n_heads} heads, tasks={self.tasks})"
        )

    def stat(self, name: str) -> np.ndarray:
        """One statistic of every sample, shaped ``(n_samples, n_layers, n_heads)``, rows aligned with ``meta``.

        ``region_attn`` is NaN for samples without a region. The array is read-only (it is shared).
        """
        check_statistic_name(name)
        return self._selected(self._shards.stat(name))

    @property
    def has_lens(self) -> bool:
        """Whether the run recorded the logit lens (``lens(name)``; ``meta["lens_answer_token"]``)."""
        return has_lens(self.run)

    def lens(self, name: str) -> np.ndarray:
        """One logit-lens statistic of every sample, shaped ``(n_samples, n_layers + 1)`` (index 0: the
        embeddings; ``l + 1``: after layer ``l``), rows aligned with ``meta``; read-only."""
        check_lens_name(name, self.run, self.directory)
        return self._selected(self._shards.lens(name))

    def _selected(self, merged: np.ndarray) -> np.ndarray:
        if self._rows is None:
            return merged
        selected = merged[self._rows]
        selected.flags.writeable = False
        return selected

    def filter(self, tasks: str | Iterable[str] | None = None, splits: str | Iterable[str] | None = None) -> Records:
        """The samples of the given tasks and/or splits (unknown names are an error)."""
        keep = np.ones(len(self.meta), dtype=bool)
        for column, wanted in (("task", tasks), ("split", splits)):
            if wanted is None:
                continue
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            present = sorted(self.meta[column].unique())
            for name in wanted:
                if name not in present:
                    raise VisheadsError(
                        f"no {column} '{name}' in the records of {self.directory}{did_you_mean(name, present)}; "
                        f"{column}s present: {', '.join(present)}"
                    )
            keep &= self.meta[column].isin(wanted).to_numpy()
        positions = np.flatnonzero(keep)
        rows = positions if self._rows is None else self._rows[positions]
        if not len(rows):
            raise VisheadsError(f"the records of {self.directory} hold no sample of tasks={tasks} splits={splits} together")
        selected = set(zip(self.meta["task"][keep], self.meta["split"][keep], strict=False))
        in_selection = np.array(
            [pair in selected for pair in zip(self.duplicates["task"], self.duplicates["split"], strict=False)], dtype=bool
        )
        duplicates = self.duplicates.loc[in_selection]
        return Records(self._shards, self.meta.iloc[positions].reset_index(drop=True), duplicates.reset_index(drop=True), rows)


def load_records(directory: str | os.PathLike[str], progress: bool = True) -> Records:
    """Read a record folder: run.json, and the key and scalar columns of every shard of every rank."""
    directory = Path(directory)
    run = read_run(directory)
    files = list_shards(directory)
    if not files:
        raise VisheadsError(
            f"record folder {directory} holds no samples (no shards in {directory / SHARD_DIR}); did the run record anything?"
        )
    parts = [
        read_shard(shard, run, [*SCALAR_COLUMNS, *([LENS_TOKEN_COLUMN] if has_lens(run) else [])])
        for shard in tqdm(files, desc=f"reading {directory.name}", unit="shard", leave=False, delay=1.0, disable=not progress)
    ]
    parts.sort(key=lambda part: (part.written_at_ns, part.file.rank, part.file.number))
    table = pa.concat_tables([part.table for part in parts])
    if table.num_rows == 0:
        raise VisheadsError(f"record folder {directory} holds no samples (its shards are empty); did the run record anything?")
    everything = table.to_pandas()
    everything["shard"] = np.repeat([part.file.path.name for part in parts], [part.table.num_rows for part in parts])
    dropped = everything.duplicated(list(KEY_COLUMNS), keep="first").to_numpy()
    duplicates = _duplicates(everything, dropped)
    if len(duplicates):
        warnings.warn(
            f"{directory}: dropped {len(duplicates)} extra copies of samples recorded more than once, keeping the earliest "
            f"shard's copy ({int((~duplicates['identical']).sum())} differ in answer, token counts, box or image size; "
            "see Records.duplicates)",
            stacklevel=2,
        )
    order = everything[~dropped].sort_values(list(KEY_COLUMNS), kind="stable").index.to_numpy()  # rows, by key
    destination = np.full(len(everything), -1, dtype=np.int64)
    destination[order] = np.arange(len(order))
    bounds = np.cumsum([0] + [part.table.num_rows for part in parts])
    shards = _Shards(
        directory=directory,
        run=run,
        files=[part.file for part in parts],
        destinations=[destination[start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=False)],
        n_samples=len(order),
        progress=progress,
    )
    meta = everything.iloc[order].drop(columns="shard").reset_index(drop=True)
    for column in ("image_width", "image_height"):
        meta[column] = meta[column].astype("Int32")
    return Records(shards, meta, duplicates)


def _duplicates(everything: pd.DataFrame, dropped: np.ndarray) -> pd.DataFrame:
    """One row per dropped copy: its key, the shard kept and the shard dropped, and whether the copies agree."""
    if not dropped.any():
        dtypes = {"task": "str", "split": "str", "doc_id": "int64", "kept_shard": "str", "dropped_shard": "str", "identical": "bool"}
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})
    first = everything[~dropped].set_index(list(KEY_COLUMNS))
    copies = everything[dropped]
    originals = first.loc[pd.MultiIndex.from_frame(copies[list(KEY_COLUMNS)])]
    identical = [
        all(_same(a, b) for a, b in zip(copy, original, strict=False))
        for copy, original in zip(
            copies[_COMPARED_COLUMNS].itertuples(index=False), originals[_COMPARED_COLUMNS].itertuples(index=False), strict=False
        )
    ]
    return pd.DataFrame(
        {
            **{column: copies[column].to_numpy() for column in KEY_COLUMNS},
            "kept_shard": originals["shard"].to_numpy(),
            "dropped_shard": copies["shard"].to_numpy(),
            "identical": identical,
        }
    )


def _same(a: Any, b: Any) -> bool:
    """Equality of two cells (boxes are arrays or None; a missing image size is NaN)."""
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b, equal_nan=True)) if isinstance(a, np.ndarray) else bool(a == b or (pd.isna(a) and pd.isna(b)))
