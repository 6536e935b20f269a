"""The method end to end on a tiny model: record -> rank -> a mask spec that reads the ranking ->
a masked run -> the leaderboard, each step reading only what the previous one wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures.local_task import TASK_NAME
from visheads_eval.cli import main as visheads
from visheads_eval.heads import Head, HeadShape, stage_layers
from visheads_eval.lmms import runner
from visheads_eval.ranking import read_ranking
from visheads_eval.records import load_records


def _visheads(*argv: str) -> None:
    with pytest.raises(SystemExit) as stop:
        visheads(list(argv))
    assert stop.value.code == 0


def test_record_rank_mask_leaderboard(deep_model: Path, count_task: Path, tmp_path: Path) -> None:
    def evaluate(out: str, **own: str) -> dict:
        model_args = ",".join([f"pretrained={deep_model}", *(f"{k}={v}" for k, v in own.items())])
        assert (
            runner.run(
                [
                    "--model",
                    "llava_visheads",
                    "--model_args",
                    model_args,
                    "--tasks",
                    TASK_NAME,
                    "--include_path",
                    str(count_task),
                    "--output_path",
                    str(tmp_path / out),
                    "--log_samples",
                ]
            )
            == 0
        )
        (results,) = (tmp_path / out).glob("*/*_results.json")
        return json.loads(results.read_text())

    unmasked = evaluate("none", record=str(tmp_path / "rec"))

    _visheads("rank", str(tmp_path / "rec"), "--out", str(tmp_path / "rankings"))
    (ranking_file,) = (tmp_path / "rankings").glob("*.csv")
    ranking = read_ranking(ranking_file, HeadShape(6, 8, 8, 16))

    # the score, recomputed from the records with the documented defaults k=1, eps=1, a=1, b=0.1
    records = load_records(tmp_path / "rec")
    layer = np.arange(6)[None, :, None]
    func = 1 / (layer + 1) + np.exp(-0.1 * layer)
    score = (records.stat("image_attn") * (1 + records.stat("concentration") * func)).mean(0)  # (layer, head)
    by_head = ranking.set_index(["layer", "head"])["score"]
    for (layer, head), value in by_head.items():
        assert math.isclose(value, score[layer, head], rel_tol=1e-5, abs_tol=1e-7)
    best = np.unravel_index(np.argmax(score), score.shape)
    assert tuple(ranking.iloc[0][["layer", "head"]]) == best

    masked = evaluate("masked", mask="early_top10", ranking=str(ranking_file))
    early = ranking[ranking["layer"].isin(stage_layers("early", 6))].head(10)
    assert masked["visheads"]["mask"]["heads"] == sorted(str(Head(int(r.layer), int(r.head))) for r in early.itertuples())

    _visheads("leaderboard", str(tmp_path / "none"), str(tmp_path / "masked"), "--out", str(tmp_path / "reports"))
    board = pd.read_csv(tmp_path / "reports" / "leaderboard.csv")
    value = {mask: float(board[board["mask"] == mask]["value"].iloc[0]) for mask in ("none", "early_top10")}
    accuracy = {name: run["results"][TASK_NAME]["exact_match,none"] * 100 for name, run in (("none", unmasked), ("early_top10", masked))}
    assert value == pytest.approx(accuracy)
    drop = float(board[board["mask"] == "early_top10"]["drop"].iloc[0])
    assert drop == pytest.approx(accuracy["none"] - accuracy["early_top10"])
    heads = board[board["mask"] == "early_top10"]["heads"].iloc[0].split()
    assert heads == masked["visheads"]["mask"]["heads"]
