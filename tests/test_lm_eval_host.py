"""``llava_visheads`` in lm-evaluation-harness, through ``visheads lm-eval``: the organism on a PointQA task
scores as in lmms-eval and writes the same records; bad model_args stop before the model loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visheads_eval.cli import main
from visheads_eval.lmms import runner
from visheads_eval.records import load_records
from visheads_eval.records.validate import value_problems

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts

TASK = "pointqa_visual_general"
LIMIT = 24


def _visheads(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    return stop.value.code, capsys.readouterr().err


def test_lm_eval_run_scores_and_records_as_the_lmms_eval_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = "mask=L2H1,position=last_prompt,logit_lens=true"
    code, err = _visheads(
        capsys,
        "lm-eval",
        "--model",
        "llava_visheads",
        "--model_args",
        f"pretrained=visheads-tiny,{own},record={tmp_path / 'lm_rec'}",
        "--tasks",
        TASK,
        "--apply_chat_template",
        "--limit",
        LIMIT,
        "--batch_size",
        4,
        "--output_path",
        tmp_path / "lm_out",
        "--log_samples",
    )
    assert code == 0, err
    (results_file,) = (tmp_path / "lm_out").glob("*/results_*.json")
    results = json.loads(results_file.read_text())
    block = results["config"]["visheads"]  # lm-eval merges get_model_info() into its config
    assert block["pretrained"] == "visheads-tiny" and block["mask"]["heads"] == ["L2H1"]
    assert block["record"] == {"dir": str(tmp_path / "lm_rec"), "position": "last_prompt", "logit_lens": True}

    assert (
        runner.run(
            [
                "--model",
                "llava_visheads",
                "--model_args",
                f"pretrained=visheads-tiny,{own},record={tmp_path / 'lmms_rec'}",
                "--tasks",
                TASK,
                "--limit",
                str(LIMIT),
                "--batch_size",
                "4",
                "--output_path",
                str(tmp_path / "lmms_out"),
            ]
        )
        == 0
    )
    (lmms_file,) = (tmp_path / "lmms_out").glob("*/*_results.json")
    lmms = json.loads(lmms_file.read_text())
    assert results["results"][TASK]["pointqa_acc,none"] == lmms["results"][TASK]["pointqa_acc,none"]

    ours, theirs = load_records(tmp_path / "lm_rec"), load_records(tmp_path / "lmms_rec")
    assert list(ours.meta["doc_id"]) == list(theirs.meta["doc_id"]) == list(range(LIMIT))
    assert list(ours.meta["task"]) == list(theirs.meta["task"]) and list(ours.meta["split"]) == list(theirs.meta["split"])
    for column in ("answer", "n_keys", "n_image_tokens", "n_region_tokens", "lens_answer_token"):
        assert list(ours.meta[column]) == list(theirs.meta[column]), column
    for name in ("image_attn", "region_attn", "text_attn", "concentration"):
        np.testing.assert_allclose(ours.stat(name), theirs.stat(name), atol=1e-4, err_msg=name)
    for name in ("answer_logprob", "kl_to_final"):
        np.testing.assert_allclose(ours.lens(name), theirs.lens(name), atol=1e-4, err_msg=name)
    assert ours.run["mask"] == theirs.run["mask"] and ours.run["weights"] == theirs.run["weights"]
    assert value_problems(ours) == []


@pytest.mark.parametrize(
    "own, message",
    [
        ("mask=early_top2O", "did you mean 'early_top20'"),
        ("position=first", "position=first is not one of last_prompt, answer"),
        ("logit_lens=true", "logit_lens=true is recorded with the heads: give record=<dir> as well"),
        ("image_max_side=224", "llava_visheads keeps images as the task gives them"),
        ("mask_dri=specs", "unknown model_args key 'mask_dri' for llava_visheads (did you mean 'mask_dir'?)"),
    ],
)
def test_bad_model_args_stop_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str], own: str, message: str) -> None:
    code, err = _visheads(
        capsys,
        "lm-eval",
        "--model",
        "llava_visheads",
        "--model_args",
        f"pretrained=visheads-tiny,{own}",
        "--tasks",
        TASK,
        "--limit",
        2,
        "--output_path",
        tmp_path / "out",
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("visheads: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "out").exists()
