"""The ``visheads`` block of the lmms-eval evaluation in progress, for its results file.

lmms-eval's models have no way into its results (it has no ``get_model_info()``, which lm-eval merges into
its results' config). So the ``lmms_eval`` command opens :func:`evaluation_scope` around each evaluation,
the visheads model built inside it reports what the run does (:func:`report`), and the results are
annotated from the scope: the block of this evaluation's model, whatever model_args spelled it, and none
when no visheads model ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from visheads_eval.instrumentation import Instrumentation

_reported: ContextVar[list[dict[str, Any]] | None] = ContextVar("visheads_reported_blocks", default=None)


@contextlib.contextmanager
def evaluation_scope() -> Iterator[list[dict[str, Any]]]:
    """One evaluation: the blocks its visheads models report, in order (one per model lmms-eval built)."""
    blocks: list[dict[str, Any]] = []
    token = _reported.set(blocks)
    try:
        yield blocks
    finally:
        _reported.reset(token)


def report(instrumentation: Instrumentation) -> None:
    """Keep what ``instrumentation``'s run does to the model, as it is now (a model shared by a sweep is bound to
    the next point's run later), for the results of the evaluation in progress; outside one, nothing to annotate."""
    blocks = _reported.get()
    if blocks is not None:
        blocks.append(instrumentation.describe())
