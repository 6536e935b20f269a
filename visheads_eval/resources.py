"""Where the files that ship with visheads_eval live: lmms-eval and lm-eval task YAMLs and head-mask specs.

In a wheel they are package data (``visheads_eval/tasks``, ``visheads_eval/lm_eval_tasks``,
``visheads_eval/head_masks``); in a source checkout (editable install) they are the top-level folders of
the same names.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _shipped_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"visheads_eval is installed without its '{name}' folder; reinstall the package")


def tasks_dir() -> Path:
    """The folder of lmms-eval task YAMLs shipped with visheads_eval (pass it as ``--include_path``)."""
    return _shipped_dir("tasks")


def lm_eval_tasks_dir() -> Path:
    """The folder of lm-eval task YAMLs shipped with visheads_eval (the PointQA tasks for lm-eval)."""
    return _shipped_dir("lm_eval_tasks")


def head_masks_dir() -> Path:
    """The folder of shipped head-mask specs (one YAML file per spec)."""
    return _shipped_dir("head_masks")
