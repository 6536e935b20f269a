"""The on-disk format of a record folder: ``run.json``, shard names, a shard's columns, and their checks.

A record folder holds one run: one model, one head shape, one recording position, one mask. Its
``run.json`` says which; every shard carries the same identity in its Parquet metadata, so a shard that
was copied in from another run is caught when the folder is read. Both the writer and the reader open
shards through :func:`open_shard`, so both apply the same checks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visheads_eval.errors import VisheadsError, did_you_mean

FORMAT_VERSION = 1
RUN_FILE = "run.json"
SHARD_DIR = "shards"
METADATA_KEY = b"visheads.records"

KEY_COLUMNS = ("task", "split", "doc_id")
SCALAR_COLUMNS = (*KEY_COLUMNS, "n_keys", "n_image_tokens", "n_region_tokens", "bbox", "image_width", "image_height", "answer")

# Statistic name -> the dtype of its values; each is stored as a fixed-size list of n_layers * n_heads.
STATISTICS: dict[str, np.dtype] = {
    "image_attn": np.dtype(np.float32),
    "region_attn": np.dtype(np.float32),
    "text_attn": np.dtype(np.float32),
    "concentration": np.dtype(np.float32),
    "image_argmax": np.dtype(np.int32),
}
OPTIONAL_STATISTICS = ("region_attn",)  # null for a sample without a region
REQUIRED_STATISTICS = tuple(name for name in STATISTICS if name not in OPTIONAL_STATISTICS)

# Logit-lens statistic -> the dtype of its values; in a run with ``"logit_lens": true`` each is stored as
# a fixed-size list of n_layers + 1 (embeddings, then after each layer) in the column ``lens_<name>``,
# beside the scalar ``lens_answer_token`` (see visheads_eval.capture.lens).
LENS_STATISTICS: dict[str, np.dtype] = {
    "answer_logprob": np.dtype(np.float32),
    "answer_rank": np.dtype(np.int32),
    "top1": np.dtype(np.int32),
    "entropy": np.dtype(np.float32),
    "kl_to_final": np.dtype(np.float32),
}
LENS_TOKEN_COLUMN = "lens_answer_token"

# The fields of run.json that make two runs the same run (a resumed run must match all of them).
IDENTITY_FIELDS = ("model", "weights", "n_layers", "n_heads", "position", "mask", "logit_lens")
REQUIRED_RUN_FIELDS = ("model", "position")

_SHARD_NAME = re.compile(r"^rank(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True, order=True)
class RecordKey:
    """Which document a record belongs to: lmms-eval's task name, split and doc_id."""

    task: str
    split: str
    doc_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise VisheadsError(f"a record key needs a task name, got {self.task!r}")
        if not isinstance(self.split, str):
            raise VisheadsError(f"a record key needs a split name (str), got {self.split!r}")
        if isinstance(self.doc_id, bool) or not isinstance(self.doc_id, (int, np.integer)):
            raise VisheadsError(f"a record key needs an integer doc_id, got {self.doc_id!r}")
        object.__setattr__(self, "doc_id", int(self.doc_id))

    def __str__(self) -> str:
        return f"{self.task}/{self.split}/{self.doc_id}"


def lens_column(name: str) -> str:
    """The shard column of logit-lens statistic ``name``."""
    return f"lens_{name}"


def has_lens(run: dict[str, Any]) -> bool:
    """Whether the run recorded the logit lens beside the heads."""
    return bool(run.get("logit_lens"))


def shard_schema(n_layers: int, n_heads: int, logit_lens: bool = False) -> pa.Schema:
    """The Arrow schema of a shard for a model of ``n_layers`` x ``n_heads`` heads (and its lens columns)."""
    size = n_layers * n_heads
    fields = [
        pa.field("task", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("doc_id", pa.int64(), nullable=False),
        pa.field("n_keys", pa.int32(), nullable=False),
        pa.field("n_image_tokens", pa.int32(), nullable=False),
        pa.field("n_region_tokens", pa.int32(), nullable=False),
        pa.field("bbox", pa.list_(pa.float64(), 4)),
        pa.field("image_width", pa.int32()),
        pa.field("image_height", pa.int32()),
        pa.field("answer", pa.string(), nullable=False),
    ]
    fields += [
        pa.field(name, pa.list_(pa.from_numpy_dtype(dtype), size), nullable=name in OPTIONAL_STATISTICS)
        for name, dtype in STATISTICS.items()
    ]
    if logit_lens:
        fields.append(pa.field(LENS_TOKEN_COLUMN, pa.int32(), nullable=False))
        fields += [
            pa.field(lens_column(name), pa.list_(pa.from_numpy_dtype(dtype), n_layers + 1), nullable=False)
            for name, dtype in LENS_STATISTICS.items()
        ]
    return pa.schema(fields)


def shard_name(rank: int, number: int) -> str:
    """``rank<R>-<NNNNN>.parquet``."""
    return f"rank{rank}-{number:05d}.parquet"


@dataclass(frozen=True)
class ShardFile:
    """A shard file found in a record folder, with the rank and sequence number its name carries."""

    path: Path
    rank: int
    number: int


def list_shards(directory: Path) -> list[ShardFile]:
    """The shards of a record folder (temporary files of writes in progress are not shards)."""
    shard_dir = Path(directory) / SHARD_DIR
    if not shard_dir.is_dir():
        return []
    found = []
    for path in shard_dir.iterdir():
        match = _SHARD_NAME.match(path.name)
        if match is not None:
            found.append(ShardFile(path, int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda shard: (shard.rank, shard.number))


def run_identity(run: dict[str, Any]) -> dict[str, Any]:
    """The fields of a run that a resumed run must repeat exactly (a missing ``mask`` is no mask, a missing
    ``logit_lens`` no lens)."""
    return {**{field: run.get(field) for field in IDENTITY_FIELDS}, "logit_lens": has_lens(run)}


def identity_difference(found: dict[str, Any], expected: dict[str, Any]) -> str:
    """``"model 'a' vs 'b', ..."`` for the identity fields that differ, or ``""``."""
    differing = [
        f"{field} {found.get(field)!r} vs {expected.get(field)!r}" for field in IDENTITY_FIELDS if found.get(field) != expected.get(field)
    ]
    return ", ".join(differing)


def read_run(directory: Path) -> dict[str, Any]:
    """Read and check ``<directory>/run.json``."""
    directory = Path(directory)
    if not directory.exists():
        raise VisheadsError(f"record folder {directory} does not exist")
    path = directory / RUN_FILE
    if not path.is_file():
        hint = ""
        if (directory.parent / RUN_FILE).is_file():
            hint = f"; did you mean its parent {directory.parent}?"
        raise VisheadsError(
            f"{directory} is not a record folder (it has no {RUN_FILE}){hint or '; give the folder passed as record=<dir>'}"
        )
    try:
        run = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VisheadsError(f"{path} is not valid JSON ({error}); the record folder is damaged") from error
    if not isinstance(run, dict):
        raise VisheadsError(f"{path} does not describe a run (expected a JSON object)")
    for field in ("n_layers", "n_heads"):
        if not isinstance(run.get(field), int) or run[field] < 1:
            raise VisheadsError(f"{path} lacks a positive integer '{field}'; the record folder is damaged")
    if run.get("records_format", 0) > FORMAT_VERSION:
        raise VisheadsError(f"{path} was written in records format {run['records_format']} by a newer visheads_eval; upgrade to read it")
    return run


@dataclass(frozen=True)
class ShardData:
    """Columns read from a checked shard, and when the shard was written (nanoseconds since the epoch)."""

    file: ShardFile
    table: pa.Table
    written_at_ns: int


def _damaged(path: Path, error: Exception) -> VisheadsError:
    return VisheadsError(f"record shard {path} is truncated or corrupted ({error}); delete it and resume the run to recompute its samples")


def read_shard(shard: ShardFile, run: dict[str, Any], columns: list[str]) -> ShardData:
    """Read ``columns`` of ``shard`` after checking that it has the records format and belongs to ``run``.

    The file is closed again before returning: an analysis may read thousands of shards.
    """
    path = shard.path
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as parquet:
            schema = parquet.schema_arrow
            header = _check_header(path, schema.metadata or {}, run)
            _check_columns(path, schema, run)
            table = parquet.read(columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise _damaged(path, error) from error
    return ShardData(shard, table, int(header.get("written_at_ns", 0)))


def _check_header(path: Path, metadata: dict[bytes, bytes], run: dict[str, Any]) -> dict[str, Any]:
    if METADATA_KEY not in metadata:
        raise VisheadsError(f"{path} is not a visheads record shard (no {METADATA_KEY.decode()} metadata); remove it from {path.parent}")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _damaged(path, error) from error
    if header.get("format", 0) > FORMAT_VERSION:
        raise VisheadsError(
            f"record shard {path} was written in records format {header['format']} by a newer visheads_eval; upgrade to read it"
        )
    difference = identity_difference(header.get("run", {}), run_identity(run))
    if difference:
        raise VisheadsError(
            f"record shard {path} was recorded by another run than {path.parent.parent / RUN_FILE} (shard vs run.json: {difference}); "
            "a record folder holds one run: move that shard to a folder of its own"
        )
    return header


def _check_columns(path: Path, schema: pa.Schema, run: dict[str, Any]) -> None:
    for field in shard_schema(run["n_layers"], run["n_heads"], has_lens(run)):
        found = schema.field(field.name).type if field.name in schema.names else "nothing"
        if found != field.type:
            raise VisheadsError(f"record shard {path} has {found} in column '{field.name}', expected {field.type}; the shard is damaged")


def check_statistic_name(name: str) -> None:
    """Raise a clear error for a statistic name the records do not store."""
    if name not in STATISTICS:
        hint = f"; '{name}' is a logit-lens statistic: read it with Records.lens('{name}')" if name in LENS_STATISTICS else ""
        raise VisheadsError(f"unknown statistic '{name}'{did_you_mean(name, STATISTICS)}; records hold {', '.join(STATISTICS)}{hint}")


def check_lens_name(name: str, run: dict[str, Any], directory: Path) -> None:
    """Raise a clear error for a lens statistic the records do not store."""
    if not has_lens(run):
        raise VisheadsError(f"the records of {directory} carry no logit lens; record with logit_lens=true to read '{name}'")
    if name not in LENS_STATISTICS:
        raise VisheadsError(
            f"unknown logit-lens statistic '{name}'{did_you_mean(name, LENS_STATISTICS)}; the lens holds {', '.join(LENS_STATISTICS)}"
        )
