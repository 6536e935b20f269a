"""The logit lens by layer: settle readings worked out by hand, curves against numpy on the records,
bands from a bootstrap written here, and ``visheads plot`` writing the figure and its tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures.synthetic_records import synthetic_stats
from tests.test_analysis_cli import visheads
from visheads_eval.analysis.lens import lens_curves, settle_readings
from visheads_eval.errors import VisheadsError
from visheads_eval.records import RecordKey, RecordWriter, load_records

L, H = 4, 3
RUN = {"model": "org/lens-model", "position": "last_prompt", "logit_lens": True}


def test_settle_reading_is_where_the_answer_becomes_and_stays_top1() -> None:
    rank = np.array(
        [
            [3, 0, 0, 0, 0],  # top-1 from reading 1 on
            [0, 0, 1, 0, 0],  # top-1 at first, lost at reading 2, back from reading 3
            [0, 0, 0, 0, 0],  # already the embeddings' top-1
            [2, 1, 1, 5, 0],  # only the output
        ]
    )
    assert settle_readings(rank).tolist() == [1, 3, 0, 4]


def _write(directory: Path, n: int, seed: int, task: str = "pope", run: dict = RUN) -> None:
    rng = np.random.default_rng(seed)
    heads = synthetic_stats(rng, n, L, H, n_image_tokens=10, region_share=0.0)  # name -> (sample, layer, head)
    with RecordWriter(directory, run=run, n_layers=L, n_heads=H) as writer:
        for doc_id in range(n):
            rank = rng.integers(0, 3, L + 1).astype(np.int32)
            rank[-1] = 0
            top1 = np.where(rank == 0, 7, 5).astype(np.int32)
            lens = {
                "answer_logprob": -rng.random(L + 1).astype(np.float32) * 3,
                "answer_rank": rank,
                "top1": top1,
                "entropy": rng.random(L + 1).astype(np.float32),
                "kl_to_final": np.append(rng.random(L), 0).astype(np.float32),
                "answer_token": 7,
            }
            stats = {name: values[doc_id] for name, values in heads.items() if name != "region_attn"}
            writer.add(RecordKey(task, "test", doc_id), stats, n_keys=40, n_image_tokens=10, n_region_tokens=0, answer="yes", lens=lens)


def test_curves_are_the_records_summarised_by_reading(tmp_path: Path) -> None:
    _write(tmp_path / "rec", 40, seed=1)
    records = load_records(tmp_path / "rec")
    curves = lens_curves(records, "pope")
    table = curves.curves.set_index(["measure", "reading"])
    rank = records.lens("answer_rank")
    settle = np.array([next(r for r in range(L + 1) if (row[r:] == 0).all()) for row in rank])  # by hand
    expected = {
        "answer_logprob": records.lens("answer_logprob").mean(0),
        "answer_rank": np.median(rank, 0),
        "top1_share": (rank == 0).mean(0),
        "settled_share": [(settle <= r).mean() for r in range(L + 1)],
        "kl_to_final": records.lens("kl_to_final").mean(0),
        "entropy": records.lens("entropy").mean(0),
    }
    for measure, values in expected.items():
        np.testing.assert_allclose(table.loc[measure, "value"].to_numpy(), values, rtol=1e-6, atol=1e-7, err_msg=measure)
    assert np.array_equal(curves.settle, settle)
    assert list(table.loc["answer_logprob", "depth"]) == [0, 0.25, 0.5, 0.75, 1]

    # the band: a percentile bootstrap of the mean written here (its own draws), agreeing to resampling noise
    values = records.lens("answer_logprob")
    rng = np.random.default_rng(123)
    means = values[rng.integers(0, len(values), (4000, len(values)))].mean(1)  # (resample, reading)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    band = table.loc["answer_logprob"]
    width = high - low
    np.testing.assert_allclose(band["low"], low, atol=0.1 * width.max())
    np.testing.assert_allclose(band["high"], high, atol=0.1 * width.max())
    assert (band["low"] <= band["value"]).all() and (band["value"] <= band["high"]).all()

    image = records.stat("image_attn").mean(0)  # (layer, head)
    assert list(curves.attention["top_head"]) == [f"L{layer}H{head}" for layer, head in enumerate(image.argmax(1))]
    np.testing.assert_allclose(curves.attention["image_attn"], image.max(1), rtol=1e-6)


def test_plot_draws_the_lens_and_writes_its_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "a", 12, seed=2)
    _write(tmp_path / "b", 9, seed=3, run={**RUN, "model": "org/other"})
    code, out, err = visheads(capsys, "plot", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "fig")
    assert code == 0, err
    assert (tmp_path / "fig" / "logit_lens.png").stat().st_size > 1000 and (tmp_path / "fig" / "logit_lens.pdf").is_file()
    settle = pd.read_csv(tmp_path / "fig" / "logit_lens_settle.csv").set_index("model")
    for model, folder in (("org/lens-model", "a"), ("org/other", "b")):
        rank = load_records(tmp_path / folder).lens("answer_rank")
        by_hand = [next(r for r in range(L + 1) if (row[r:] == 0).all()) for row in rank]
        assert settle.loc[model, "settle_median"] == np.median(by_hand)
        assert settle.loc[model, "n_samples"] == len(rank)
    curves = pd.read_csv(tmp_path / "fig" / "logit_lens_curves.csv")
    assert set(curves["measure"]) == {"answer_logprob", "answer_rank", "top1_share", "settled_share", "kl_to_final", "entropy"}
    assert len(curves) == 2 * 6 * (L + 1)


def test_records_without_the_lens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    heads = synthetic_stats(rng, 3, L, H, n_image_tokens=10, region_share=0.0)
    with RecordWriter(tmp_path / "plain", run={"model": "m", "position": "answer"}, n_layers=L, n_heads=H) as writer:
        for doc_id in range(3):
            writer.add(
                RecordKey("pope", "test", doc_id),
                {name: v[doc_id] for name, v in heads.items() if name != "region_attn"},
                n_keys=40,
                n_image_tokens=10,
                n_region_tokens=0,
                answer="no",
            )
    with pytest.raises(VisheadsError, match="carry no logit lens; record with logit_lens=true"):
        lens_curves(load_records(tmp_path / "plain"), "pope")
    code, _, err = visheads(capsys, "plot", tmp_path / "plain", "--out", tmp_path / "fig")
    assert code == 0 and "skipping the logit_lens figure" in err
    assert not (tmp_path / "fig" / "logit_lens.png").exists()
