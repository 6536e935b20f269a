"""User-facing errors: one line that says what is wrong and how to fix it.

Every check on user input (model_args, mask specs, task names, record folders, result files) raises
:class:`VisheadsError`; the command-line entry points print its message alone and exit non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VisheadsError(ValueError):
    """Bad input or a failed run, with a message meant to be shown to the user as is."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix for the closest of ``choices``, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
