"""``visheads sweep``: a grid of masks on one loaded model writes what separate ``lmms_eval`` runs write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures.local_task import TASK_NAME
from visheads_eval.cli import main
from visheads_eval.lmms import runner
from visheads_eval.lmms.model import LlavaVisheadsChat
from visheads_eval.lmms.visheads import Visheads
from visheads_eval.masking.specs import spec_files
from visheads_eval.sweep import SweepPoint, expand_masks


def _visheads(*argv: str) -> int:
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    return int(stop.value.code or 0)


def _runs(out: Path) -> dict[str, dict]:
    """model_args -> (results, samples by doc) of every results file lmms-eval wrote under ``out``."""
    runs = {}
    for path in sorted(out.glob("*/*_results.json")):
        results = json.loads(path.read_text())
        stamp = path.name.removesuffix("_results.json")
        samples = {}
        for log in path.parent.glob(f"{stamp}_samples_*.jsonl"):
            samples[log.name.split("_samples_")[1]] = [json.loads(line) for line in log.read_text().splitlines()]
        runs[results["config"]["model_args"]] = {"results": results, "samples": samples}
    return runs


def test_paper_globs_and_seeds_expand_to_the_grid(tmp_path: Path) -> None:
    paper = [p.mask for p in expand_masks(["paper"])]
    assert paper == list(spec_files(None)) and len(paper) == 29, "3 stages x top/random x k 10/20/30/50, 4 others, none"
    assert sum(name.startswith(("early_others",)) for name in paper) == 4 and "none" in paper
    assert expand_masks(["early_top*", "L2H5+L3H1"], seeds=[0, 1]) == [
        SweepPoint("early_top10"),
        SweepPoint("early_top20"),
        SweepPoint("early_top30"),
        SweepPoint("early_top50"),
        SweepPoint("L2H5+L3H1"),
    ]
    assert expand_masks(["early_random10", "early_others20"], seeds=[3, 4]) == [
        SweepPoint("early_random10", 3),
        SweepPoint("early_random10", 4),
        SweepPoint("early_others20", 3),
        SweepPoint("early_others20", 4),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, family, model_class",
    [
        ("llava_visheads", "llava_llama", LlavaVisheadsChat),
        ("visheads", "qwen2_5_vl", Visheads),
    ],
)
def test_a_sweep_writes_the_results_of_separate_runs_on_one_model_load(
    tiny_models: dict[str, Path],
    count_task: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    model: str,
    family: str,
    model_class: type,
) -> None:
    pretrained = str(tiny_models[family])
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "two_random.yaml").write_text("description: two random heads\nselect: {stage: all, order: random, k: 2}\nmode: zero\n")
    loads = []
    init = model_class.__init__
    monkeypatch.setattr(model_class, "__init__", lambda self, *a, **k: loads.append(1) or init(self, *a, **k))
    # A run without a mask argument, on the sweep's task and a second one, before the sweep's mask=none
    # run: both are the unmasked run, the sweep's (newer) for its task and this one for the other.
    tasks = shutil.copytree(count_task, tmp_path / "tasks")
    (tasks / "twin.yaml").write_text((tasks / f"{TASK_NAME}.yaml").read_text().replace(f"task: {TASK_NAME}", "task: visheads_count_twin"))
    assert (
        runner.run(
            [
                "--model",
                model,
                "--model_args",
                f"pretrained={pretrained}",
                "--tasks",
                f"{TASK_NAME},visheads_count_twin",
                "--include_path",
                str(tasks),
                "--batch_size",
                "2",
                "--log_samples",
                "--output_path",
                str(tmp_path / "sweep"),
            ]
        )
        == 0
    )
    loads.clear()
    argv = [
        "sweep",
        "--model",
        model,
        "--pretrained",
        pretrained,
        "--masks",
        "none",
        "L1H2+L2H0",
        "two_random",
        "--seeds",
        "0",
        "1",
        "--mask-dir",
        str(masks),
        "--tasks",
        TASK_NAME,
        "--include_path",
        str(count_task),
        "--batch_size",
        "2",
        "--output_path",
        str(tmp_path / "sweep"),
    ]
    assert _visheads(*argv) == 0
    assert len(loads) == 1, "the model loads once for the whole grid"
    printed = capsys.readouterr().out
    assert "[4/4] two_random seed=1:" in printed and "exact_match" in printed
    swept = _runs(tmp_path / "sweep")
    assert len(swept) == 5

    separate_runs = {}
    for index, own in enumerate(("mask=L1H2+L2H0", "mask=two_random,mask_seed=1")):
        model_args = f"pretrained={pretrained},mask_dir={masks},{own}"
        out = tmp_path / f"separate{index}"
        assert (
            runner.run(
                [
                    "--model",
                    model,
                    "--model_args",
                    model_args,
                    "--tasks",
                    TASK_NAME,
                    "--include_path",
                    str(count_task),
                    "--batch_size",
                    "2",
                    "--log_samples",
                    "--output_path",
                    str(out),
                ]
            )
            == 0
        )
        separate_runs.update(_runs(out))
    assert len(separate_runs) == 2
    for model_args, separate in separate_runs.items():
        ours = swept[model_args]
        assert ours["results"]["results"] == separate["results"]["results"]
        assert ours["results"]["visheads"] == separate["results"]["visheads"]
        assert ours["results"]["visheads"]["mask"]["heads"], "the block says which heads were removed"
        for task, samples in separate["samples"].items():
            assert [s["filtered_resps"] for s in ours["samples"][task]] == [s["filtered_resps"] for s in samples]

    assert _visheads(*argv) == 0, "a second sweep reuses every point"
    assert capsys.readouterr().out.count(": reused") == 4
    assert len(_runs(tmp_path / "sweep")) == 5
    assert _visheads("leaderboard", str(tmp_path / "sweep"), "--out", str(tmp_path / "reports")) == 0
    assert "two_random" in (tmp_path / "reports" / "leaderboard.md").read_text()


def test_evaluations_in_one_process_get_distinct_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    """lmms-eval names results files by the second (its get_datetime_str): back-to-back evaluations in one
    process (a sweep's fast points, a run just before a sweep) must not share one, or the later overwrites
    the earlier's files."""
    import argparse

    import lmms_eval.__main__ as lmms_main
    from lmms_eval.utils import get_datetime_str

    stamps = []
    monkeypatch.setattr(lmms_main, "cli_evaluate", lambda args: stamps.append(get_datetime_str()))
    for _ in range(3):
        assert runner._evaluate(argparse.Namespace(verbosity="WARNING")) == 0
    assert len(set(stamps)) == 3, stamps
