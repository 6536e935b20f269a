"""Record folders: exact round trips, resume after a crash, per-rank merging, duplicates, atomic shards,
lazy reading, size on disk, and a clear error for every kind of bad input."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fixtures.synthetic_records import write_synthetic_records
from visheads_eval.errors import VisheadsError
from visheads_eval.records import STATISTICS, RecordKey, RecordWriter, load_records
from visheads_eval.records import reader as reader_module
from visheads_eval.records import writer as writer_module

L, H = 3, 4
RUN = {"model": "tiny/llava", "model_args": "pretrained=tiny/llava", "position": "last_prompt", "mask": None, "seeds": {"mask": 0}}


def _stats(rng: np.random.Generator, region: bool = True) -> dict[str, np.ndarray]:
    """Full-precision float32 values (every mantissa bit used) and token indices, shaped (layer, head)."""
    image = rng.random((L, H)).astype(np.float32)
    stats = {
        "image_attn": image,
        "text_attn": (1 - image).astype(np.float32),
        "concentration": rng.random((L, H)).astype(np.float32),
        "image_argmax": rng.integers(0, 10, (L, H)).astype(np.int32),
    }
    if region:
        stats["region_attn"] = (image * rng.random((L, H))).astype(np.float32)
    return stats


def _add(writer: RecordWriter, key: RecordKey, stats: dict[str, np.ndarray], answer: str = "3") -> None:
    region = "region_attn" in stats
    writer.add(
        key,
        stats,
        n_keys=40,
        n_image_tokens=10,
        n_region_tokens=2 if region else 0,
        bbox=[1.5, 2.0, 30.0, 40.25] if region else None,
        image_size=(640, 480) if region else None,
        answer=answer,
    )


def _keys(n: int, task: str = "pointqa_visual_general") -> list[RecordKey]:
    return [RecordKey(task, "test", doc_id) for doc_id in range(n)]


def _bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).view(np.uint32 if array.dtype == np.float32 else array.dtype)


# Round trip ---------------------------------------------------------------------------------------


def test_round_trip_is_bit_exact_and_aligned_with_meta(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    written = {}
    keys = _keys(10) + _keys(3, task="pope")
    order = rng.permutation(len(keys))  # written out of key order, over several shards
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, flush_every=4) as writer:
        for i in order:
            key = keys[i]
            written[key] = _stats(rng, region=key.doc_id % 3 != 0)
            written[key]["image_attn"][0, 0] = np.float32(1e-40)  # a subnormal survives too
            _add(writer, key, written[key], answer=f"answer é {key.doc_id}")
    records = load_records(tmp_path)

    expected_order = sorted(keys, key=lambda k: (k.task, k.split, k.doc_id))
    assert list(zip(records.meta["task"], records.meta["split"], records.meta["doc_id"], strict=False)) == [
        (k.task, k.split, k.doc_id) for k in expected_order
    ]
    assert records.tasks == ["pointqa_visual_general", "pope"]
    assert records.run["model"] == "tiny/llava" and records.run["seeds"] == {"mask": 0}
    assert (records.n_layers, records.n_heads) == (L, H)
    for name, dtype in STATISTICS.items():
        array = records.stat(name)
        assert array.shape == (len(keys), L, H) and array.dtype == dtype
        for row, key in enumerate(expected_order):
            if name in written[key]:
                np.testing.assert_array_equal(_bits(array[row]), _bits(written[key][name]))
            else:
                assert np.isnan(array[row]).all()
    meta = records.meta.set_index("doc_id").loc[lambda m: m["task"] == "pointqa_visual_general"]
    assert meta.loc[1, "answer"] == "answer é 1"
    assert list(meta.loc[1, "bbox"]) == [1.5, 2.0, 30.0, 40.25] and meta.loc[0, "bbox"] is None
    assert (meta.loc[1, "image_width"], meta.loc[1, "image_height"]) == (640, 480)
    assert meta["image_width"].isna().sum() == 4  # doc_ids 0, 3, 6, 9 have no region and no image size
    assert (meta.loc[1, "n_keys"], meta.loc[1, "n_image_tokens"], meta.loc[1, "n_region_tokens"]) == (40, 10, 2)


def test_statistics_are_stored_layer_major_as_the_contract_says(tmp_path: Path) -> None:
    stats = _stats(np.random.default_rng(2))
    stats["image_attn"] = np.arange(L * H, dtype=np.float32).reshape(L, H) / 100  # value = (layer * H + head) / 100
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H) as writer:
        _add(writer, RecordKey("t", "test", 0), stats)
    (shard,) = (tmp_path / "shards").iterdir()
    assert shard.name == "rank0-00000.parquet"
    flat = pq.read_table(shard, columns=["image_attn"])["image_attn"][0].as_py()  # read with plain pyarrow
    assert flat == [np.float32(i / 100) for i in range(L * H)]
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["n_layers"], run["n_heads"], run["model"], run["position"]) == (L, H, "tiny/llava", "last_prompt")


def test_float64_input_is_stored_as_float32(tmp_path: Path) -> None:
    stats = _stats(np.random.default_rng(3))
    stats["concentration"] = np.full((L, H), 0.1, dtype=np.float64)
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H) as writer:
        _add(writer, RecordKey("t", "test", 0), stats)
    assert load_records(tmp_path).stat("concentration")[0, 1, 2] == np.float32(0.1)


# Resume, ranks, duplicates ------------------------------------------------------------------------


def test_resume_after_a_crash_has_every_key_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    keys = _keys(23)
    first_values = {}
    with pytest.raises(RuntimeError, match="out of memory"):
        with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, flush_every=5) as writer:
            for key in keys[:12]:
                first_values[key] = _stats(rng)
                _add(writer, key, first_values[key])
            raise RuntimeError("CUDA out of memory")  # 2 of the 12 are still buffered when this happens
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["rank0-00000.parquet", "rank0-00001.parquet", "rank0-00002.parquet"]

    added = []
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, flush_every=5) as writer:
        assert len(writer) == 12
        for key in keys:
            if key not in writer:
                _add(writer, key, _stats(rng))
                added.append(key)
    assert added == keys[12:]
    assert sorted(p.name for p in (tmp_path / "shards").iterdir())[-3:] == [
        "rank0-00003.parquet",
        "rank0-00004.parquet",
        "rank0-00005.parquet",
    ]

    records = load_records(tmp_path)
    assert list(records.meta["doc_id"]) == list(range(23)) and len(records.duplicates) == 0
    np.testing.assert_array_equal(records.stat("image_attn")[11], first_values[keys[11]]["image_attn"])


def test_ranks_write_their_own_shards_and_load_merges_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    keys = _keys(10)
    values = {key: _stats(rng) for key in keys}
    writers = [RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, rank=rank, flush_every=2) for rank in range(3)]
    for i, key in enumerate(keys):  # lmms-eval gives rank r the docs r, r + 3, ...
        _add(writers[i % 3], key, values[key])
    for writer in writers:
        writer.close()
    names = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert names == [
        "rank0-00000.parquet",
        "rank0-00001.parquet",
        "rank1-00000.parquet",
        "rank1-00001.parquet",
        "rank2-00000.parquet",
        "rank2-00001.parquet",
    ]
    records = load_records(tmp_path)
    assert list(records.meta["doc_id"]) == list(range(10))
    np.testing.assert_array_equal(records.stat("region_attn"), np.stack([values[key]["region_attn"] for key in keys]))


def _record_in_process(directory: str, rank: int, doc_ids: list[int]) -> None:
    with RecordWriter(directory, run=RUN, n_layers=L, n_heads=H, rank=rank, flush_every=3) as writer:
        for doc_id in doc_ids:
            stats = _stats(np.random.default_rng(doc_id))
            _add(writer, RecordKey("t", "test", doc_id), stats)


def test_processes_record_concurrently_into_one_folder(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_record_in_process, args=(str(tmp_path), rank, list(range(rank, 20, 2)))) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    records = load_records(tmp_path)
    assert list(records.meta["doc_id"]) == list(range(20))
    np.testing.assert_array_equal(records.stat("concentration")[7], _stats(np.random.default_rng(7))["concentration"])


def test_writers_of_the_same_rank_never_overwrite_each_other(tmp_path: Path) -> None:
    first = RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, rank=0)
    second = RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, rank=0)  # e.g. two runs started on one folder
    _add(first, RecordKey("a", "test", 0), _stats(np.random.default_rng(0)))
    _add(second, RecordKey("b", "test", 0), _stats(np.random.default_rng(1)))
    assert first.flush().name == "rank0-00000.parquet"
    assert second.flush().name == "rank0-00001.parquet"  # both opened when only 00000 was free
    assert load_records(tmp_path).tasks == ["a", "b"]


def test_file_systems_without_hard_links_still_publish_without_overwriting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(writer_module.os, "link", no_links)
    first = RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H)
    second = RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H)
    _add(first, RecordKey("a", "test", 0), _stats(np.random.default_rng(0)))
    _add(second, RecordKey("b", "test", 0), _stats(np.random.default_rng(1)))
    first.close()
    second.close()
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["rank0-00000.parquet", "rank0-00001.parquet"]
    assert len(load_records(tmp_path)) == 2


def test_duplicates_keep_the_earliest_written_copy_and_are_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    early, late, same = _stats(rng), _stats(rng), _stats(rng)
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, rank=1) as writer:  # written first, higher rank
        _add(writer, RecordKey("t", "test", 0), early, answer="2")
        _add(writer, RecordKey("t", "test", 1), same, answer="5")
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, rank=0) as writer:  # later, and it does not check `in`
        _add(writer, RecordKey("t", "test", 0), late, answer="4")
        _add(writer, RecordKey("t", "test", 1), same, answer="5")
        _add(writer, RecordKey("t", "test", 2), late, answer="1")
    with pytest.warns(
        UserWarning,
        match="dropped 2 extra copies of samples recorded more than once, keeping the earliest shard's copy \\(1 differ in answer",
    ):
        records = load_records(tmp_path)
    assert list(records.meta["doc_id"]) == [0, 1, 2]
    assert list(records.meta["answer"]) == ["2", "5", "1"]
    np.testing.assert_array_equal(records.stat("image_attn")[0], early["image_attn"])
    np.testing.assert_array_equal(records.stat("image_attn")[2], late["image_attn"])
    duplicates = records.duplicates.sort_values("doc_id")
    assert list(duplicates["doc_id"]) == [0, 1]
    assert list(duplicates["kept_shard"]) == ["rank1-00000.parquet"] * 2
    assert list(duplicates["dropped_shard"]) == ["rank0-00000.parquet"] * 2
    assert list(duplicates["identical"]) == [False, True]


# Selection and lazy reading -----------------------------------------------------------------------


def test_filter_selects_tasks_and_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = {}
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H) as writer:
        for key in _keys(3, "pope") + _keys(4, "seedbench") + [RecordKey("seedbench", "dev", 9)]:
            values[key] = _stats(rng)
            _add(writer, key, values[key])
    records = load_records(tmp_path)
    seed = records.filter(tasks="seedbench")
    assert len(seed) == 5 and seed.tasks == ["seedbench"]
    np.testing.assert_array_equal(
        seed.stat("image_attn"), np.stack([values[key]["image_attn"] for key in [RecordKey("seedbench", "dev", 9), *_keys(4, "seedbench")]])
    )
    test_only = records.filter(tasks=["pope", "seedbench"], splits="test")
    assert len(test_only) == 7 and set(test_only.meta["split"]) == {"test"}
    assert len(seed.filter(splits="dev")) == 1
    with pytest.raises(
        VisheadsError, match="no task 'seedbenc' in the records of .*did you mean 'seedbench'.*tasks present: pope, seedbench"
    ):
        records.filter(tasks="seedbenc")


def test_statistics_are_read_lazily_one_column_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_synthetic_records(tmp_path, model="m", n_layers=L, n_heads=H, n_samples=10, flush_every=4)
    requested: list[list[str]] = []
    real_read_shard = reader_module.read_shard

    def spy(shard: object, run: dict, columns: list[str]) -> object:
        requested.append(list(columns))
        return real_read_shard(shard, run, columns)

    monkeypatch.setattr(reader_module, "read_shard", spy)
    records = load_records(tmp_path)
    assert len(requested) == 3 and not any(set(columns) & set(STATISTICS) for columns in requested)
    requested.clear()
    records.stat("image_attn")
    records.stat("image_attn")
    records.filter(tasks="pointqa_visual_general").stat("image_attn")
    assert requested == [["image_attn"]] * 3  # one read of one column per shard, then kept
    with pytest.raises(ValueError, match="read-only"):
        records.stat("image_attn")[0, 0, 0] = 1


# Size ---------------------------------------------------------------------------------------------


def test_a_40_by_40_model_needs_megabytes_not_gigabytes(tmp_path: Path) -> None:
    n_samples = 192
    write_synthetic_records(tmp_path, model="m", n_layers=40, n_heads=40, n_samples=n_samples, seed=0)
    size = sum(path.stat().st_size for path in (tmp_path / "shards").iterdir())
    raw = n_samples * 40 * 40 * 4 * len(STATISTICS)  # every value as a plain 4-byte number
    assert size < 0.8 * raw  # float32 and compressed, on realistic (full-precision) statistics
    assert size / n_samples * 5700 < 150e6  # so the paper's 5,700 samples need < 150 MB (its own code: ~12 GB)


# Atomicity ----------------------------------------------------------------------------------------


def test_a_failed_shard_write_leaves_nothing_visible_and_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write_table = writer_module.pq.write_table

    def write_half_then_fail(table: object, where: object, **kwargs: object) -> None:
        where.write(b"PAR1" + b"\0" * 1000)  # a partial file
        raise OSError(errno.ENOSPC, "No space left on device")

    rng = np.random.default_rng(8)
    values = [_stats(rng) for _ in range(3)]
    writer = RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, flush_every=3)
    monkeypatch.setattr(writer_module.pq, "write_table", write_half_then_fail)
    _add(writer, RecordKey("t", "test", 0), values[0])
    _add(writer, RecordKey("t", "test", 1), values[1])
    with pytest.raises(OSError, match="No space left"):
        _add(writer, RecordKey("t", "test", 2), values[2])
    assert list((tmp_path / "shards").iterdir()) == []  # no shard, no temporary file
    with pytest.raises(VisheadsError, match="holds no samples"):
        load_records(tmp_path)

    monkeypatch.setattr(writer_module.pq, "write_table", real_write_table)  # the disk has room again
    writer.close()
    records = load_records(tmp_path)
    np.testing.assert_array_equal(records.stat("text_attn"), np.stack([v["text_attn"] for v in values]))


def test_temporary_files_of_writes_in_progress_are_not_read(tmp_path: Path) -> None:
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H) as writer:
        _add(writer, RecordKey("t", "test", 0), _stats(np.random.default_rng(0)))
    (tmp_path / "shards" / ".rank0-00001.parquet.123-abcd.tmp").write_bytes(b"PAR1 half written")
    assert len(load_records(tmp_path)) == 1


# Bad input ----------------------------------------------------------------------------------------


def _one_sample_folder(directory: Path, run: dict = RUN, n_layers: int = L, n_heads: int = H) -> Path:
    with RecordWriter(directory, run=run, n_layers=n_layers, n_heads=n_heads) as writer:
        rng = np.random.default_rng(0)
        writer.add(
            RecordKey("t", "test", 0),
            {
                name: rng.random((n_layers, n_heads)).astype(np.float32)
                if name != "image_argmax"
                else np.zeros((n_layers, n_heads), np.int32)
                for name in STATISTICS
            },
            n_keys=40,
            n_image_tokens=10,
            n_region_tokens=2,
            answer="1",
        )
    return directory


def test_a_folder_that_is_not_a_record_folder(tmp_path: Path) -> None:
    with pytest.raises(VisheadsError, match=f"record folder {tmp_path / 'nope'} does not exist"):
        load_records(tmp_path / "nope")
    with pytest.raises(VisheadsError, match=f"{tmp_path} is not a record folder \\(it has no run.json\\)"):
        load_records(tmp_path)
    folder = _one_sample_folder(tmp_path / "rec")
    with pytest.raises(VisheadsError, match="has no run.json\\); did you mean its parent .*rec"):
        load_records(folder / "shards")
    (folder / "run.json").write_text("{not json")
    with pytest.raises(VisheadsError, match="run.json is not valid JSON"):
        load_records(folder)


def test_an_empty_record_set(tmp_path: Path) -> None:
    RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H).close()
    assert (tmp_path / "run.json").is_file()
    with pytest.raises(VisheadsError, match=f"record folder {tmp_path} holds no samples"):
        load_records(tmp_path)


def test_truncated_and_corrupted_shards_are_named(tmp_path: Path) -> None:
    folder = _one_sample_folder(tmp_path / "a")
    (shard,) = (folder / "shards").iterdir()
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(VisheadsError, match=f"record shard {shard} is truncated or corrupted .*delete it and resume"):
        load_records(folder)
    with pytest.raises(VisheadsError, match=f"record shard {shard} is truncated or corrupted"):
        RecordWriter(folder, run=RUN, n_layers=L, n_heads=H)  # resuming onto it fails the same way

    folder = _one_sample_folder(tmp_path / "b")
    (shard,) = (folder / "shards").iterdir()
    records = load_records(folder)
    data = bytearray(shard.read_bytes())
    column = pq.ParquetFile(shard).metadata.row_group(0).column(list(STATISTICS).index("concentration") + 10)
    middle = column.data_page_offset + column.total_compressed_size // 2
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])  # damage a statistic's data page
    shard.write_bytes(bytes(data))
    with pytest.raises(VisheadsError, match=f"record shard {shard} is truncated or corrupted"):
        records.stat("concentration")


def test_shards_of_another_model_are_refused(tmp_path: Path) -> None:
    folder = _one_sample_folder(tmp_path / "a")
    other_shape = _one_sample_folder(tmp_path / "b", n_layers=2, n_heads=6)
    shutil.copy(next((other_shape / "shards").iterdir()), folder / "shards" / "rank1-00000.parquet")
    with pytest.raises(
        VisheadsError,
        match="rank1-00000.parquet was recorded by another run than .*shard vs run.json: n_layers 2 vs 3, n_heads 6 vs 4.*own",
    ):
        load_records(folder)

    folder = _one_sample_folder(tmp_path / "c")
    other_model = _one_sample_folder(tmp_path / "d", run={**RUN, "model": "other/llava"})
    shutil.copy(next((other_model / "shards").iterdir()), folder / "shards" / "rank7-00000.parquet")
    with pytest.raises(VisheadsError, match="rank7-00000.parquet was recorded by another run .*model 'other/llava' vs 'tiny/llava'"):
        load_records(folder)

    pq.write_table(
        pq.read_table(folder / "shards" / "rank0-00000.parquet").replace_schema_metadata({}), folder / "shards" / "rank7-00000.parquet"
    )
    with pytest.raises(VisheadsError, match="rank7-00000.parquet is not a visheads record shard"):
        load_records(folder)


def test_a_different_run_cannot_resume_into_a_folder(tmp_path: Path) -> None:
    _one_sample_folder(tmp_path)
    for change, said in (
        ({"model": "other/llava"}, "model 'other/llava' vs 'tiny/llava'"),
        ({"position": "answer"}, "position 'answer' vs 'last_prompt'"),
        ({"mask": {"name": "early_top20", "heads": ["L1H2"]}}, "mask"),
    ):
        with pytest.raises(
            VisheadsError,
            match=f"holds the records of a different run \\(this run vs the folder's: {said}.*record this run into a new folder",
        ):
            RecordWriter(tmp_path, run={**RUN, **change}, n_layers=L, n_heads=H)
    with pytest.raises(VisheadsError, match="n_layers 4 vs 3"):
        RecordWriter(tmp_path, run=RUN, n_layers=L + 1, n_heads=H)
    resumed = RecordWriter(tmp_path, run={**RUN, "versions": {"torch": "other"}}, n_layers=L, n_heads=H)  # same run
    assert RecordKey("t", "test", 0) in resumed


def test_unknown_statistic_name_when_reading(tmp_path: Path) -> None:
    records = load_records(_one_sample_folder(tmp_path))
    with pytest.raises(VisheadsError, match="unknown statistic 'image_atn' \\(did you mean 'image_attn'\\?\\)"):
        records.stat("image_atn")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stats": {"image_atn": 0}}, "unknown statistic 'image_atn' \\(did you mean 'image_attn'"),
        ({"stats": {"image_attn": None}}, "statistics image_attn are missing"),
        (
            {"stats": {"text_attn": np.zeros((H, L), np.float32)}},
            "'text_attn' has shape \\(4, 3\\); this run has 3 layers x 4 heads, so it must be \\(3, 4\\)",
        ),
        ({"stats": {"image_argmax": np.zeros((L, H), np.float32)}}, "'image_argmax' holds token indices and must be integers"),
        ({"stats": {"image_argmax": np.full((L, H), 10)}}, "must index the 10 image tokens, got values 10..10"),
        ({"stats": {"concentration": np.zeros((L, H), np.int64)}}, "'concentration' must hold floating-point values"),
        ({"n_image_tokens": 50}, "n_region_tokens <= n_image_tokens <= n_keys"),
        ({"n_keys": -1}, "n_keys must be a non-negative integer"),
        ({"bbox": [1, 2, 3]}, "bbox must be \\[x, y, w, h\\]"),
        ({"image_size": (640.5, 480)}, "image_size must be \\(width, height\\)"),
        ({"answer": 3}, "answer must be the generated text"),
    ],
)
def test_bad_records_are_refused_on_add(tmp_path: Path, change: dict, message: str) -> None:
    stats = _stats(np.random.default_rng(0))
    stats.update(change.pop("stats", {}))
    arguments = dict(n_keys=40, n_image_tokens=10, n_region_tokens=2, bbox=None, image_size=None, answer="3") | change
    with RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H) as writer:
        with pytest.raises(VisheadsError, match=f"record t/test/0: .*{message}"):
            writer.add(RecordKey("t", "test", 0), stats, **arguments)
        assert RecordKey("t", "test", 0) not in writer
    assert not os.listdir(tmp_path / "shards")


def test_bad_writer_arguments(tmp_path: Path) -> None:
    with pytest.raises(VisheadsError, match="the run info of a record folder needs position"):
        RecordWriter(tmp_path, run={"model": "m"}, n_layers=L, n_heads=H)
    with pytest.raises(VisheadsError, match="must be JSON-serialisable"):
        RecordWriter(tmp_path, run={**RUN, "seeds": {1, 2}}, n_layers=L, n_heads=H)
    with pytest.raises(VisheadsError, match="the run info says n_heads=8 but the writer was opened with n_heads=4"):
        RecordWriter(tmp_path, run={**RUN, "n_heads": 8}, n_layers=L, n_heads=H)
    with pytest.raises(VisheadsError, match="needs an integer rank >= 0"):
        RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H, rank=-1)
    with pytest.raises(VisheadsError, match="integer doc_id"):
        RecordKey("t", "test", "17")
    writer = RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H)
    writer.close()
    with pytest.raises(VisheadsError, match="is closed"):
        _add(writer, RecordKey("t", "test", 0), _stats(np.random.default_rng(0)))


# Logit lens -----------------------------------------------------------------------------------------

LENS_RUN = {**RUN, "logit_lens": True}


def _lens(rng: np.random.Generator, answer_token: int = 7) -> dict[str, np.ndarray | int]:
    """A sound lens by its definitions: the last reading is the answer (rank 0, top-1, KL 0)."""
    rank = rng.integers(0, 50, L + 1).astype(np.int32)
    top1 = rng.integers(0, 100, L + 1).astype(np.int32)
    kl = rng.random(L + 1).astype(np.float32)
    rank[-1], top1[-1], kl[-1] = 0, answer_token, 0.0
    return {
        "answer_logprob": -rng.random(L + 1).astype(np.float32) * 5,
        "answer_rank": rank,
        "top1": top1,
        "entropy": rng.random(L + 1).astype(np.float32),
        "kl_to_final": kl,
        "answer_token": answer_token,
    }


def test_lens_round_trip_is_exact_and_old_folders_have_no_lens(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    written = {}
    with RecordWriter(tmp_path / "lens", run=LENS_RUN, n_layers=L, n_heads=H, flush_every=2) as writer:
        for key in _keys(5):
            written[key] = _lens(rng, answer_token=key.doc_id + 3)
            writer.add(key, _stats(rng, region=False), n_keys=40, n_image_tokens=10, n_region_tokens=0, answer="3", lens=written[key])
    records = load_records(tmp_path / "lens")
    assert records.has_lens and list(records.meta["lens_answer_token"]) == [3, 4, 5, 6, 7]
    for name in ("answer_logprob", "answer_rank", "top1", "entropy", "kl_to_final"):
        expected = np.stack([written[key][name] for key in _keys(5)])
        got = records.lens(name)
        assert got.shape == (5, L + 1) and got.dtype == expected.dtype
        np.testing.assert_array_equal(_bits(got), _bits(expected), err_msg=name)
    np.testing.assert_array_equal(records.filter(tasks="pointqa_visual_general").lens("top1"), records.lens("top1"))
    from visheads_eval.records.validate import value_problems

    assert value_problems(records) == []

    with RecordWriter(tmp_path / "plain", run=RUN, n_layers=L, n_heads=H) as writer:
        _add(writer, _keys(1)[0], _stats(rng))
    plain = load_records(tmp_path / "plain")
    assert not plain.has_lens and "lens_answer_token" not in plain.meta
    with pytest.raises(VisheadsError, match="carry no logit lens; record with logit_lens=true"):
        plain.lens("answer_rank")
    with pytest.raises(VisheadsError, match="Records.lens\\('entropy'\\)"):
        records.stat("entropy")
    with pytest.raises(VisheadsError, match="unknown logit-lens statistic 'rank'"):
        records.lens("rank")


def test_lens_and_no_lens_runs_do_not_mix(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    key = _keys(1)[0]
    with RecordWriter(tmp_path, run={**RUN, "logit_lens": False}, n_layers=L, n_heads=H) as writer:
        with pytest.raises(VisheadsError, match="records no logit lens"):
            writer.add(key, _stats(rng), n_keys=40, n_image_tokens=10, n_region_tokens=2, answer="3", lens=_lens(rng))
        _add(writer, key, _stats(rng))
    # run.json from before the lens existed has no logit_lens field: it is a run without the lens
    run = json.loads((tmp_path / "run.json").read_text())
    del run["logit_lens"]
    (tmp_path / "run.json").write_text(json.dumps(run))
    RecordWriter(tmp_path, run=RUN, n_layers=L, n_heads=H).close()
    with pytest.raises(VisheadsError, match="logit_lens True vs False"):
        RecordWriter(tmp_path, run=LENS_RUN, n_layers=L, n_heads=H)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda lens: lens.pop("entropy"), "the logit lens needs exactly"),
        (lambda lens: lens.update(top1=np.zeros(L, np.int32)), r"lens statistic 'top1' has shape \(3,\); it must be \(4,\)"),
        (lambda lens: lens.update(answer_rank=np.zeros(L + 1, np.float32)), "'answer_rank' must hold integers"),
        (lambda lens: lens.update(answer_token=-1), "answer_token must be a non-negative integer"),
    ],
)
def test_bad_lens_is_refused_in_one_line(tmp_path: Path, change, message: str) -> None:
    rng = np.random.default_rng(6)
    lens = _lens(rng)
    change(lens)
    with RecordWriter(tmp_path, run=LENS_RUN, n_layers=L, n_heads=H) as writer:
        with pytest.raises(VisheadsError, match=message):
            writer.add(_keys(1)[0], _stats(rng), n_keys=40, n_image_tokens=10, n_region_tokens=2, answer="3", lens=lens)
        with pytest.raises(VisheadsError, match="records the logit lens; every record needs it"):
            writer.add(_keys(1)[0], _stats(rng), n_keys=40, n_image_tokens=10, n_region_tokens=2, answer="3")


def test_validation_catches_a_lens_whose_last_reading_is_not_the_answer(tmp_path: Path) -> None:
    from visheads_eval.records.validate import value_problems

    rng = np.random.default_rng(7)
    with RecordWriter(tmp_path, run=LENS_RUN, n_layers=L, n_heads=H) as writer:
        for key in _keys(3):
            lens = _lens(rng)
            if key.doc_id == 1:
                lens["answer_rank"][-1] = 2  # the model's own output cannot rank its answer below the top
            if key.doc_id == 2:
                lens["answer_logprob"][0] = 0.5  # a probability above one
            writer.add(key, _stats(rng), n_keys=40, n_image_tokens=10, n_region_tokens=2, answer="3", lens=lens)
    problems = value_problems(load_records(tmp_path))
    assert problems == [
        "1 of 3 samples have a lens answer_logprob above 0 or NaN (first: pointqa_visual_general/test/2)",
        "1 of 3 samples have a last lens reading that is not the model's answer (rank 0, top-1 = answer token, KL 0) (first: "
        "pointqa_visual_general/test/1)",
    ]
