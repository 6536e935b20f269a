"""The user's cache: where visheads_eval keeps the models it installs for a user, never inside the package.

``$VISHEADS_CACHE`` if set, else ``$XDG_CACHE_HOME/visheads_eval``, else ``~/.cache/visheads_eval``. A model
named ``NAME`` lives in ``<cache>/models/NAME/`` as a ``save_pretrained`` folder; deleting that folder
uninstalls it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The root of the user's visheads_eval cache (it may not exist yet)."""
    if os.environ.get("VISHEADS_CACHE"):
        return Path(os.environ["VISHEADS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "visheads_eval"


def model_dir(name: str) -> Path:
    """The folder of the cached model ``name`` (it may not exist yet)."""
    return cache_dir() / "models" / name
