"""Running a host's own command line in this process: the hosts' CLIs parse ``sys.argv``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def argv(arguments: list[str]) -> Iterator[None]:
    """``sys.argv`` is ``arguments`` while the block runs; the caller's is back afterwards, also after an error."""
    saved = sys.argv
    sys.argv = arguments
    try:
        yield
    finally:
        sys.argv = saved
