"""``visheads rank / plot / compare / leaderboard`` on small record folders and results files.

Record folders are written with the records writer (seeded synthetic statistics); expected values are
recomputed here from the records with numpy. Bad input exits 2 with one line naming the file and
writes nothing.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures.synthetic_records import synthetic_stats, write_synthetic_records
from fixtures.synthetic_results import write_results
from visheads_eval.cli import main
from visheads_eval.heads import HeadShape
from visheads_eval.ranking import read_ranking
from visheads_eval.records import RecordKey, RecordWriter, load_records

TASKS = ("pointqa_visual_general", "pope")


def visheads(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("visheads: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("records")
    return {
        "a": write_synthetic_records(
            root / "a", model="org/model-a", n_layers=6, n_heads=4, n_samples=12, tasks=TASKS, seed=1, n_image_tokens=32
        ),
        "a2": write_synthetic_records(
            root / "a2", model="org/model-a2", n_layers=6, n_heads=4, n_samples=12, tasks=TASKS, seed=2, n_image_tokens=32
        ),
        "b": write_synthetic_records(
            root / "b",
            model="org/model-b",
            n_layers=9,
            n_heads=3,
            n_samples=12,
            tasks=TASKS[:1],
            seed=3,
            n_image_tokens=32,
            region_share=0.5,
        ),
    }


def expected_scores(folder: Path, task: str, keep: np.ndarray | None = None) -> np.ndarray:
    """The detection score with the default constants, recomputed from the records with numpy."""
    records = load_records(folder, progress=False).filter(tasks=task)
    image, conc = records.stat("image_attn").astype(float), records.stat("concentration").astype(float)
    if keep is not None:
        image, conc = image[keep], conc[keep]
    layer = np.arange(image.shape[1])[None, :, None]
    return (image * (1 + conc * (1 / (layer + 1) + np.exp(-0.1 * layer)))).mean(axis=0)


def test_rank_writes_the_ranking_that_mask_specs_read(folders, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("VISHEADS_CACHE", str(tmp_path / "home"))
    code, out, err = visheads(capsys, "rank", folders["a"], folders["b"], "--task", "pointqa_visual_general")
    assert code == 0, err
    path = tmp_path / "home" / "rankings" / "org__model-a.csv"
    assert f"-> {path}" in out
    table = read_ranking(path, HeadShape(n_layers=6, n_heads=4, n_kv_heads=4, head_dim=1))
    expected = expected_scores(folders["a"], "pointqa_visual_general")
    np.testing.assert_allclose(table.sort_values(["layer", "head"])["score"], expected.ravel(), rtol=1e-9)
    best = np.unravel_index(np.argmax(expected), expected.shape)
    assert table.loc[0, "name"] == f"L{best[0]}H{best[1]}" and table.loc[0, "n_samples"] == 12
    assert set(table["stage"]) == {"early", "mid", "late"}
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["tasks"] == ["pointqa_visual_general"] and provenance["score"]["b"] == 0.1
    assert provenance["record_folders"] == [str(folders["a"].resolve())]
    assert (tmp_path / "home" / "rankings" / "org__model-b.csv").is_file()


def test_rank_options_and_pooled_tasks(folders, tmp_path, capsys) -> None:
    code, out, err = visheads(capsys, "rank", folders["a"], "--out", tmp_path, "--k", 0, "--a", 0)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "org__model-a.csv")
    # k = a = 0: the score is the image attention, pooled over both tasks' 24 samples.
    records = load_records(folders["a"], progress=False)
    pooled = records.stat("image_attn").astype(float).mean(axis=0)
    np.testing.assert_allclose(table.sort_values(["layer", "head"])["score"], pooled.ravel(), rtol=1e-6)
    assert table["n_samples"].eq(24).all()
    assert json.loads((tmp_path / "org__model-a.json").read_text())["tasks"] == list(TASKS)


def test_rank_per_task(folders, tmp_path, capsys) -> None:
    code, out, err = visheads(capsys, "rank", folders["a"], "--per-task", "--out", tmp_path)
    assert code == 0, err
    for task in TASKS:
        table = pd.read_csv(tmp_path / f"org__model-a__{task}.csv").sort_values(["layer", "head"])
        np.testing.assert_allclose(table["score"], expected_scores(folders["a"], task).ravel(), rtol=1e-9)
        assert table["n_samples"].eq(12).all()
        assert json.loads((tmp_path / f"org__model-a__{task}.json").read_text())["tasks"] == [task]


def test_rank_correct_only_uses_the_samples_file_of_the_recording_run(folders, tmp_path, capsys) -> None:
    correct = [i % 3 != 0 for i in range(12)]  # docs 0, 3, 6, 9 answered wrongly
    samples = [
        {"pope_accuracy": {"question_id": i, "score": float(c), "prediction": "yes", "ground_truth": "yes"}} for i, c in enumerate(correct)
    ]
    write_results(
        tmp_path / "out",
        "20250101_000000",
        "org/model-a",
        {"pope": {"pope_accuracy": 8 / 12}},
        samples={"pope": samples},
        record_dir=str(folders["a"]),
    )
    code, out, err = visheads(capsys, "rank", folders["a"], "--task", "pope", "--correct-only", tmp_path / "out", "--out", tmp_path / "r")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "r" / "org__model-a.csv").sort_values(["layer", "head"])
    assert table["n_samples"].eq(8).all()
    assert json.loads((tmp_path / "r" / "org__model-a.json").read_text())["n_left_out"] == 4
    np.testing.assert_allclose(table["score"], expected_scores(folders["a"], "pope", np.array(correct)).ravel(), rtol=1e-9)


def test_one_model_in_several_folders(folders, tmp_path, capsys) -> None:
    # model-a's pope samples recorded by a second run into another folder: the maps average both.
    more = write_synthetic_records(
        tmp_path / "more", model="org/model-a", n_layers=6, n_heads=4, n_samples=12, tasks=("seedbench",), seed=9, n_image_tokens=32
    )
    code, _, err = visheads(capsys, "rank", folders["a"], more, "--task", "pope", "--task", "seedbench", "--out", tmp_path / "r")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "r" / "org__model-a.csv").sort_values(["layer", "head"])
    both = np.concatenate(
        [load_records(f, progress=False).filter(tasks=t).stat("image_attn") for f, t in ((folders["a"], "pope"), (more, "seedbench"))]
    )
    np.testing.assert_allclose(table["image_attn"], both.astype(float).mean(axis=0).ravel(), rtol=1e-9)
    assert table["n_samples"].eq(24).all()
    again = tmp_path / "again"
    shutil.copytree(folders["a"], again)
    code, _, err = visheads(capsys, "rank", folders["a"], again, "--out", tmp_path / "r2")
    assert code == 2 and "24 samples were recorded in more than one folder (e.g. pointqa_visual_general/test/0 in" in error_line(err)
    assert not (tmp_path / "r2").exists()


def test_compare_writes_correlations_and_emds(folders, tmp_path, capsys) -> None:
    code, out, err = visheads(capsys, "compare", folders["a"], folders["a2"], folders["b"], "--stat", "image_attn", "--out", tmp_path)
    assert code == 0, err
    corr = pd.read_csv(tmp_path / "correlation.csv")
    pair = corr[(corr["task"] == "pope") & (corr["model_a"] == "org/model-a") & (corr["model_b"] == "org/model-a2")].iloc[0]
    a = load_records(folders["a"], progress=False).filter(tasks="pope").stat("image_attn").astype(float).mean(axis=0)
    a2 = load_records(folders["a2"], progress=False).filter(tasks="pope").stat("image_attn").astype(float).mean(axis=0)
    assert pair["r"] == pytest.approx(np.corrcoef(a.ravel(), a2.ravel())[0, 1]) and pair["grid"] == "heads"
    assert set(corr.loc[corr["model_b"] == "org/model-b", "grid"]) == {"depth6", "heads"}  # a vs b by depth profile, b vs b itself
    emd = pd.read_csv(tmp_path / "emd.csv")
    assert set(emd["model"]) == {"org/model-a", "org/model-a2", "org/model-b"} and emd["stat"].eq("image_attn").all()
    assert "r on pope:" in out and "emd on org/model-a:" in out


def test_compare_rankings_without_records(folders, tmp_path, capsys) -> None:
    for name in ("a", "a2"):
        assert visheads(capsys, "rank", folders[name], "--task", "pope", "--out", tmp_path)[0] == 0
    code, out, err = visheads(
        capsys,
        "compare",
        "--ranking",
        tmp_path / "org__model-a.csv",
        "--ranking",
        tmp_path / "org__model-a2.csv",
        "--out",
        tmp_path / "cmp",
    )
    assert code == 0, err
    corr = pd.read_csv(tmp_path / "cmp" / "correlation.csv")
    assert set(corr["task"]) == {"pope"}
    scores = [pd.read_csv(tmp_path / f"org__model-{n}.csv").sort_values(["layer", "head"])["score"] for n in ("a", "a2")]
    r = corr.loc[(corr["model_a"] == "org/model-a") & (corr["model_b"] == "org/model-a2"), "r"].iloc[0]
    assert r == pytest.approx(np.corrcoef(*scores)[0, 1])


def test_plot_writes_every_figure(folders, tmp_path, capsys) -> None:
    write_results(tmp_path / "out", "20250101_000000", "org/model-a", {"pope": {"pope_accuracy": 0.8527}})
    code, out, err = visheads(
        capsys, "plot", folders["a"], folders["a2"], folders["b"], "--results", tmp_path / "out", "--out", tmp_path / "fig"
    )
    assert code == 0, err
    stems = [
        "heatmap_image_attn",
        "heatmap_region_attn",
        "attention_vs_concentration",
        "layers_pointqa_visual_general",
        "layers_pope",
        "layer_profile_score",
        "correlation_score",
        "emd_score",
    ]
    for stem in stems:
        for suffix in (".png", ".pdf"):
            path = tmp_path / "fig" / f"{stem}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == sorted(f"{s}{x}" for s in stems for x in (".png", ".pdf"))


def test_leaderboard_command(tmp_path, capsys) -> None:
    write_results(tmp_path / "out", "20250101_000000", "m", {"pope": {"pope_accuracy": 0.85}})
    write_results(tmp_path / "out", "20250102_000000", "m", {"pope": {"pope_accuracy": 0.60}}, mask="early_top20", heads=["L0H1"])
    code, out, err = visheads(capsys, "leaderboard", tmp_path / "out", "--out", tmp_path / "lb")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert table[["mask", "value", "drop"]].values.tolist() == [["none", 85.0, 0.0], ["early_top20", 60.0, 25.0]]
    assert "25.00 ↓" in (tmp_path / "lb" / "leaderboard.md").read_text() and "25.00 ↓" in out
    assert "\\begin{tabular}" in (tmp_path / "lb" / "leaderboard.tex").read_text()


def test_missing_truncated_and_mixed_records_fail_cleanly(folders, tmp_path, capsys) -> None:
    code, _, err = visheads(capsys, "rank", tmp_path / "nowhere", "--out", tmp_path / "r")
    assert code == 2 and "record folder" in error_line(err) and "nowhere" in error_line(err)

    truncated = tmp_path / "truncated"
    shutil.copytree(folders["a"], truncated)
    shard = sorted((truncated / "shards").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    code, _, err = visheads(capsys, "rank", truncated, "--out", tmp_path / "r")
    assert code == 2 and str(shard) in error_line(err) and "truncated or corrupted" in error_line(err)

    mixed = tmp_path / "mixed"
    shutil.copytree(folders["a"], mixed)
    foreign = sorted((folders["b"] / "shards").glob("*.parquet"))[0]
    shutil.copy(foreign, mixed / "shards" / "rank7-00000.parquet")
    code, _, err = visheads(capsys, "plot", mixed, "--out", tmp_path / "r")
    assert code == 2 and "rank7-00000.parquet was recorded by another run" in error_line(err)

    same_name = tmp_path / "same_name"  # a different model recorded under model-a's name
    write_synthetic_records(same_name, model="org/model-a", n_layers=5, n_heads=4, n_samples=3, tasks=TASKS[:1], n_image_tokens=32)
    code, _, err = visheads(capsys, "compare", folders["a"], same_name, "--out", tmp_path / "r")
    assert code == 2 and "org/model-a has 6 x 4 heads in" in error_line(err) and str(same_name) in error_line(err)
    assert not (tmp_path / "r").exists()


def test_bad_tasks_masks_and_results_fail_cleanly(folders, tmp_path, capsys) -> None:
    code, _, err = visheads(capsys, "rank", folders["a"], "--task", "popee", "--out", tmp_path / "r")
    assert code == 2 and "no samples of task 'popee' (did you mean 'pope'?)" in error_line(err)

    masked = tmp_path / "masked"
    stats = synthetic_stats(np.random.default_rng(0), 2, 6, 4, n_image_tokens=32)
    with RecordWriter(
        masked, run={"model": "org/model-a", "position": "last_prompt", "mask": {"name": "early_top20"}}, n_layers=6, n_heads=4
    ) as writer:
        for i in range(2):
            sample = {name: values[i] for name, values in stats.items()}
            writer.add(RecordKey("pope", "test", i), sample, n_keys=40, n_image_tokens=32, n_region_tokens=3, answer="yes")
    code, _, err = visheads(capsys, "rank", masked, "--out", tmp_path / "r")
    assert code == 2 and "was recorded with heads masked" in error_line(err)

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "20250101_000000_results.json").write_text(json.dumps({"accuracy": {"pope": 0.8}}))
    code, _, err = visheads(capsys, "leaderboard", tmp_path / "other", "--out", tmp_path / "lb")
    assert code == 2 and "is not an lmms-eval results file" in error_line(err)
    code, _, err = visheads(capsys, "rank", folders["a"], "--task", "pope", "--correct-only", tmp_path / "other", "--out", tmp_path / "r")
    assert code == 2 and "is not an lmms-eval results file" in error_line(err)
    code, _, err = visheads(capsys, "leaderboard", tmp_path / "other", "--metric", "pope", "--out", tmp_path / "lb")
    assert code == 2 and "--metric 'pope' is not TASK=METRIC" in error_line(err)
    assert not (tmp_path / "r").exists() and not (tmp_path / "lb").exists()


def test_wrong_shape_rankings_fail_cleanly(folders, tmp_path, capsys) -> None:
    assert visheads(capsys, "rank", folders["a"], "--task", "pope", "--out", tmp_path)[0] == 0
    path = tmp_path / "org__model-a.csv"
    table = pd.read_csv(path)
    holed = tmp_path / "holed.csv"
    table[table["name"] != "L2H1"].assign(rank=lambda t: np.arange(1, len(t) + 1)).to_csv(holed, index=False)
    code, _, err = visheads(capsys, "compare", "--ranking", holed, "--out", tmp_path / "c")
    assert code == 2 and f"ranking file {holed} does not rank the 6 x 4 heads" in error_line(err)
    wide = tmp_path / "wide.csv"  # the same model name with another shape than its records
    extra = table[table["layer"] == 0].assign(head=lambda t: t["head"] + 4)
    pd.concat([table, extra]).assign(rank=lambda t: np.arange(1, len(t) + 1)).to_csv(wide, index=False)
    code, _, err = visheads(capsys, "compare", folders["a"], "--ranking", wide, "--task", "pointqa_visual_general", "--out", tmp_path / "c")
    assert code == 2 and "does not rank the 6 x 8 heads" in error_line(err)
    assert not (tmp_path / "c").exists()
    assert not math.isnan(table["score"].sum())
