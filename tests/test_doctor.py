"""``visheads doctor`` on this environment, and on the same environment with broken parts simulated
(fake distributions and modules placed first on sys.path, never uninstalling anything)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from visheads_eval.cli import main

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def _fake_distribution(root: Path, name: str, version: str, module_source: str | None = None) -> None:
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if module_source is not None:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(module_source)


def test_healthy_environment_passes() -> None:
    done = subprocess.run(
        [str(BIN / "visheads"), "doctor"], capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"ok      torch {metadata.version('torch')} (tested: >=2.13,<2.14)" in lines
    assert f"ok      lmms-eval {metadata.version('lmms-eval')} (tested: >=0.7.3,<0.8)" in lines
    assert "ok      llava_visheads and visheads are registered with lmms-eval" in lines
    assert "ok      llava_visheads and visheads are registered with lm-eval (visheads lm-eval)" in lines
    assert "ok      lmms_eval.evaluator imports" in lines
    assert any(line.startswith("note    transformers cannot build video processors without torchvision: Qwen2/2.5/3-VL") for line in lines)
    assert f"ok      visheads-tiny: the shipped organism ({REPO / 'visheads_eval' / 'organism' / 'weights'})" in lines
    launcher = [line for line in lines if "accelerate launch" in line]
    assert len(launcher) == 1 and launcher[0].startswith(
        ("ok      accelerate launch is available", "note    accelerate launch does not start")
    )
    assert not any(line.startswith("PROBLEM") for line in lines)
    assert lines[-1] == "all checks passed"


def test_broken_environment_names_each_problem_and_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The filelock release that broke lmms-eval, and a CUDA torchvision that cannot load beside a CPU torch.
    _fake_distribution(tmp_path, "filelock", "4.3.1")
    _fake_distribution(tmp_path, "torchvision", "0.28.0", "raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setitem(sys.modules, "decord", None)  # import decord now fails as if it were missing
    real_entry_points = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points", lambda **kw: [] if kw.get("group") == "lmms_eval.models" else real_entry_points(**kw))

    with pytest.raises(SystemExit) as exit_info:
        main(["doctor"])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert problems == [
        "PROBLEM filelock 4.3.1 is outside the tested range >=4.2,<4.3: pip install -c locks/constraints.txt 'filelock>=4.2,<4.3'",
        "PROBLEM torchvision 0.28.0 does not import (RuntimeError: operator torchvision::nms does not exist), which breaks "
        "transformers.pipelines and lmms-eval: pip uninstall torchvision, or install the torchvision built for your torch",
        "PROBLEM decord does not import (ModuleNotFoundError: import of decord halted; None in sys.modules): "
        "lmms-eval's llava_hf imports it; pip install -c locks/constraints.txt decord",
        "PROBLEM no llava_visheads in the lmms_eval.models entry points: reinstall visheads_eval "
        "(pip install -c locks/constraints.txt visheads_eval, or make setup)",
    ]
    assert lines[-1] == "4 problems found"
