"""The ``lmms_eval`` command end to end: results on disk, and failures that exit non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import LlavaForConditionalGeneration

from fixtures.local_task import TASK_NAME
from visheads_eval.lmms import runner

BIN = Path(sys.executable).parent


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _results(output: Path) -> dict:
    (path,) = output.glob("*/*_results.json")
    return json.loads(path.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("command", [["lmms_eval"], ["python", "-m", "lmms_eval"]], ids=["lmms_eval", "python -m"])
def test_evaluation_writes_results(tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, command: list[str]) -> None:
    executable = [str(BIN / command[0]), *command[1:]]
    done = _run(
        [
            *executable,
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained={tiny_models['llava_mistral']}",
            "--tasks",
            TASK_NAME,
            "--include_path",
            str(count_task),
            "--output_path",
            str(tmp_path / "out"),
            "--log_samples",
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = _results(tmp_path / "out")
    assert set(results["results"][TASK_NAME]) >= {"exact_match,none"}
    assert 0.0 <= results["results"][TASK_NAME]["exact_match,none"] <= 1.0
    assert results["config"]["model_args"] == f"pretrained={tiny_models['llava_mistral']}"
    (samples,) = (tmp_path / "out").glob(f"*/*_samples_{TASK_NAME}.jsonl")
    assert len(samples.read_text().splitlines()) == 6
    if command == ["lmms_eval"]:
        assert results["visheads"]["n_layers"] == 3 and results["visheads"]["n_heads"] == 4
        assert results["visheads"]["model_class"] == "LlavaForConditionalGeneration"


@pytest.mark.slow
def test_bad_model_args_key_exits_non_zero_with_one_line(tiny_models: dict[str, Path], count_task: Path, tmp_path: Path) -> None:
    done = _run(
        [
            str(BIN / "lmms_eval"),
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained={tiny_models['llava_llama']},mask_dirr=x",
            "--tasks",
            TASK_NAME,
            "--include_path",
            str(count_task),
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "unknown model_args key 'mask_dirr'" in done.stderr


@pytest.mark.slow
def test_unknown_task_exits_non_zero(tiny_models: dict[str, Path], count_task: Path, tmp_path: Path) -> None:
    done = _run(
        [
            str(BIN / "lmms_eval"),
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained={tiny_models['llava_llama']}",
            "--tasks",
            "visheads_count_tset",
            "--include_path",
            str(count_task),
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert f"unknown task 'visheads_count_tset' (did you mean '{TASK_NAME}'?)" in done.stderr


def test_generation_error_fails_the_run_instead_of_an_empty_answer(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_generate(self, *args, **kwargs):
        raise RuntimeError("out of memory (injected)")

    monkeypatch.setattr(LlavaForConditionalGeneration, "generate", broken_generate)
    code = runner.run(
        [
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained={tiny_models['llava_llama']}",
            "--tasks",
            TASK_NAME,
            "--include_path",
            str(count_task),
            "--output_path",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("lmms_eval: error: evaluation failed: GenerationFailed: generation failed on task")
    assert "out of memory (injected)" in message
    assert not list((tmp_path / "out").glob("*/*_results.json")), "a failed run must not leave a results file"
