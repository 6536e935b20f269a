"""Loaded models shared by consecutive evaluations in one process (``visheads sweep``, ``visheads demo``), in either host.

Inside :func:`sharing_loaded_models`, an evaluation whose model class, weights and loading arguments (every
model_arg but this project's own, batch size and device included) match an earlier one's gets that model,
already loaded, bound to its own masks, recording and means (:func:`shared_or_loaded`). Masks and recorders
are installed per ``generate`` call, so nothing of one evaluation stays on the model for the next.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

from visheads_eval.instrumentation import Instrumentation
from visheads_eval.model_args import OWN_ARGS, CheckedArgs


class Shareable(abc.ABC):
    """What a host's model class offers so that a sweep can reuse it: its model_args checked without loading
    weights, and a loaded model bound to another run's masks, recording and means."""

    instrumentation: Instrumentation

    @classmethod
    @abc.abstractmethod
    def check_args(cls, model_args: dict[str, Any]) -> CheckedArgs:
        """The model_args checked without loading weights."""

    @abc.abstractmethod
    def instrument(self, instrumentation: Instrumentation) -> None:
        """Bind a run's masks, recording and means to the loaded model."""


M = TypeVar("M", bound=Shareable)
_shared: dict[tuple, Shareable] | None = None  # loaded models by (class, loading args), while shared


@contextlib.contextmanager
def sharing_loaded_models() -> Iterator[None]:
    """While the block runs, evaluations with the same model class, weights and loading arguments share one model."""
    global _shared
    if _shared is not None:  # already sharing: an inner block shares the outer one's models
        yield
        return
    _shared = {}
    try:
        yield
    finally:
        _shared = None


def shared_or_loaded(cls: type[M], model_args: Mapping[str, Any], load: Callable[[], M]) -> M:
    """The model of ``cls`` for ``model_args``: ``load()`` (the host's own constructor), or inside
    :func:`sharing_loaded_models` the one loaded earlier with the same loading arguments, instrumented for
    these model_args."""
    if _shared is None:
        model = load()
    else:
        loading = {key: str(value) for key, value in model_args.items() if key not in OWN_ARGS}
        key = (cls, json.dumps(loading, sort_keys=True))
        if key in _shared:
            model = cast(M, _shared[key])  # stored under its own class
            model.instrument(Instrumentation(cls.check_args(dict(model_args))))
        else:
            model = _shared[key] = load()
    return model


def is_shared(model: object) -> bool:
    """Whether ``model`` is kept for the next evaluation of a sweep (so a host must not free it)."""
    return _shared is not None and any(shared is model for shared in _shared.values())
