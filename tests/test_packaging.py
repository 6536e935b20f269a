"""The package installs as an lmms-eval extension: entry point, console script, shipped data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from lmms_eval.models import MODEL_REGISTRY_V2
from lmms_eval.models.chat.llava_hf import LlavaHf as LlavaHfChat
from lmms_eval.models.simple.llava_hf import LlavaHf as LlavaHfSimple

REPO = Path(__file__).resolve().parents[1]


def test_llava_visheads_is_registered_with_a_chat_and_a_simple_class() -> None:
    chat = MODEL_REGISTRY_V2.get_model_class("llava_visheads")
    simple = MODEL_REGISTRY_V2.get_model_class("llava_visheads", force_simple=True)
    assert issubclass(chat, LlavaHfChat) and chat.is_simple is False
    assert issubclass(simple, LlavaHfSimple) and simple.is_simple is True


def test_lmms_eval_console_script_is_installed() -> None:
    assert (Path(sys.executable).parent / "lmms_eval").is_file()


def test_no_lm_eval_console_script_is_installed() -> None:
    """lm-eval owns ``lm_eval`` and ``lm-eval``; this package reaches lm-eval through ``visheads lm-eval``."""
    from importlib.metadata import distribution

    scripts = {entry.name for entry in distribution("visheads_eval").entry_points if entry.group == "console_scripts"}
    assert not scripts & {"lm_eval", "lm-eval"}


def test_wheel_ships_tasks_and_head_masks_as_package_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
    )
    (wheel,) = tmp_path.glob("visheads_eval-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("tasks", "lm_eval_tasks", "head_masks"):
        shipped = [p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert shipped, f"{folder}/ is empty"
        for name in shipped:
            assert f"visheads_eval/{name}" in names
