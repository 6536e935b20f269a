"""The package installs as an lmms-eval extension: entry point, console script, shipped data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
    )
    (built,) = out.glob("visheads_eval-*.whl")
    return built


def test_wheel_ships_tasks_and_head_masks_as_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("tasks", "lm_eval_tasks", "head_masks"):
        shipped = [p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert shipped, f"{folder}/ is empty"
        for name in shipped:
            assert f"visheads_eval/{name}" in names


def test_wheel_is_the_tool_without_training_code_or_test_fixtures(wheel: Path) -> None:
    names = [name for name in zipfile.ZipFile(wheel).namelist() if not name.startswith("visheads_eval-")]
    assert all(name.startswith("visheads_eval/") for name in names), "one top-level package, no tools/, fixtures/ or tests/"
    stems = {Path(name).stem for name in names if name.endswith(".py")}
    for left_out in (
        "train",
        "batches",
        "runs",
        "synthetic",
        "synthetic_records",
        "synthetic_results",
        "tokenizer",
        "processor",
        "lock",
        "tiny_models",
        "local_task",
        "pointqa_docs",
    ):
        assert left_out not in stems, f"{left_out}.py is in the wheel"
    weights = {Path(name).name for name in names if name.startswith("visheads_eval/organism/weights/")}
    assert {"model.safetensors", "config.json", "tokenizer.json", "processor_config.json", "train_config.json", "summary.json"} <= weights
    assert "train_log.jsonl" not in weights
    smol = "visheads_eval/organism/smol_parts/"
    parts = {name.removeprefix(smol) for name in names if name.startswith(smol)}
    assert parts == {"parts.json", "projector.safetensors", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
    assert {"visheads_eval/tasks/pointqa/pointqa_plain_colour.yaml", "visheads_eval/tasks/pointqa/_attribute_template_yaml"} <= set(names)


@pytest.mark.slow
def test_every_module_of_the_wheel_imports_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    """Runtime code needs nothing from the checkout (tools/, fixtures/, tests/): each module imports from the unpacked
    wheel, with the checkout off the path, and the organism's config loads from it."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    script = """
import importlib, pathlib, pkgutil, sys
site, checkout = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
sys.path[:] = [str(site)] + [p for p in sys.path if p and pathlib.Path(p).resolve() != checkout]  # the editable install's entry
import visheads_eval
assert pathlib.Path(visheads_eval.__file__).is_relative_to(site), visheads_eval.__file__
for module in pkgutil.walk_packages(visheads_eval.__path__, "visheads_eval."):
    importlib.import_module(module.name)
from visheads_eval.model_args import resolve_pretrained
from transformers import AutoConfig
AutoConfig.from_pretrained(resolve_pretrained("visheads-tiny"))
sources = [checkout / name for name in ("visheads_eval", "tools", "fixtures", "tests", "benchmarks")]
files = {m.__name__: pathlib.Path(getattr(m, "__file__", None) or "/").resolve() for m in list(sys.modules.values())}
loaded = [name for name, path in files.items() if any(path.is_relative_to(source) for source in sources)]
assert not loaded, loaded
print("ok")
"""
    env = {**os.environ, "VISHEADS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "site"), str(REPO)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
