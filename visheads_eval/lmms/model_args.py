"""The model_args of ``llava_visheads`` and ``visheads`` in lmms-eval: which keys exist, and checks that run before any weights load.

``llava_visheads``'s keys are lmms-eval's ``llava_hf`` arguments plus this project's own (``visheads_eval.model_args``);
``visheads``'s are :data:`VISHEADS_ARGS`, the prompting settings its family's entry allows overriding, and this project's own.
A typo, a ``pretrained`` path that does not exist, or a model of a family the model does not take fails here with
one line, before the model loads.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Collection
from typing import Any

import torch

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.model_args import DEFAULT_PRETRAINED, LLAVA_FAMILY, OWN_ARGS, CheckedArgs, check_model, flag

# Keys that lmms-eval's evaluator passes to every model besides the user's model_args.
EVALUATOR_ARGS = ("max_batch_size",)

# The model_args of ``visheads`` besides this project's own and the prompting settings of its family.
VISHEADS_ARGS = {
    "revision": "the checkpoint's revision on the hub (default main)",
    "dtype": "the weights' dtype: auto (the checkpoint's), float32, bfloat16 or float16",
    "device": "where the model runs (default cuda when there is one, else cpu)",
    "device_map": "transformers' device_map (default: the device)",
    "attn_implementation": "transformers' attention implementation (sdpa, eager, ...)",
    "trust_remote_code": "let transformers run the checkpoint's own code",
    "use_cache": "keep the key/value cache while generating (default true)",
    "batch_size": "documents per generate call",
    "system_prompt": "the system prompt (default: that of lmms-eval's adapter for the family; none sends none)",
}


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
                f"unknown model_args key '{key}' for llava_visheads{did_you_mean(key, known)}; known keys: {', '.join(sorted(known))}"
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
    return check_model(
        given,
        own,
        revision=str(kwargs.get("revision", "main")),
        dtype=kwargs.get("dtype", "auto"),
        trust_remote_code=bool(kwargs.get("trust_remote_code", False)),
        parent=kwargs,
        model_types=LLAVA_FAMILY,
        model_id="llava_visheads",
    )


def check_visheads_model_args(model_args: dict[str, Any], prompting_keys: Collection[str] = ()) -> CheckedArgs:
    """``visheads``'s model_args checked without loading weights and split: this project's own, and the rest
    (loading, batching and prompting settings, with the device and device_map filled in). ``prompting_keys`` are
    the prompting settings some family lets a user override; which ones apply is the family's to say."""
    kwargs = dict(model_args)
    known = (*VISHEADS_ARGS, *prompting_keys, *OWN_ARGS, *EVALUATOR_ARGS)
    for key in kwargs:
        if key != "pretrained" and key not in known:
            raise VisheadsError(
                f"unknown model_args key '{key}' for visheads{did_you_mean(key, known)}; known keys: pretrained, {', '.join(sorted(known))}"
            )
    own = {key: kwargs.pop(key) for key in list(kwargs) if key in OWN_ARGS}
    kwargs.pop("max_batch_size", None)  # batches are --batch_size documents, never grown automatically
    check_batch_size(kwargs.get("batch_size", 1))
    given = str(kwargs.pop("pretrained", DEFAULT_PRETRAINED))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if kwargs.get("device") is None:
        kwargs["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    if world_size > 1 and str(kwargs["device"]) == "cuda":
        kwargs["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # one GPU per launched process
    if not kwargs.get("device_map"):
        kwargs["device_map"] = str(kwargs["device"])
    return check_model(
        given,
        own,
        revision=str(kwargs.get("revision", "main")),
        dtype=kwargs.get("dtype", "auto"),
        trust_remote_code=flag(kwargs, "trust_remote_code"),
        parent=kwargs,
        model_types=None,
        model_id="visheads",
    )
