"""The model_args of ``llava_visheads``: which keys exist, and checks that run before any weights load.

Keys are lmms-eval's ``llava_hf`` arguments plus this project's own. A typo, a ``pretrained`` path that
does not exist, or a model that is not LLaVA-family fails here with one line, before the model loads.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    PretrainedConfig,
    VipLlavaForConditionalGeneration,
)

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.weights import weights_identity

DEFAULT_PRETRAINED = "llava-hf/llava-1.5-7b-hf"
EMBEDDED_MODEL = "visheads-tiny"  # the organism that ships with the package (visheads_eval.organism)

# The Hugging Face classes of the LLaVA family the paper studies, by config.model_type.
LLAVA_FAMILY = {
    "llava": LlavaForConditionalGeneration,  # LLaVA-1.5 (Vicuna, Llama-3, Phi-3 backbones)
    "llava_next": LlavaNextForConditionalGeneration,  # LLaVA-1.6 / NeXT, anyres
    "vipllava": VipLlavaForConditionalGeneration,  # ViP-LLaVA
}

# This project's own keys, popped before the parent adapter sees the rest (used by lmms.instrumentation).
OWN_ARGS = {
    "mask": "heads to remove: a spec name, a spec file, or an inline list such as L2H5+L10H3",
    "mask_dir": "a folder of your own mask specs (searched before the shipped ones)",
    "ranking": "the ranking table that top/others specs read",
    "mask_mode": "override the spec's mode: zero, mean or uniform",
    "mask_seed": "override the spec's seed (random and others specs)",
    "record": "a folder for per-sample, per-head attention records",
    "position": "the recorded query: answer (first generated token, the paper's) or last_prompt",
    "logit_lens": "true: also record the logit lens at that query (each layer's log-probability, rank and top-1 of the token "
    "that query predicts, entropy, KL to the output); at last_prompt that token is the answer's first",
    "head_means": "write every head's mean output over this run to this .npz file",
}

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


def _looks_like_local_path(value: str) -> bool:
    """Hub ids are ``org/name``; anything else (absolute, relative, one word, deeper) is a local path."""
    return value.startswith(("/", ".", "~")) or value.count("/") != 1 or os.path.exists(value)


def resolve_pretrained(pretrained: str) -> str:
    """Where to load ``pretrained`` from: the shipped organism's folder for ``visheads-tiny``, a hub id as
    given, or a local path after checking that it exists."""
    if pretrained == EMBEDDED_MODEL:
        from visheads_eval.organism import weights_dir

        return str(weights_dir())
    if _looks_like_local_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.exists():
            raise VisheadsError(f"pretrained path '{pretrained}' does not exist; give a model folder or a hub id")
        if not (path / "config.json").is_file():
            raise VisheadsError(f"pretrained path '{pretrained}' has no config.json; is it a saved Hugging Face model?")
        return str(path.resolve())
    return pretrained


def load_llava_config(pretrained: str, revision: str = "main", trust_remote_code: bool = False) -> PretrainedConfig:
    """Load the config (not the weights) and check that the model is LLaVA-family."""
    try:
        config = AutoConfig.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        raise VisheadsError(f"cannot load the config of pretrained='{pretrained}': {reason}") from error
    if config.model_type not in LLAVA_FAMILY:
        raise VisheadsError(
            f"pretrained='{pretrained}' is a '{config.model_type}' model; llava_visheads supports the LLaVA family "
            f"({', '.join(LLAVA_FAMILY)})"
        )
    return config


def flag(own: dict[str, Any], key: str) -> bool:
    """A true/false model_arg (lmms-eval hands over ``true`` as True, ``1`` as 1; other spellings as text)."""
    value = own.get(key, False)
    spelled = str(value).strip().lower()
    if spelled in ("true", "1", "yes"):
        return True
    if spelled in ("false", "0", "no", ""):
        return False
    raise VisheadsError(f"{key}={value} is not true or false")


def check_batch_size(batch_size: Any) -> None:
    """A whole number of documents per ``generate`` (both adapters batch them)."""
    if not str(batch_size).isdigit() or int(batch_size) < 1:
        raise VisheadsError(f"batch_size={batch_size} is not a whole number of documents; give e.g. --batch_size 8")


@dataclass(frozen=True)
class CheckedArgs:
    """model_args after the checks: this project's own, and the rest for ``llava_hf``."""

    pretrained: str  # where the weights load from
    name: str  # the model in records, rankings and tables: visheads-tiny, the hub id, or the resolved path
    config: PretrainedConfig
    own: dict[str, Any]
    parent: dict[str, Any]
    weights: dict[str, str | None]  # what loads: checkpoint, revision, commit, digest, dtype (visheads_eval.weights)


def check_model_args(model_args: dict[str, Any]) -> CheckedArgs:
    """Check every key and value that can be checked without loading weights, and split them."""
    kwargs = dict(model_args)
    check_arg_names(kwargs)
    own = {key: kwargs.pop(key) for key in list(kwargs) if key in OWN_ARGS}
    kwargs.pop("max_batch_size", None)  # batches are --batch_size documents, never grown automatically
    check_batch_size(kwargs.get("batch_size", 1))
    given = str(kwargs.pop("pretrained", DEFAULT_PRETRAINED))
    pretrained = resolve_pretrained(given)
    config = load_llava_config(pretrained, str(kwargs.get("revision", "main")), bool(kwargs.get("trust_remote_code", False)))
    if kwargs.get("device") is None:
        kwargs["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    if not kwargs.get("device_map") and (int(os.environ.get("WORLD_SIZE", "1")) == 1 or not str(kwargs["device"]).startswith("cuda")):
        # llava_hf passes its default device_map="" to from_pretrained, which transformers 5 rejects;
        # with several processes on GPUs it picks cuda:<rank> itself.
        kwargs["device_map"] = str(kwargs["device"])
    name = given if given == EMBEDDED_MODEL else pretrained
    weights = weights_identity(pretrained, str(kwargs.get("revision", "main")), kwargs.get("dtype", "auto"))
    return CheckedArgs(pretrained=pretrained, name=name, config=config, own=own, parent=kwargs, weights=weights)
