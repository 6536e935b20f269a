"""The ``with`` protocol shared by everything that hooks into a model while a block runs.

A subclass says which hooks to install in ``_install(stack)``, registering how to remove each on the
``ExitStack``; entering installs them (and removes what it installed if installing fails half-way),
leaving removes them all, also after an error, so the model is exactly as before.
"""

from __future__ import annotations

import contextlib
from typing import Any, Self


class HookContext:
    """Base of HeadRecorder, HeadMask and HeadMeans: hooks that live exactly as long as a ``with`` block."""

    _exit_stack: contextlib.ExitStack | None = None

    def _install(self, stack: contextlib.ExitStack) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        if self._exit_stack is not None:
            raise RuntimeError(f"this {type(self).__name__} is already active; it cannot be entered twice at once")
        stack = contextlib.ExitStack()
        with stack:
            self._install(stack)
            self._exit_stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            stack.close()
