"""Atomic output files and folders: every table and figure is written to a hidden temporary file, then renamed;
a folder (a task folder, an assembled model) is built in a hidden temporary sibling, then renamed.

A reader never sees a half-written file or folder, and a failure leaves the previous one (if any) in place.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from visheads_eval.errors import VisheadsError


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_folder(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out`` that becomes ``out`` when the block succeeds.

    ``out`` must not exist unless ``overwrite`` is given; on any error nothing is left behind.
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise VisheadsError(f"{out} already exists; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise VisheadsError(f"{out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; the finished folder gets the usual permissions
    try:
        yield staging
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, retired / out.name)
            os.replace(staging, out)
            shutil.rmtree(retired)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
