"""``RecordWriter``: one process's per-sample statistics, appended to a record folder in atomic shards.

Each process (one per GPU under accelerate) writes its own shards, ``shards/rank<R>-<NNNNN>.parquet``,
with no coordination. A shard appears whole or not at all: it is written to a hidden temporary file in
the same folder and then published under its final name, never over an existing file. Rows are
buffered and written every ``flush_every`` samples, on ``close()``, and when a ``with`` block ends with an
exception, so a crashed run keeps what it computed. Reopening the folder resumes: the keys of every
shard already there (any rank) answer ``key in writer``, and numbering continues after this rank's
last shard.
"""

from __future__ import annotations

import errno
import json
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.records.format import (
    FORMAT_VERSION,
    KEY_COLUMNS,
    LENS_STATISTICS,
    LENS_TOKEN_COLUMN,
    METADATA_KEY,
    OPTIONAL_STATISTICS,
    REQUIRED_RUN_FIELDS,
    REQUIRED_STATISTICS,
    RUN_FILE,
    SHARD_DIR,
    STATISTICS,
    RecordKey,
    has_lens,
    identity_difference,
    lens_column,
    list_shards,
    read_run,
    read_shard,
    run_identity,
    shard_name,
    shard_schema,
)

DEFAULT_FLUSH_EVERY = 64

# errno values of file systems that cannot make hard links; publishing then checks, then renames.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def _publish(temp: Path, target: Path) -> bool:
    """Give the complete file ``temp`` the name ``target`` unless ``target`` exists; False if it does."""
    try:
        os.link(temp, target)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        if target.exists():
            return False
        os.replace(temp, target)
    return True


def _temp_path(folder: Path, stem: str) -> Path:
    """A hidden name, unique to this process and call, that no reader takes for a shard."""
    return folder / f".{stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def _write_new(target: Path, write: Any) -> bool:
    """Write a file through ``write(file)`` and publish it as ``target``; False if ``target`` exists.

    Nothing is left behind if writing fails: the temporary file is removed and the error raised.
    """
    temp = _temp_path(target.parent, target.name)
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        return _publish(temp, target)
    finally:
        temp.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Row:
    key: RecordKey
    stats: dict[str, np.ndarray]  # name -> (n_layers, n_heads); region_attn may be absent
    n_keys: int
    n_image_tokens: int
    n_region_tokens: int
    bbox: list[float] | None
    image_size: tuple[int, int] | None
    answer: str
    lens: dict[str, np.ndarray] | None  # name -> (n_layers + 1,); answer_token -> int


class RecordWriter:
    """Append one process's records to ``directory``; use as a context manager or call ``close()``.

    ``run`` (JSON-serialisable: model, model_args, position, mask, versions, seeds, ...) is written once
    to ``run.json``; a folder that already holds a different run (model, shape, position or mask) is
    refused, the same run resumes.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        run: Mapping[str, Any],
        n_layers: int,
        n_heads: int,
        rank: int = 0,
        flush_every: int = DEFAULT_FLUSH_EVERY,
    ) -> None:
        for name, value, least in (("n_layers", n_layers, 1), ("n_heads", n_heads, 1), ("flush_every", flush_every, 1), ("rank", rank, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise VisheadsError(f"RecordWriter needs an integer {name} >= {least}, got {value!r}")
        self.directory = Path(directory)
        self.rank = rank
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.flush_every = flush_every
        self.run = self._open_run(run)
        self.logit_lens = has_lens(self.run)
        self._schema = shard_schema(n_layers, n_heads, self.logit_lens)
        self._shard_dir = self.directory / SHARD_DIR
        self._shard_dir.mkdir(exist_ok=True)
        shards = list_shards(self.directory)
        self._keys: set[RecordKey] = set()
        for shard in shards:
            table = read_shard(shard, self.run, list(KEY_COLUMNS)).table
            self._keys.update(map(RecordKey, *(table[column].to_pylist() for column in KEY_COLUMNS)))
        self._next_number = 1 + max((shard.number for shard in shards if shard.rank == rank), default=-1)
        self._buffer: list[_Row] = []
        self._closed = False

    def _open_run(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """Write run.json, or check that the one already there describes this same run."""
        missing = [field for field in REQUIRED_RUN_FIELDS if field not in run]
        if missing:
            raise VisheadsError(f"the run info of a record folder needs {', '.join(missing)}")
        for field, value in (("n_layers", self.n_layers), ("n_heads", self.n_heads)):
            if field in run and run[field] != value:
                raise VisheadsError(f"the run info says {field}={run[field]} but the writer was opened with {field}={value}")
        try:
            text = json.dumps({**run, "n_layers": self.n_layers, "n_heads": self.n_heads, "records_format": FORMAT_VERSION}, indent=2)
        except (TypeError, ValueError) as error:
            raise VisheadsError(f"the run info of a record folder must be JSON-serialisable: {error}") from error
        wanted = json.loads(text)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / RUN_FILE
        if not path.exists() and list_shards(self.directory):
            raise VisheadsError(f"{self.directory} has shards but no {RUN_FILE}; it is damaged: record into a new folder")
        if not path.exists() and _write_new(path, lambda handle: handle.write(text.encode())):
            return wanted
        found = read_run(self.directory)  # written before, or by another rank just now
        difference = identity_difference(run_identity(wanted), run_identity(found))
        if difference:
            raise VisheadsError(
                f"{self.directory} holds the records of a different run (this run vs the folder's: {difference}); "
                "record this run into a new folder"
            )
        return found

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is recorded in this folder (by any rank before this writer opened, or here)."""
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(
        self,
        key: RecordKey,
        stats: Mapping[str, Any],
        *,
        n_keys: int,
        n_image_tokens: int,
        n_region_tokens: int,
        bbox: Sequence[float] | None = None,
        image_size: Sequence[int] | None = None,
        answer: str,
        lens: Mapping[str, Any] | None = None,
    ) -> None:
        """Buffer one sample's record; write a shard when ``flush_every`` samples are buffered.

        ``stats`` maps each statistic name to an array shaped ``(n_layers, n_heads)``: ``image_attn``,
        ``text_attn``, ``concentration`` (floats) and ``image_argmax`` (integers) always, ``region_attn``
        when the sample has a region. ``lens``, given exactly when the run says ``"logit_lens": true``, maps
        each logit-lens statistic to an array shaped ``(n_layers + 1,)`` and ``answer_token`` to the
        answer's token id. A key added twice is read back once (the first copy).
        """
        if self._closed:
            raise VisheadsError(f"the record writer of {self.directory} is closed; open a new RecordWriter to add records")
        if not isinstance(key, RecordKey):
            raise VisheadsError(f"records are keyed by RecordKey(task, split, doc_id), got {key!r}")
        row = _Row(
            key=key,
            stats=self._checked_stats(key, stats, n_image_tokens),
            n_keys=_count(key, "n_keys", n_keys),
            n_image_tokens=_count(key, "n_image_tokens", n_image_tokens),
            n_region_tokens=_count(key, "n_region_tokens", n_region_tokens),
            bbox=_checked_bbox(key, bbox),
            image_size=_checked_image_size(key, image_size),
            answer=_checked_answer(key, answer),
            lens=self._checked_lens(key, lens),
        )
        if row.n_image_tokens > row.n_keys or row.n_region_tokens > row.n_image_tokens:
            raise VisheadsError(
                f"record {key}: counts must satisfy n_region_tokens <= n_image_tokens <= n_keys, "
                f"got {row.n_region_tokens}, {row.n_image_tokens}, {row.n_keys}"
            )
        self._buffer.append(row)
        self._keys.add(key)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def _checked_stats(self, key: RecordKey, stats: Mapping[str, Any], n_image_tokens: int) -> dict[str, np.ndarray]:
        unknown = [name for name in stats if name not in STATISTICS]
        if unknown:
            raise VisheadsError(
                f"record {key}: unknown statistic '{unknown[0]}'{did_you_mean(unknown[0], STATISTICS)}; records hold "
                f"{', '.join(STATISTICS)}"
            )
        missing = [name for name in REQUIRED_STATISTICS if stats.get(name) is None]
        if missing:
            raise VisheadsError(
                f"record {key}: statistics {', '.join(missing)} are missing; every record needs {', '.join(REQUIRED_STATISTICS)}"
            )
        checked = {}
        for name, value in stats.items():
            if value is None and name in OPTIONAL_STATISTICS:
                continue
            array = np.asarray(value)
            if array.shape != (self.n_layers, self.n_heads):
                raise VisheadsError(
                    f"record {key}: statistic '{name}' has shape {array.shape}; this run has {self.n_layers} layers x "
                    f"{self.n_heads} heads, so it must be ({self.n_layers}, {self.n_heads})"
                )
            dtype = STATISTICS[name]
            if dtype.kind == "i":
                if array.dtype.kind not in "iu":
                    raise VisheadsError(f"record {key}: statistic '{name}' holds token indices and must be integers, got {array.dtype}")
                if array.size and (array.min() < 0 or array.max() >= max(n_image_tokens, 1)):
                    raise VisheadsError(
                        f"record {key}: statistic '{name}' must index the {n_image_tokens} image tokens, got values "
                        f"{array.min()}..{array.max()}"
                    )
            elif array.dtype.kind != "f":
                raise VisheadsError(f"record {key}: statistic '{name}' must hold floating-point values, got {array.dtype}")
            checked[name] = array.astype(dtype, copy=False)
        return checked

    def _checked_lens(self, key: RecordKey, lens: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not self.logit_lens:
            if lens is not None:
                raise VisheadsError(
                    f'record {key}: this run records no logit lens (run.json has no "logit_lens": true), but a lens was given'
                )
            return None
        if lens is None:
            raise VisheadsError(f"record {key}: this run records the logit lens; every record needs it")
        expected = {*LENS_STATISTICS, "answer_token"}
        if set(lens) != expected:
            raise VisheadsError(f"record {key}: the logit lens needs exactly {', '.join(sorted(expected))}, got {', '.join(sorted(lens))}")
        token = lens["answer_token"]
        token = token.item() if isinstance(token, np.ndarray) and token.shape == () else token
        checked: dict[str, Any] = {"answer_token": _count(key, "the lens's answer_token", token)}
        for name, dtype in LENS_STATISTICS.items():
            array = np.asarray(lens[name])
            if array.shape != (self.n_layers + 1,):
                raise VisheadsError(
                    f"record {key}: lens statistic '{name}' has shape {array.shape}; it must be ({self.n_layers + 1},): "
                    "the embeddings, then after each of the run's layers"
                )
            if array.dtype.kind not in ("iu" if dtype.kind == "i" else "f"):
                raise VisheadsError(
                    f"record {key}: lens statistic '{name}' must hold "
                    f"{'integers' if dtype.kind == 'i' else 'floating-point values'}, got {array.dtype}"
                )
            checked[name] = array.astype(dtype, copy=False)
        return checked

    def flush(self) -> Path | None:
        """Write the buffered records as a new shard now; the shard's path, or None if nothing was buffered."""
        if not self._buffer:
            return None
        header = {"format": FORMAT_VERSION, "run": run_identity(self.run), "rank": self.rank, "written_at_ns": time.time_ns()}
        table = self._table().replace_schema_metadata({METADATA_KEY: json.dumps(header).encode()})

        def write(handle: Any) -> None:
            pq.write_table(
                table,
                handle,
                compression="zstd",
                use_dictionary=["task", "split"],
                # Splitting the bytes of each value into streams lets zstd find the shared exponent bytes.
                column_encoding={f"{name}.list.element": "BYTE_STREAM_SPLIT" for name in self._list_columns()},
                write_statistics=list(KEY_COLUMNS),
                write_page_checksum=True,  # a damaged shard fails to read instead of reading wrong values
            )

        while not _write_new(path := self._shard_dir / shard_name(self.rank, self._next_number), write):
            self._next_number += 1  # another writer of the same rank took that name
        self._next_number += 1
        self._buffer.clear()
        return path

    def _table(self) -> pa.Table:
        rows = self._buffer
        size = self.n_layers * self.n_heads
        columns: dict[str, pa.Array] = {
            "task": pa.array([row.key.task for row in rows], pa.string()),
            "split": pa.array([row.key.split for row in rows], pa.string()),
            "doc_id": pa.array([row.key.doc_id for row in rows], pa.int64()),
            "n_keys": pa.array([row.n_keys for row in rows], pa.int32()),
            "n_image_tokens": pa.array([row.n_image_tokens for row in rows], pa.int32()),
            "n_region_tokens": pa.array([row.n_region_tokens for row in rows], pa.int32()),
            "bbox": pa.array([row.bbox for row in rows], pa.list_(pa.float64(), 4)),
            "image_width": pa.array([row.image_size and row.image_size[0] for row in rows], pa.int32()),
            "image_height": pa.array([row.image_size and row.image_size[1] for row in rows], pa.int32()),
            "answer": pa.array([row.answer for row in rows], pa.string()),
        }
        for name, dtype in STATISTICS.items():
            present = np.array([name in row.stats for row in rows])
            values = np.zeros((len(rows), size), dtype)  # (sample, layer * head), layer-major
            for i in np.flatnonzero(present):
                values[i] = rows[i].stats[name].reshape(size)
            columns[name] = pa.FixedSizeListArray.from_arrays(
                pa.array(values.reshape(-1)), size, mask=None if present.all() else pa.array(~present)
            )
        if self.logit_lens:
            lenses = [row.lens for row in rows if row.lens is not None]
            if len(lenses) != len(rows):
                raise VisheadsError("a record without the logit lens in a run that records it")  # add() checks every record
            columns[LENS_TOKEN_COLUMN] = pa.array([lens["answer_token"] for lens in lenses], pa.int32())
            for name, dtype in LENS_STATISTICS.items():
                values = np.stack([lens[name] for lens in lenses]).astype(dtype, copy=False)  # (sample, n_layers + 1)
                columns[lens_column(name)] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), self.n_layers + 1)
        return pa.table(columns, schema=self._schema)

    def _list_columns(self) -> list[str]:
        """The columns of per-layer values, which byte-stream splitting compresses."""
        return [*STATISTICS, *(lens_column(name) for name in LENS_STATISTICS if self.logit_lens)]

    def close(self) -> None:
        """Write what is buffered; the writer takes no more records."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()  # also on an exception: keep what was computed; the exception goes on


def _count(key: RecordKey, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**31:
        raise VisheadsError(f"record {key}: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def _checked_bbox(key: RecordKey, bbox: Sequence[float] | None) -> list[float] | None:
    if bbox is None:
        return None
    try:
        values = [float(v) for v in bbox] if not isinstance(bbox, str) else []
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] < 0 or values[3] < 0:
        raise VisheadsError(f"record {key}: bbox must be [x, y, w, h] in pixels (4 finite numbers, w and h >= 0) or None, got {bbox!r}")
    return values


def _checked_image_size(key: RecordKey, image_size: Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if (
        not isinstance(image_size, (Sequence, np.ndarray))
        or len(image_size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 < v < 2**31 for v in image_size)
    ):
        raise VisheadsError(
            f"record {key}: image_size must be (width, height) in pixels, two positive integers, or None, got {image_size!r}"
        )
    return int(image_size[0]), int(image_size[1])


def _checked_answer(key: RecordKey, answer: Any) -> str:
    if not isinstance(answer, str):
        raise VisheadsError(f"record {key}: answer must be the generated text (str), got {answer!r}")
    return answer
