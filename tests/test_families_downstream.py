"""Everything downstream of a run, across families of different depths: ranking, stage masks, leaderboards,
comparisons. A 3-layer Qwen2.5-VL and a 6-layer Gemma 3 are evaluated through ``lmms_eval --model visheads``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fixtures.local_task import TASK_NAME
from fixtures.tiny.modern import build_modern
from visheads_eval.cli import main
from visheads_eval.lmms import runner
from visheads_eval.records import load_records

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts


def _visheads(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert stop.value.code in (0, None), err
    return out


def _lmms(folder: Path, own: str, task_dir: Path, out: Path) -> None:
    assert (
        runner.run(
            [
                "--model",
                "visheads",
                "--model_args",
                f"pretrained={folder},{own}",
                "--tasks",
                TASK_NAME,
                "--include_path",
                str(task_dir),
                "--output_path",
                str(out),
                "--log_samples",
                "--limit",
                "6",
                "--batch_size",
                "2",
                "--verbosity",
                "WARNING",
            ]
        )
        == 0
    )


def test_families_of_different_depths_rank_mask_and_compare(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    qwen = tiny_models["qwen2_5_vl"]  # 3 layers x 4 heads
    gemma = build_modern("gemma3", tmp_path / "gemma3_6_layers", n_layers=6)  # 6 layers x 4 heads
    for name, folder in (("qwen", qwen), ("gemma", gemma)):
        _lmms(folder, f"record={tmp_path / 'rec' / name}", count_task, tmp_path / "runs" / name)
    records = {name: load_records(tmp_path / "rec" / name, progress=False) for name in ("qwen", "gemma")}
    assert (records["qwen"].run["family"], records["gemma"].run["family"]) == ("qwen2_5_vl", "gemma3")
    assert records["qwen"].stat("image_attn").shape[1:] == (3, 4) and records["gemma"].stat("image_attn").shape[1:] == (6, 4)

    _visheads(capsys, "rank", tmp_path / "rec" / "gemma", "--out", tmp_path / "rank")
    (ranking_file,) = (tmp_path / "rank").glob("*.csv")
    ranking = pd.read_csv(ranking_file)
    assert len(ranking) == 24 and sorted(ranking["rank"]) == list(range(1, 25))

    # The early third of 6 layers is layers 0 and 1: the stage mask takes the 3 best-ranked heads there.
    spec = tmp_path / "early_top3.yaml"
    spec.write_text("description: the 3 best-ranked heads of the early third\nselect: {stage: early, order: top, k: 3}\nmode: zero\n")
    early = ranking[ranking["layer"] < 2].sort_values("rank").head(3)
    expected = sorted(f"L{layer}H{head}" for layer, head in zip(early["layer"], early["head"], strict=True))
    _lmms(gemma, f"mask={spec},ranking={ranking_file}", count_task, tmp_path / "runs" / "gemma")
    (masked,) = [
        results
        for results in (json.loads(p.read_text()) for p in (tmp_path / "runs" / "gemma").glob("*/*_results.json"))
        if results["visheads"]["mask"] is not None
    ]
    assert sorted(masked["visheads"]["mask"]["heads"]) == expected and masked["visheads"]["family"] == "gemma3"

    _visheads(capsys, "leaderboard", tmp_path / "runs" / "gemma", "--out", tmp_path / "board")
    assert "early_top3" in (tmp_path / "board" / "leaderboard.md").read_text()

    _visheads(capsys, "compare", tmp_path / "rec" / "qwen", tmp_path / "rec" / "gemma", "--out", tmp_path / "compare")
    correlation = pd.read_csv(tmp_path / "compare" / "correlation.csv")
    across = correlation[correlation["model_a"] != correlation["model_b"]]
    assert len(across) and set(across["grid"]) == {"depth3"}, across  # by relative-depth profile, 3 bins
