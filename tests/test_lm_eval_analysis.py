"""lm-eval's output through the analysis: runs made with ``visheads lm-eval`` (and ``visheads sweep --host lm-eval``)
on the organism, read by ``visheads leaderboard``, ``rank --correct-only`` and ``plot --results``; every number
checked against what lm-eval's own samples files say, read here with json and scored with scipy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visheads_eval.analysis.head_maps import CorrectOnly
from visheads_eval.analysis.results import find_runs
from visheads_eval.cli import main
from visheads_eval.lmms import runner
from visheads_eval.records import load_records

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts

TASK = "pointqa_visual_general"
LIMIT = 40
MASK = "L2H0+L3H0"


def _visheads(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return int(stop.value.code or 0), out, err


def _sweep(out: Path) -> list[str]:
    """``visheads sweep --host lm-eval`` over no mask and :data:`MASK` into ``out``."""
    return [
        "sweep",
        "--host",
        "lm-eval",
        "--pretrained",
        "visheads-tiny",
        "--masks",
        "none",
        MASK,
        "--tasks",
        TASK,
        "--limit",
        str(LIMIT),
    ] + ["--batch_size", "8", "--output_path", str(out)]


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``visheads sweep --host lm-eval`` over no mask and two heads into ``out``; the unmasked run recorded into
    ``rec`` by ``visheads lm-eval`` (its results in ``recorded``)."""
    root = tmp_path_factory.mktemp("lm_runs")
    for argv in (
        _sweep(root / "out"),
        [
            "lm-eval",
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained=visheads-tiny,record={root / 'rec'}",
            "--tasks",
            TASK,
            "--limit",
            str(LIMIT),
            "--batch_size",
            "8",
            "--output_path",
            str(root / "recorded"),
            "--log_samples",
            "--apply_chat_template",
        ],
    ):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code in (0, None), argv
    return root


def _samples(folder: Path, mask: str) -> dict[int, float]:
    """doc_id -> pointqa_acc of the run of ``mask`` under ``folder``, read from lm-eval's files as they are."""
    for results_file in folder.glob("*/results_*.json"):
        block = json.loads(results_file.read_text())["config"]["visheads"]
        if (block["mask"] or {}).get("name", "none") == mask:
            date = results_file.name.removeprefix("results_").removesuffix(".json")
            lines = (results_file.parent / f"samples_{TASK}_{date}.jsonl").read_text().splitlines()
            return {row["doc_id"]: float(row["pointqa_acc"]) for row in map(json.loads, lines) if row.get("filter", "none") == "none"}
    raise AssertionError(f"no lm-eval run of {mask} under {folder}")


def _expected_drop(unmasked: dict[int, float], masked: dict[int, float]) -> dict[str, float]:
    docs = sorted(unmasked.keys() & masked.keys())
    base, ablated = np.array([unmasked[d] for d in docs]), np.array([masked[d] for d in docs])
    interval = stats.bootstrap(
        (base, ablated),
        lambda b, a, axis: 100 * (b.mean(axis=axis) - a.mean(axis=axis)),
        paired=True,
        vectorized=True,
        n_resamples=10_000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    only_base, only_masked = int(((base == 1) & (ablated == 0)).sum()), int(((base == 0) & (ablated == 1)).sum())
    return {
        "n_docs": len(docs),
        "drop": 100 * (base.mean() - ablated.mean()),
        "drop_ci_low": interval.low,
        "drop_ci_high": interval.high,
        "p_mcnemar": stats.binomtest(only_base, only_base + only_masked, 0.5).pvalue,
    }


def _check_row(row: pd.Series, expected: dict[str, float]) -> None:
    assert row["n_docs"] == expected["n_docs"]
    for name in ("drop", "drop_ci_low", "drop_ci_high"):
        assert row[name] == pytest.approx(expected[name], abs=1e-4), name
    assert row["p_mcnemar"] == pytest.approx(expected["p_mcnemar"], rel=1e-9)


def test_a_sweep_through_lm_eval_writes_what_a_visheads_lm_eval_run_writes(
    lm_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _visheads(
        capsys,
        "lm-eval",
        "--model",
        "llava_visheads",
        "--model_args",
        f"pretrained=visheads-tiny,mask={MASK}",
        "--tasks",
        TASK,
        "--limit",
        LIMIT,
        "--batch_size",
        8,
        "--output_path",
        tmp_path,
        "--log_samples",
        "--apply_chat_template",
        "--verbosity",
        "WARNING",
    )
    assert code == 0, err
    (separate,) = [json.loads(p.read_text()) for p in tmp_path.glob("*/results_*.json")]
    (swept,) = [
        json.loads(p.read_text())
        for p in (lm_runs / "out").glob("*/results_*.json")
        if json.loads(p.read_text())["config"]["visheads"]["mask"]["name"] == MASK
    ]
    assert swept["results"] == separate["results"] and swept["config"]["visheads"] == separate["config"]["visheads"]
    assert swept["config"]["model_args"] == separate["config"]["model_args"]
    assert _samples(lm_runs / "out", MASK) == _samples(tmp_path, MASK)

    code, out, _ = _visheads(capsys, *_sweep(lm_runs / "out"))
    assert code == 0 and out.count(": reused") == 2, "a second sweep reuses both points"


def test_leaderboard_of_lm_eval_runs_pairs_their_samples(lm_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _visheads(capsys, "leaderboard", lm_runs / "out", "--out", tmp_path)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(table["host"]) == {"lm-eval"} and set(table["mask"]) == {"none", MASK}
    none, masked = _samples(lm_runs / "out", "none"), _samples(lm_runs / "out", MASK)
    assert len(none) == LIMIT
    unmasked_row = table[table["mask"] == "none"].iloc[0]
    assert unmasked_row["value"] == pytest.approx(100 * np.mean(list(none.values())), abs=1e-4)
    _check_row(table[table["mask"] == MASK].iloc[0], _expected_drop(none, masked))


def test_correct_only_selects_the_documents_lm_eval_scored_correct(
    lm_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = load_records(lm_runs / "rec", progress=False)
    correct = _samples(lm_runs / "out", "none")
    keep = CorrectOnly(find_runs([lm_runs / "out"])).keep(records, TASK)
    assert list(keep) == [correct[int(doc)] == 1.0 for doc in records.meta["doc_id"]] and 0 < keep.sum() < len(keep)

    code, _, err = _visheads(capsys, "rank", lm_runs / "rec", "--correct-only", lm_runs / "out", "--out", tmp_path / "rank")
    assert code == 0, err
    code, _, err = _visheads(capsys, "plot", lm_runs / "rec", "--results", lm_runs / "out", "--out", tmp_path / "figures")
    assert code == 0 and "no unmasked results" not in err, err


def test_a_folder_of_both_hosts_makes_one_table_with_a_table_per_host(
    lm_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(lm_runs / "out", tmp_path / "mixed", dirs_exist_ok=True)
    for own in ("", f",mask={MASK}"):
        assert (
            runner.run(
                [
                    "--model",
                    "llava_visheads",
                    "--model_args",
                    f"pretrained=visheads-tiny{own}",
                    "--tasks",
                    TASK,
                    "--limit",
                    str(LIMIT),
                    "--batch_size",
                    "8",
                    "--output_path",
                    str(tmp_path / "mixed"),
                    "--log_samples",
                    "--verbosity",
                    "WARNING",
                ]
            )
            == 0
        )
    code, _, err = _visheads(capsys, "leaderboard", tmp_path / "mixed", "--out", tmp_path / "report")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    assert sorted(table["host"].unique()) == ["lm-eval", "lmms-eval"] and len(table) == 4
    lm_row = table[(table["host"] == "lm-eval") & (table["mask"] == MASK)].iloc[0]
    _check_row(lm_row, _expected_drop(_samples(lm_runs / "out", "none"), _samples(lm_runs / "out", MASK)))
    lmms = {}
    for results_file in (tmp_path / "mixed").glob("*/*_results.json"):
        block = json.loads(results_file.read_text())["visheads"]
        date = results_file.name.removesuffix("_results.json")
        lines = (results_file.parent / f"{date}_samples_{TASK}.jsonl").read_text().splitlines()
        lmms[(block["mask"] or {}).get("name", "none")] = {row["doc_id"]: float(row["pointqa_acc"]) for row in map(json.loads, lines)}
    _check_row(table[(table["host"] == "lmms-eval") & (table["mask"] == MASK)].iloc[0], _expected_drop(lmms["none"], lmms[MASK]))
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "## visheads-tiny (lm-eval)" in markdown and "## visheads-tiny (lmms-eval)" in markdown


def test_bad_input_says_what_is_wrong_in_one_line(lm_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "results_2026-01-01T00-00-00.json").write_text(json.dumps({"model": "x", "scores": {TASK: 0.5}}))  # another tool's
    code, _, err = _visheads(capsys, "leaderboard", other, "--out", tmp_path / "report")
    assert code == 2 and err.strip().count("\n") == 0 and "is not an lm-eval results file" in err, err
    assert not (tmp_path / "report").exists()

    copied = tmp_path / "copied"
    shutil.copytree(lm_runs / "out", copied)
    for samples in copied.glob(f"*/samples_{TASK}_*.jsonl"):
        samples.unlink()
    code, _, err = _visheads(capsys, "rank", lm_runs / "rec", "--correct-only", copied, "--out", tmp_path / "rank")
    assert code == 2 and err.strip().count("\n") == 0 and "rerun lm-eval with --log_samples" in err, err
