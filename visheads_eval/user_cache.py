"""The user's folder: where visheads_eval keeps what it makes for a user, never inside the package.

One root, ``$VISHEADS_CACHE`` if set, else ``$XDG_CACHE_HOME/visheads_eval``, else ``~/.cache/visheads_eval``:

- ``<cache>/models/NAME/``: a model installed under ``NAME`` (a ``save_pretrained`` folder; deleting it
  uninstalls it);
- ``<cache>/rankings/<model>.csv``: a model's default ranking, written by ``visheads rank`` and read by mask
  specs that pick ``top`` or ``others`` heads.
"""

from __future__ import annotations

import os
from pathlib import Path

from visheads_eval.errors import VisheadsError


def cache_dir() -> Path:
    """The root of the user's visheads_eval cache (it may not exist yet)."""
    if os.environ.get("VISHEADS_HOME") and not os.environ.get("VISHEADS_CACHE"):
        raise VisheadsError(
            f"VISHEADS_HOME is now VISHEADS_CACHE (one folder for models and rankings): set VISHEADS_CACHE={os.environ['VISHEADS_HOME']}"
        )
    if os.environ.get("VISHEADS_CACHE"):
        return Path(os.environ["VISHEADS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "visheads_eval"


def model_dir(name: str) -> Path:
    """The folder of the cached model ``name`` (it may not exist yet)."""
    return cache_dir() / "models" / name


def rankings_dir() -> Path:
    """The folder of the models' default rankings (it may not exist yet)."""
    return cache_dir() / "rankings"
