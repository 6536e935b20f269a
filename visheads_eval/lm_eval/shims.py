"""Every place visheads_eval reaches into lm-evaluation-harness beyond its public API, each a context manager
that restores what it changed on exit, also after an error. ``tests/test_shims.py`` checks that each
attribute reached still exists with the signature used here, and names this module when lm-eval changes it.

- :func:`shipped_tasks_on_the_path`: ``TaskManager.__init__(include_path=...)`` searches extra task folders;
  lm-eval's ``--include_path`` takes one folder, which the user's own may already occupy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def shipped_tasks_on_the_path(folder: str) -> Iterator[None]:
    """lm-eval's TaskManager also searches ``folder`` (after the user's ``--include_path``)."""
    from lm_eval.tasks import TaskManager

    original = TaskManager.__init__

    def init(self: TaskManager, *args: object, include_path: object = None, **kwargs: object) -> None:
        given = [] if include_path is None else list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
        original(self, *args, include_path=[*given, folder], **kwargs)

    TaskManager.__init__ = init
    try:
        yield
    finally:
        TaskManager.__init__ = original
