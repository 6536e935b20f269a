"""Ranking files: written atomically, read back, and checked against the model's shape."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from visheads_eval.errors import VisheadsError
from visheads_eval.heads import HeadShape
from visheads_eval.ranking import COLUMNS, default_ranking_path, read_ranking, write_ranking

SHAPE = HeadShape(n_layers=3, n_heads=2, n_kv_heads=2, head_dim=8)


def _table(n_layers: int = 3, n_heads: int = 2) -> pd.DataFrame:
    rows = []
    for layer in range(n_layers):
        for head in range(n_heads):
            score = (layer * 7 + head * 3) % 5 + head / 10
            rows.append(
                dict(
                    model="m",
                    layer=layer,
                    head=head,
                    name=f"L{layer}H{head}",
                    stage="early",
                    score=score,
                    image_attn=0.5,
                    region_attn=0.1,
                    concentration=0.2,
                    n_samples=4,
                )
            )
    table = pd.DataFrame(rows)
    table["rank"] = table["score"].rank(ascending=False, method="first").astype(int)
    return table


def test_round_trip_sorted_by_rank(tmp_path: Path) -> None:
    write_ranking(_table(), tmp_path / "r.csv")
    table = read_ranking(tmp_path / "r.csv", SHAPE)
    assert list(table.columns) == list(COLUMNS)
    assert list(table["rank"]) == [1, 2, 3, 4, 5, 6]
    assert table["score"].is_monotonic_decreasing


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    write_ranking(_table(n_layers=2), tmp_path / "r.csv")
    with pytest.raises(VisheadsError, match="does not rank the 3 x 2 heads"):
        read_ranking(tmp_path / "r.csv", SHAPE)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(VisheadsError, match="does not exist; make one with `visheads rank`"):
        read_ranking(tmp_path / "none.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(VisheadsError, match="lacks the columns layer, head, rank"):
        read_ranking(tmp_path / "other.csv")


def test_default_location_is_per_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VISHEADS_CACHE", str(tmp_path))
    assert default_ranking_path("llava-hf/llava-1.5-7b-hf") == tmp_path / "rankings" / "llava-hf__llava-1.5-7b-hf.csv"


def test_the_old_variable_says_which_one_replaced_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VISHEADS_CACHE", raising=False)
    monkeypatch.setenv("VISHEADS_HOME", str(tmp_path))
    with pytest.raises(VisheadsError, match=f"VISHEADS_HOME is now VISHEADS_CACHE .*: set VISHEADS_CACHE={tmp_path}"):
        default_ranking_path("llava-hf/llava-1.5-7b-hf")
