"""``visheads demo`` orchestrates the whole method and reuses what exists on a second run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from fixtures.pointqa_docs import pointqa_docs
from visheads_eval.cli import demo
from visheads_eval.data import synth
from visheads_eval.data.pointqa_parquet import write_pointqa_parquet
from visheads_eval.data.task_folders import copy_pointqa_tasks
from visheads_eval.records import load_records

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts


def test_demo_writes_the_reports_then_reuses_them(deep_model: Path, tmp_path: Path, capsys) -> None:
    task_folder = tmp_path / "pointqa_tasks"
    task_folder.mkdir()
    copy_pointqa_tasks(task_folder)
    write_pointqa_parquet(pointqa_docs(), task_folder / "data" / "test.parquet")
    out = tmp_path / "demo_out"
    tasks = ("pointqa_visual_general", "pointqa_plain_object")
    layers = demo.layer_plan("10%", tasks=tasks)
    early_top, early_random = (next(mask for mask in layers.masks if mask.name == name) for name in ("early_top", "early_random"))
    plan = dataclasses.replace(layers, masks=(early_top, dataclasses.replace(early_random, seeds=(1,))))
    assert demo.Demo(out, str(deep_model), plan, limit=3, include_path=task_folder).run() == 0
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

    assert demo.Demo(out, str(deep_model), plan, limit=3, include_path=task_folder).run() == 0
    second = capsys.readouterr().out
    assert second.count(": reused") == 5  # both recordings, the ranking and both masks
    assert sorted(out.rglob("*_results.json")) == results_before


def test_top_vs_random_ranks_on_a_split_of_its_own_and_compares_pooled_drops(deep_model: Path, tmp_path: Path, capsys) -> None:
    task_folder = tmp_path / "pointqa_tasks"
    task_folder.mkdir()
    copy_pointqa_tasks(task_folder, attributes=True)
    docs = pointqa_docs()
    write_pointqa_parquet(docs, task_folder / "data" / "test.parquet")
    plan = dataclasses.replace(demo.top_vs_random_plan(seeds=(0, 1), limit=3), record_docs=4)
    out = tmp_path / "demo_out"
    assert demo.Demo(out, str(deep_model), plan, include_path=task_folder).run() == 0
    printed = capsys.readouterr().out
    assert "heads ranked on synthetic split seed 3" in printed and "## Top-k against random-k heads" in printed

    # Heads were recorded on the scenes the generator draws for seed 3, not on the documents the masks are scored on.
    meta = load_records(out / "records", progress=False).meta
    assert sorted(set(meta["task"])) == sorted(plan.tasks) and len(meta) == 4 * len(plan.tasks)
    for row in meta.itertuples():
        assert list(row.bbox) == pytest.approx(synth.make_scene(3, "test", row.doc_id).target.bbox())
    board = pd.read_csv(out / "leaderboard.csv")
    assert {mask.split(" ")[0] for mask in board["mask"]} == {"none", "top5pct", "random5pct", "top10pct", "random10pct"}
    drawn = board[board["mask"].str.contains(" seed=")]
    assert sorted(set(drawn["mask"])) == [f"random{k}pct seed={seed}" for k in (10, 5) for seed in (0, 1)]
    assert set(board[~board["mask"].str.endswith(" mean")]["n_docs"]) == {3}, "every mask scored on the first 3 evaluated documents"
    assert len(board[board["mask"] == "top5pct"]["heads"].iloc[0].split()) == 2  # 5% of 48 heads, half up
    assert len(board[board["mask"] == "top10pct"]["heads"].iloc[0].split()) == 5
    study = pd.read_csv(out / "top_vs_random.csv")
    assert study[["group", "k_mask", "n_docs", "n_seeds"]].values.tolist() == [
        ["attributes", "top5pct vs random5pct", 12, 2],
        ["pointqa", "top5pct vs random5pct", 6, 2],
        ["attributes", "top10pct vs random10pct", 12, 2],
        ["pointqa", "top10pct vs random10pct", 6, 2],
    ]
    # The pooled top-k drop is the mean of the leaderboard's per-task drops (each over the same 3 documents).
    for group, tasks in plan.groups.items():
        for top in ("top5pct", "top10pct"):
            per_task = board[(board["mask"] == top) & board["task"].isin(tasks)]["drop"]
            row = study[(study["group"] == group) & study["k_mask"].str.startswith(top)].iloc[0]
            assert row["top_drop"] == pytest.approx(per_task.mean(), abs=0.01)
    assert "| pointqa_plain_colour | pointqa_visual_colour |" in (out / "study.md").read_text()
