"""``visheads records``: the summary of sound folders, recorded values that break the statistics'
definitions, and unreadable folders, each with its exit status."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visheads_eval.cli import main
from visheads_eval.records import RecordKey, RecordWriter, load_records
from visheads_eval.records.validate import value_problems

L, H = 2, 3
RUN = {"model": "tiny/llava", "position": "answer", "mask": {"name": "early_top20", "heads": ["L0H1"]}}


def _sound(rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = rng.uniform(0.1, 0.9, (L, H)).astype(np.float32)
    return {
        "image_attn": image,
        "text_attn": (1 - image).astype(np.float32),
        "region_attn": (image / 2).astype(np.float32),
        "concentration": rng.random((L, H)).astype(np.float32),
        "image_argmax": rng.integers(0, 5, (L, H)),
    }


def _folder(directory: Path, broken: dict[int, dict[str, float]] | None = None) -> Path:
    """Four pope samples (doc 3 without a region) and one seedbench sample; ``broken`` sets values of pope docs."""
    rng = np.random.default_rng(0)
    with RecordWriter(directory, run=RUN, n_layers=L, n_heads=H, rank=1, flush_every=2) as writer:
        for key in [RecordKey("pope", "test", i) for i in range(4)] + [RecordKey("seedbench", "test", 0)]:
            stats = _sound(rng)
            if key.doc_id == 3:
                del stats["region_attn"]
            for name, value in (broken or {}).get(key.doc_id, {}).items() if key.task == "pope" else ():
                stats[name][1, 2] = value
            writer.add(key, stats, n_keys=20, n_image_tokens=5, n_region_tokens=1, answer="yes")
    return directory


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def test_a_sound_folder_is_summarised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path / "rec")
    assert _run(["records", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{folder}: tiny/llava, 2 x 3 heads, position answer, mask early_top20"
    assert out[1].startswith("  5 samples in 3 shards from 1 rank, ")
    assert out[2:] == ["  pope/test: 4 samples, 3 with a region", "  seedbench/test: 1 samples, 1 with a region", "  values: sound"]


def test_values_that_break_the_definitions_are_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(
        tmp_path / "rec", broken={0: {"image_attn": np.nan}, 1: {"text_attn": 0.5}, 2: {"concentration": 1.5, "region_attn": 0.95}}
    )
    problems = value_problems(load_records(folder))
    assert problems == [
        "1 of 5 samples have image_attn outside [0, 1] or NaN (first: pope/test/0)",
        "1 of 5 samples have concentration outside [0, 1] or NaN (first: pope/test/2)",
        "2 of 5 samples have image_attn + text_attn differing from 1 by more than 0.01 (first: pope/test/0)",
        "2 of 5 samples have region_attn outside [0, image_attn] or NaN (first: pope/test/0)",
    ]
    assert _run(["records", str(folder)]) == 1
    assert "  values: 4 problems\n    1 of 5 samples have image_attn" in capsys.readouterr().out


def test_an_unreadable_folder_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path / "rec")
    shard = sorted((folder / "shards").iterdir())[0]
    shard.write_bytes(shard.read_bytes()[:100])
    assert _run(["records", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"visheads: error: record shard {shard} is truncated or corrupted")


def test_duplicates_are_reported_but_not_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path / "rec")
    with RecordWriter(folder, run=RUN, n_layers=L, n_heads=H, rank=0) as writer:
        writer.add(
            RecordKey("pope", "test", 0), _sound(np.random.default_rng(9)), n_keys=20, n_image_tokens=5, n_region_tokens=1, answer="no"
        )
    with pytest.warns(UserWarning, match="dropped 1 extra copies"):
        assert _run(["records", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "  pope/test: 4 samples, 3 with a region\n" in out
    assert "  1 duplicate copies dropped (earliest kept; 1 differ in answer, token counts, box or image size)\n" in out
