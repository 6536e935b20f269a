"""Loaded models shared by consecutive lmms-eval evaluations in one process (``visheads sweep``, ``visheads demo``).

Inside :func:`sharing_loaded_models`, an evaluation of ``llava_visheads`` or ``visheads`` whose weights and loading
arguments (every model_arg but this project's own, batch size and device included) match an earlier one's gets
that model, already loaded, bound to its own masks, recording and means (:class:`SharedLoading`). Masks and
recorders are installed per ``generate`` call, so nothing of one evaluation stays on the model for the next.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from lmms_eval.utils import simple_parse_args_string

from visheads_eval.instrumentation import Instrumentation, remember_run
from visheads_eval.model_args import CheckedArgs

_shared: dict[tuple, SharedLoading] | None = None  # loaded models by (class, weights, loading args), while shared


@contextlib.contextmanager
def sharing_loaded_models() -> Iterator[None]:
    """While the block runs, evaluations with the same weights and loading arguments share one loaded model."""
    global _shared
    if _shared is not None:  # already sharing: an inner block shares the outer one's models
        yield
        return
    _shared = {}
    try:
        yield
    finally:
        _shared = None


class SharedLoading(abc.ABC):
    """Mixed in before an lmms-eval model class: its construction from ``--model_args`` reuses a shared model."""

    instrumentation: Instrumentation

    @classmethod
    @abc.abstractmethod
    def check_args(cls, model_args: dict[str, Any]) -> CheckedArgs:
        """The model_args checked without loading weights."""

    @abc.abstractmethod
    def instrument(self, instrumentation: Instrumentation) -> None:
        """Bind a run's masks, recording and means to the loaded model."""

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> Any:
        """lmms-eval's constructor from ``--model_args``; inside :func:`sharing_loaded_models` a model already
        loaded with the same weights and loading arguments is reused, instrumented for these model_args. The
        run's ``visheads`` block is kept for the results file."""
        if _shared is None:
            model = super().create_from_arg_string(arg_string, additional_config)  # type: ignore[misc]
        else:
            args = {**simple_parse_args_string(arg_string), **{k: v for k, v in (additional_config or {}).items() if v is not None}}
            checked = cls.check_args(args)
            key = (cls, checked.pretrained, json.dumps({k: str(v) for k, v in checked.parent.items()}, sort_keys=True))
            if key not in _shared:
                _shared[key] = cls(**args)
            else:
                _shared[key].instrument(Instrumentation(checked))
            model = _shared[key]
        remember_run(arg_string, model.instrumentation)
        return model

    def clean(self) -> None:
        """lmms-eval frees the model after each evaluation; a model shared by a sweep stays for the next one."""
        if _shared is not None and any(model is self for model in _shared.values()):
            return
        super().clean()  # type: ignore[misc]
