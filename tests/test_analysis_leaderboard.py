"""Leaderboards and lmms-eval results reading: values and drops against hand-computed ones, bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from fixtures.synthetic_results import write_results
from visheads_eval.analysis.leaderboard import leaderboard, to_latex, to_markdown, unmasked_values
from visheads_eval.analysis.results import correct_docs, find_runs, is_correct, primary_metric, read_run
from visheads_eval.errors import VisheadsError

M7 = "llava-hf/llava-1.5-7b-hf"
M16 = "llava-hf/llava-v1.6-vicuna-7b-hf"


def _paper_runs(output: Path) -> None:
    """Runs shaped like the paper's Table 3 (1.5-7b: MMBench 75.44, POPE 85.27, QBench 63.37)."""
    base = {
        "pope": {"pope_accuracy": 0.8527, "pope_f1_score": 0.86},
        "mmbench_en_dev_static": {"gpt_eval_score": 75.44},
        "qbench_dev": {"qbench_acc": 0.6337},
    }
    write_results(output, "20250101_000000", M7, base)
    write_results(
        output,
        "20250102_000000",
        M7,
        {
            "pope": {"pope_accuracy": 0.5706, "pope_f1_score": 0.5},
            "mmbench_en_dev_static": {"gpt_eval_score": 51.01},
            "qbench_dev": {"qbench_acc": 0.4251},
        },
        mask="early_top20",
        heads=["L1H2", "L3H4"],
    )
    write_results(
        output,
        "20250103_000000",
        M7,
        {
            "pope": {"pope_accuracy": 0.7806, "pope_f1_score": 0.7},
            "mmbench_en_dev_static": {"gpt_eval_score": 68.88},
            "qbench_dev": {"qbench_acc": 0.5823},
        },
        mask="late_top20",
        heads=["L25H0"],
    )
    write_results(output, "20250104_000000", M16, {"pope": {"pope_accuracy": 0.7967}})
    write_results(output, "20250105_000000", M16, {"pope": {"pope_accuracy": 0.6909}}, mask="early_top20", heads=["L0H1"])


def test_values_and_drops_in_points(tmp_path: Path) -> None:
    _paper_runs(tmp_path)
    table = leaderboard(find_runs([tmp_path]))
    rows = {(r.model, r.mask, r.task): r for r in table.itertuples()}
    assert rows[(M7, "none", "pope")].value == pytest.approx(85.27)
    assert rows[(M7, "none", "pope")].metric == "pope_accuracy" and rows[(M7, "none", "pope")].drop == 0
    assert rows[(M7, "early_top20", "pope")].drop == pytest.approx(28.21)
    assert rows[(M7, "early_top20", "mmbench_en_dev_static")].drop == pytest.approx(24.43)  # already in percent
    assert rows[(M7, "early_top20", "qbench_dev")].drop == pytest.approx(20.86)
    assert rows[(M7, "late_top20", "qbench_dev")].drop == pytest.approx(5.14)
    assert rows[(M16, "early_top20", "pope")].drop == pytest.approx(10.58)
    early = rows[(M7, "early_top20", "pope")]
    assert early.heads == "L1H2 L3H4" and early.n_masked == 2 and early.mask_mode == "zero" and early.mask_seed == 0
    assert early.results_file.endswith("20250102_000000_results.json")
    assert list(table["mask"][:6]) == ["none"] * 3 + ["early_top20"] * 3  # none first, then masks in natural order
    assert set(table.columns) >= {"model", "mask", "task", "metric", "value", "drop"}


def test_unmasked_values_for_figure_titles(tmp_path: Path) -> None:
    _paper_runs(tmp_path)
    values = unmasked_values(find_runs([tmp_path]), ["pope", "seedbench", "mmbench_en_dev_static"])
    assert values == {
        (M7, "pope"): pytest.approx(85.27),
        (M7, "mmbench_en_dev_static"): pytest.approx(75.44),
        (M16, "pope"): pytest.approx(79.67),
    }
    assert unmasked_values(find_runs([tmp_path]), ["seedbench"]) == {}


def test_markdown_and_latex(tmp_path: Path) -> None:
    _paper_runs(tmp_path)
    table = leaderboard(find_runs([tmp_path]))
    markdown = to_markdown(table)
    assert f"## {M7}" in markdown and f"## {M16}" in markdown
    assert "| none        | 85.27" in markdown and "28.21 ↓" in markdown
    assert "L1H2 L3H4" in markdown and "20250102_000000_results.json" in markdown
    early_file = table[table["mask"] == "early_top20"]["results_file"].iloc[0]
    linked = to_markdown(table, links_from=tmp_path / "report")
    assert f"[{Path(early_file).name}](../{Path(early_file).relative_to(tmp_path).as_posix()})" in linked
    latex = to_latex(table)
    assert latex.count("\\begin{table}") == 2
    assert "early\\_top20 & 28.21 $\\downarrow$ & 24.43 $\\downarrow$ & 20.86 $\\downarrow$" in latex  # pope, mmbench, qbench


def test_newest_run_wins_and_missing_baseline_leaves_the_drop_empty(tmp_path: Path) -> None:
    write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.80}})
    write_results(tmp_path, "20250109_000000", M7, {"pope": {"pope_accuracy": 0.85}})  # a rerun
    write_results(tmp_path, "20250102_000000", M7, {"pope": {"pope_accuracy": 0.60}}, mask="early_top20", heads=["L0H0"])
    write_results(tmp_path, "20250102_000000", M16, {"pope": {"pope_accuracy": 0.60}}, mask="early_top20", heads=["L0H0"])
    table = leaderboard(find_runs([tmp_path]))
    drops = table.set_index(["model", "mask"])["drop"]
    assert drops[(M7, "early_top20")] == pytest.approx(25.0)
    assert np.isnan(drops[(M16, "early_top20")])
    assert "(60.00, no unmasked run)" in to_markdown(table)


def test_masked_run_without_the_visheads_block_has_unknown_heads(tmp_path: Path) -> None:
    write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.8}}, block=False)
    write_results(tmp_path, "20250102_000000", M7, {"pope": {"pope_accuracy": 0.7}}, mask="early_top20", block=False)
    run = read_run(next(tmp_path.rglob("20250102_000000_results.json")))
    assert run.model == M7 and run.mask == "early_top20" and run.heads is None
    table = leaderboard(find_runs([tmp_path]))
    assert table["mask"].tolist() == ["none", "early_top20"]
    assert table["drop"].tolist() == pytest.approx([0.0, 10.0])
    assert table["n_masked"].isna().tolist() == [False, True]


def test_random_masks_drawn_with_different_seeds_are_separate_rows_beside_their_mean(tmp_path: Path) -> None:
    write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.85}})
    for day, (seed, heads, accuracy) in enumerate([(0, ["L0H0"], 0.83), (1, ["L5H2"], 0.80), (2, ["L1H1"], 0.84)], start=2):
        path = write_results(
            tmp_path, f"2025010{day}_000000", M7, {"pope": {"pope_accuracy": accuracy}}, mask="early_random20", heads=heads
        )
        data = json.loads(path.read_text())
        data["visheads"]["mask"]["seed"] = seed
        path.write_text(json.dumps(data))
    table = leaderboard(find_runs([tmp_path]))
    assert table["mask"].tolist() == [
        "none",
        "early_random20 mean",
        "early_random20 seed=0",
        "early_random20 seed=1",
        "early_random20 seed=2",
    ]
    assert table["drop"].tolist() == pytest.approx([0.0, 8 / 3, 2.0, 5.0, 1.0], abs=1e-4)
    assert table["heads"].tolist()[2:] == ["L0H0", "L5H2", "L1H1"]
    mean = table.set_index("mask").loc["early_random20 mean"]
    assert mean["n_seeds"] == 3 and mean["drop_sd"] == pytest.approx(np.std([2.0, 5.0, 1.0], ddof=1), abs=1e-4)
    assert "| early_random20 mean   | 2.67 ↓ ± 2.08" in to_markdown(table)


def test_mask_that_removed_different_heads_is_an_error(tmp_path: Path) -> None:
    write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.7}}, mask="early_top20", heads=["L0H0"])
    write_results(tmp_path, "20250102_000000", M7, {"qbench_dev": {"qbench_acc": 0.5}}, mask="early_top20", heads=["L0H1"])
    with pytest.raises(VisheadsError, match="mask 'early_top20' of llava-hf/llava-1.5-7b-hf removed different heads"):
        leaderboard(find_runs([tmp_path]))


def test_metric_choice_and_override(tmp_path: Path) -> None:
    assert primary_metric("pope", ["pope_f1_score", "pope_accuracy"]) == "pope_accuracy"
    assert primary_metric("seedbench", ["seed_video", "seed_image", "seed_all"]) == "seed_image"
    assert primary_metric("mmbench_en_dev_static", ["gpt_eval_score", "submission"]) == "gpt_eval_score"
    assert primary_metric("pointqa_visual_general", ["parse_rate", "pointqa_accuracy"]) == "pointqa_accuracy"
    assert primary_metric("pope", ["pope_accuracy", "pope_f1_score"], {"pope": "pope_f1_score"}) == "pope_f1_score"
    with pytest.raises(VisheadsError, match="task foo reports bleu, rouge; pick one with --metric foo=METRIC"):
        primary_metric("foo", ["bleu", "rouge"])
    with pytest.raises(VisheadsError, match="no metric 'pope_f1' \\(did you mean 'pope_f1_score'\\?\\)"):
        primary_metric("pope", ["pope_accuracy", "pope_f1_score"], {"pope": "pope_f1"})
    write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.8, "pope_f1_score": 0.9}})
    table = leaderboard(find_runs([tmp_path]), metrics={"pope": "pope_f1_score"})
    assert table.loc[0, "metric"] == "pope_f1_score" and table.loc[0, "value"] == pytest.approx(90.0)


def test_fraction_metric_out_of_range_asks_for_percent(tmp_path: Path) -> None:
    write_results(tmp_path, "20250101_000000", M7, {"pointqa": {"accuracy": 64.0}})
    with pytest.raises(VisheadsError, match="accuracy of pointqa is 64.0, not a fraction in 0..1; .* --percent-metric accuracy"):
        leaderboard(find_runs([tmp_path]))
    assert leaderboard(find_runs([tmp_path]), percent_metrics=["accuracy"]).loc[0, "value"] == pytest.approx(64.0)


def test_files_that_are_not_lmms_eval_results(tmp_path: Path) -> None:
    other = tmp_path / "20250101_000000_results.json"
    other.write_text(json.dumps({"model": "x", "scores": {"pope": 0.8}}))  # another tool's output
    with pytest.raises(VisheadsError, match=f"{other} is not an lmms-eval results file: it lacks 'results' or 'config.model_args'"):
        read_run(other)
    truncated = tmp_path / "20250102_000000_results.json"
    truncated.write_text('{"results": {"pope": {"pope_accuracy,none": 0.8')
    with pytest.raises(VisheadsError, match=f"cannot read results file {truncated}"):
        read_run(truncated)
    named = tmp_path / "scores.json"
    named.write_text("{}")
    with pytest.raises(
        VisheadsError, match=r"is not a results file: its name is not lmms-eval's \(\*_results.json\) or lm-eval's \(results_\*.json\)"
    ):
        read_run(named)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VisheadsError, match="no results file, lmms-eval's .* or lm-eval's .*, under"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(VisheadsError, match="does not exist"):
        find_runs([tmp_path / "missing"])


def test_per_sample_correctness(tmp_path: Path) -> None:
    assert is_correct("pope_accuracy", {"question_id": 1, "score": 1.0, "prediction": "yes", "ground_truth": "yes"})
    assert not is_correct("pope_accuracy", {"question_id": 1, "score": 0.0, "prediction": "no", "ground_truth": "yes"})
    assert is_correct("exact_match", 1.0) and not is_correct("exact_match", 0.0) and is_correct("acc", True)
    assert is_correct("seed_image", {"pred": "B", "answer": "b", "question_id": 3})  # lmms-eval compares case-insensitively
    assert not is_correct("seed_image", {"pred": "A", "answer": "B", "question_id": 3})
    assert is_correct("qbench_acc", {"id": 0, "question_concern": 0, "question_type": 1, "answer": "C", "parsed_pred": "C"})
    assert not is_correct("qbench_acc", {"id": 0, "question_concern": 0, "question_type": 1, "answer": "C", "parsed_pred": "A"})
    with pytest.raises(VisheadsError, match="per-sample correctness cannot be read from the 'gpt_eval_score' field"):
        is_correct("gpt_eval_score", {"index": 1, "prediction": "A", "answer": "A"})
    path = write_results(
        tmp_path,
        "20250101_000000",
        M7,
        {"pope": {"pope_accuracy": 0.5}},
        samples={"pope": [{"pope_accuracy": {"score": 1.0}}, {"pope_accuracy": {"score": 0.0}}]},
    )
    assert correct_docs(read_run(path), "pope", "pope_accuracy") == {0: True, 1: False}
    with pytest.raises(VisheadsError, match="rerun lmms-eval with --log_samples"):
        correct_docs(read_run(path), "qbench_dev", "qbench_acc")
    samples = path.with_name("20250101_000000_samples_pope.jsonl")
    samples.write_text(samples.read_text() + '{"doc_id": 2, "pope_acc')
    with pytest.raises(VisheadsError, match="line 3 is not JSON \\(truncated file\\?\\)"):
        correct_docs(read_run(path), "pope", "pope_accuracy")


def _pope_samples(correct: list[int]) -> list[dict]:
    return [{"pope_accuracy": {"question_id": i, "score": float(c)}} for i, c in enumerate(correct)]


def test_drops_are_paired_over_the_documents_both_runs_answered(tmp_path: Path) -> None:
    unmasked = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0] * 3  # 30 docs, 80% correct
    masked = [1, 0, 0, 1, 1, 0, 1, 1, 1, 0] * 2  # the first 20 docs only (--limit 20): 60% correct
    write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.8}}, samples={"pope": _pope_samples(unmasked)})
    write_results(
        tmp_path,
        "20250102_000000",
        M7,
        {"pope": {"pope_accuracy": 0.6}},
        mask="early_top20",
        heads=["L1H2"],
        samples={"pope": _pope_samples(masked)},
    )
    row = leaderboard(find_runs([tmp_path])).set_index("mask").loc["early_top20"]
    assert row["n_docs"] == 20 and row["value"] == pytest.approx(60.0)
    assert row["drop"] == pytest.approx(80.0 - 60.0)  # over docs 0-19 the unmasked run is also 80% correct
    # McNemar by hand: docs correct unmasked only: 1, 2, 5, 11, 12, 15; masked only: 8, 18 -> two-sided exact binomial
    p_by_hand = min(1.0, 2 * sum(math.comb(8, k) for k in range(0, 3)) / 2**8)
    assert row["p_mcnemar"] == pytest.approx(p_by_hand)
    assert row["p_mcnemar"] == pytest.approx(binomtest(6, 8, 0.5).pvalue)
    # a paired percentile bootstrap written here: resample documents, keep each document's pair together
    differences = 100.0 * (np.array(unmasked[:20]) - np.array(masked))
    resampled = np.random.default_rng(12345).choice(differences, size=(20_000, 20)).mean(axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    assert row["drop_ci_low"] < row["drop"] < row["drop_ci_high"] and row["bootstrap_seed"] == 0
    assert (row["drop_ci_low"], row["drop_ci_high"]) == (pytest.approx(low, abs=1.5), pytest.approx(high, abs=1.5))
    again = leaderboard(find_runs([tmp_path])).set_index("mask").loc["early_top20"]
    assert (again["drop_ci_low"], again["drop_ci_high"]) == (row["drop_ci_low"], row["drop_ci_high"]), "seeded"
    assert "20.00 ↓†" in to_markdown(leaderboard(find_runs([tmp_path]))), "the interval includes 0 at 20 documents"


def test_drops_over_different_documents_without_samples_are_refused(tmp_path: Path) -> None:
    first = write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.905}}, n_docs=210)
    second = write_results(tmp_path, "20250102_000000", M7, {"pope": {"pope_accuracy": 0.54}}, mask="early_top20", n_docs=50)
    with pytest.raises(VisheadsError) as error:
        leaderboard(find_runs([tmp_path]))
    assert str(error.value) == (
        f"{second} answered 50 documents of pope and the unmasked {first} 210: a drop over different documents is no drop; "
        "rerun both with --log_samples (the drop is then taken over the documents both answered) or with the same --limit"
    )


def test_compare_two_masks_pairs_their_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from visheads_eval.analysis.leaderboard import compare_masks
    from visheads_eval.cli import main

    write_results(tmp_path, "20250101_000000", M7, {"pope": {"pope_accuracy": 0.9}}, samples={"pope": _pope_samples([1] * 9 + [0])})
    write_results(
        tmp_path,
        "20250102_000000",
        M7,
        {"pope": {"pope_accuracy": 0.3}},
        mask="early_top20",
        heads=["L1H2"],
        samples={"pope": _pope_samples([0, 0, 0, 0, 0, 1, 1, 1, 0, 0])},
    )
    write_results(
        tmp_path,
        "20250103_000000",
        M7,
        {"pope": {"pope_accuracy": 0.8}},
        mask="early_others20",
        heads=["L2H2"],
        samples={"pope": _pope_samples([1, 1, 1, 1, 0, 1, 1, 1, 1, 0])},
    )
    (row,) = compare_masks(find_runs([tmp_path]), "early_top20", "early_others20").itertuples()
    assert (row.n_docs, row.difference) == (10, pytest.approx(50.0))  # drop 60 vs drop 10 points
    # discordant docs: correct under early_others20 only 0, 1, 2, 3, 8; under early_top20 only none
    assert row.p_mcnemar == pytest.approx(2 / 2**5) and row.ci_low > 0
    with pytest.raises(SystemExit):
        main(["leaderboard", str(tmp_path), "--out", str(tmp_path / "reports"), "--compare", "early_top20", "early_others20"])
    printed = capsys.readouterr().out
    assert "early_top20 drops more than early_others20: +50.00 points [" in printed
    assert (tmp_path / "reports" / "compare.csv").is_file()
    with pytest.raises(VisheadsError, match="no results of mask 'early_top2' \\(did you mean 'early_top20'\\?\\)"):
        compare_masks(find_runs([tmp_path]), "early_top2", "early_others20")


def test_one_model_under_two_spellings_is_one_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "models" / "llava-small"
    model.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    write_results(tmp_path / "out", "20250101_000000", str(model), {"pope": {"pope_accuracy": 0.85}})  # llava_visheads: absolute
    write_results(
        tmp_path / "out", "20250102_000000", "models/llava-small/", {"pope": {"pope_accuracy": 0.80}}, mask="early_top20", block=False
    )  # lmms-eval's own command: as typed
    table = leaderboard(find_runs([tmp_path / "out"]))
    assert set(table["model"]) == {str(model)}
    assert table.set_index("mask").loc["early_top20", "drop"] == pytest.approx(5.0)
