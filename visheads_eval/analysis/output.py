"""Atomic output files: every table and figure is written to a hidden temporary file, then renamed.

A reader never sees a half-written file, and a failure leaves the previous file (if any) in place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then move the result to ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda partial: partial.write_text(text, encoding="utf-8"))


def safe_file_name(name: str) -> str:
    """``name`` (a task, a model id) with every run of characters unsafe in file names replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)
