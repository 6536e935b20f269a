"""``visheads demo`` orchestrates the whole method and reuses what exists on a second run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fixtures.pointqa_docs import pointqa_docs
from visheads_eval.cli import demo
from visheads_eval.data.pointqa_parquet import write_pointqa_parquet
from visheads_eval.data.task_folders import copy_pointqa_tasks

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts


def test_demo_writes_the_reports_then_reuses_them(deep_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(demo, "mask_grid", lambda: [demo.SweepPoint("early_top"), demo.SweepPoint("early_random", 1)])
    task_folder = tmp_path / "pointqa_tasks"
    task_folder.mkdir()
    copy_pointqa_tasks(task_folder)
    write_pointqa_parquet(pointqa_docs(), task_folder / "data" / "test.parquet")
    out = tmp_path / "demo_out"
    tasks = ("pointqa_visual_general", "pointqa_plain_object")
    assert demo.Demo(out, str(deep_model), tasks, "10%", limit=3, include_path=task_folder).run() == 0
    first = capsys.readouterr().out
    assert "[1/4] record the unmasked run:" in first and "[3/4] mask [2/2] early_random seed=1:" in first

    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.columns[:7]) == ["model", "host", "mask", "task", "metric", "value", "drop"] and set(board["host"]) == {"lmms-eval"}
    assert set(board["mask"]) == {"none", "early_top", "early_random"}
    assert set(board[board["mask"] == "early_random"]["mask_seed"]) == {1}
    assert set(board["task"]) == set(tasks)
    none = board[board["mask"] == "none"].set_index("task")["value"]
    for row in board[board["mask"] != "none"].itertuples():
        assert row.drop == pytest.approx(none[row.task] - row.value)
        assert len(row.heads.split()) == 5  # 10% of 48 heads
    assert (
        "Logit lens (" in first
        and "from which the answer stays top-1" in first
        and "  pointqa_plain_object: " in first
        and "  pointqa_visual_general: " in first
    )
    for name in (
        "leaderboard.md",
        "leaderboard.tex",
        "ranking.csv",
        "figures/heatmap_image_attn.png",
        "figures/attention_vs_concentration.png",
        "lens/logit_lens.png",
        "lens/logit_lens_settle.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    results_before = sorted(out.rglob("*_results.json"))

    assert demo.Demo(out, str(deep_model), tasks, "10%", limit=3, include_path=task_folder).run() == 0
    second = capsys.readouterr().out
    assert second.count(": reused") == 5  # both recordings, the ranking and both masks
    assert sorted(out.rglob("*_results.json")) == results_before
