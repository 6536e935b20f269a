"""The model_args of ``llava_visheads`` in lmms-eval: which keys exist, and checks that run before any weights load.

Keys are lmms-eval's ``llava_hf`` arguments plus this project's own (``visheads_eval.model_args``). A typo, a ``pretrained`` path that
does not exist, or a model that is not LLaVA-family fails here with one line, before the model loads.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.model_args import DEFAULT_PRETRAINED, OWN_ARGS, CheckedArgs, check_model

# Keys that lmms-eval's evaluator passes to every model besides the user's model_args.
EVALUATOR_ARGS = ("max_batch_size",)


def parent_arg_names() -> tuple[str, ...]:
    """The keyword arguments of lmms-eval's ``llava_hf`` adapter."""
    from lmms_eval.models.simple.llava_hf import LlavaHf

    params = inspect.signature(LlavaHf.__init__).parameters.values()
    return tuple(p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD)


def known_arg_names() -> tuple[str, ...]:
    return (*parent_arg_names(), *OWN_ARGS, *EVALUATOR_ARGS)


def check_arg_names(model_args: dict[str, Any]) -> None:
    """Raise on the first key that neither ``llava_hf`` nor this project knows."""
    known = known_arg_names()
    for key in model_args:
        if key not in known:
            raise VisheadsError(
                f"unknown model_args key '{key}' for llava_visheads{did_you_mean(key, known)}; "
                f"known keys: {', '.join(sorted(known))}"
            )


def check_batch_size(batch_size: Any) -> None:
    """A whole number of documents per ``generate`` (both adapters batch them)."""
    if not str(batch_size).isdigit() or int(batch_size) < 1:
        raise VisheadsError(f"batch_size={batch_size} is not a whole number of documents; give e.g. --batch_size 8")


def check_model_args(model_args: dict[str, Any]) -> CheckedArgs:
    """Check every key and value that can be checked without loading weights, and split them."""
    kwargs = dict(model_args)
    check_arg_names(kwargs)
    own = {key: kwargs.pop(key) for key in list(kwargs) if key in OWN_ARGS}
    kwargs.pop("max_batch_size", None)  # batches are --batch_size documents, never grown automatically
    check_batch_size(kwargs.get("batch_size", 1))
    given = str(kwargs.pop("pretrained", DEFAULT_PRETRAINED))
    if kwargs.get("device") is None:
        kwargs["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    if not kwargs.get("device_map") and (int(os.environ.get("WORLD_SIZE", "1")) == 1 or not str(kwargs["device"]).startswith("cuda")):
        # llava_hf passes its default device_map="" to from_pretrained, which transformers 5 rejects;
        # with several processes on GPUs it picks cuda:<rank> itself.
        kwargs["device_map"] = str(kwargs["device"])
    return check_model(given, own, revision=str(kwargs.get("revision", "main")), dtype=kwargs.get("dtype", "auto"),
                       trust_remote_code=bool(kwargs.get("trust_remote_code", False)), parent=kwargs)
