"""This project's own model_args, shared by both hosts, and the checks that run before any weights load.

``mask``, ``record``, ``logit_lens`` ... mean the same in lmms-eval and lm-eval, parsed once into
:class:`OwnOptions`; :func:`check_model` resolves
``pretrained`` (``visheads-tiny`` and ``visheads-smol`` are shipped models), finds its family from its config alone
(:mod:`visheads_eval.families`; ``llava_visheads`` takes the LLaVA family only) and names the weights, so
that a typo or a wrong model fails with one line before anything loads.
Each host adds its own checks of its parent adapter's arguments (``visheads_eval.lmms.model_args``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from visheads_eval.capture.recorder import POSITIONS
from visheads_eval.errors import VisheadsError
from visheads_eval.families import Family, family_of
from visheads_eval.masking.schema import MODES
from visheads_eval.weights import weights_identity

DEFAULT_PRETRAINED = "llava-hf/llava-1.5-7b-hf"
# Models this project ships, loaded by name: visheads-tiny (visheads_eval.organism: shipped, or re-trained and installed
# in the user cache) and visheads-smol (visheads_eval.organism.smol: assembled into the user cache from what ships).
SHIPPED_MODELS = ("visheads-tiny", "visheads-smol")

# The model types llava_visheads takes: the LLaVA family the paper studies, and LLaVA-OneVision, which lmms-eval's
# llava_hf also loads. The `visheads` model takes every family of visheads_eval.families.
LLAVA_FAMILY = ("llava", "llava_next", "vipllava", "llava_onevision")

# This project's own keys, popped before the parent adapter sees the rest (read by visheads_eval.instrumentation).
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


def _looks_like_local_path(value: str) -> bool:
    """Hub ids are ``org/name``; anything else (absolute, relative, one word, deeper) is a local path."""
    return value.startswith(("/", ".", "~")) or value.count("/") != 1 or os.path.exists(value)


def resolve_pretrained(pretrained: str) -> str:
    """Where to load ``pretrained`` from: the folder of a shipped model (:data:`SHIPPED_MODELS`), a hub id as
    given, or a local path after checking that it exists."""
    if pretrained == "visheads-tiny":
        from visheads_eval import organism

        return str(organism.weights_dir())
    if pretrained == "visheads-smol":
        from visheads_eval.organism import smol

        return str(smol.weights_dir())
    if _looks_like_local_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.exists():
            raise VisheadsError(f"pretrained path '{pretrained}' does not exist; give a model folder or a hub id")
        if not (path / "config.json").is_file():
            raise VisheadsError(f"pretrained path '{pretrained}' has no config.json; is it a saved Hugging Face model?")
        return str(path.resolve())
    return pretrained


def load_model_config(
    pretrained: str,
    revision: str = "main",
    trust_remote_code: bool = False,
    model_types: tuple[str, ...] | None = None,
    model_id: str = "visheads",
) -> tuple[PretrainedConfig, Family]:
    """Load the config (not the weights) and find the model's family; ``model_types`` narrows what ``model_id`` takes."""
    try:
        config = AutoConfig.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        raise VisheadsError(f"cannot load the config of pretrained='{pretrained}': {reason}") from error
    family = family_of(config)
    if model_types is not None and family.model_type not in model_types:
        raise VisheadsError(
            f"pretrained='{pretrained}' is a '{config.model_type}' model ({family.label}); {model_id} takes "
            f"{', '.join(model_types)}: run it with --model visheads"
        )
    return config, family


def flag(own: Mapping[str, Any], key: str) -> bool:
    """A true/false model_arg (lmms-eval hands over ``true`` as True, ``1`` as 1; other spellings as text)."""
    value = own.get(key, False)
    spelled = str(value).strip().lower()
    if spelled in ("true", "1", "yes"):
        return True
    if spelled in ("false", "0", "no", ""):
        return False
    raise VisheadsError(f"{key}={value} is not true or false")


def _path(own: Mapping[str, Any], key: str) -> Path | None:
    return Path(str(own[key])).expanduser() if own.get(key) not in (None, "") else None


@dataclass(frozen=True)
class OwnOptions:
    """This project's own model_args (:data:`OWN_ARGS`), parsed and checked once: what a run masks, records and saves."""

    mask: str | None = None  # a spec name, a spec file or inline heads (visheads_eval.masking.specs)
    mask_dir: Path | None = None
    ranking: Path | None = None
    mask_mode: str | None = None  # overrides the spec's
    mask_seed: int | None = None  # overrides the spec's
    record: Path | None = None
    position: str = "answer"
    logit_lens: bool = False
    head_means: Path | None = None
    given: dict[str, str] = field(default_factory=dict)  # as the user gave them, for the run's records and results

    @classmethod
    def parse(cls, own: Mapping[str, Any]) -> OwnOptions:
        """``own`` (this project's keys of model_args, as a host hands them over) checked value by value."""
        position = str(own.get("position", "answer"))
        if position not in POSITIONS:
            raise VisheadsError(f"position={position} is not one of {', '.join(POSITIONS)}")
        mask_mode = str(own["mask_mode"]) if own.get("mask_mode") is not None else None
        if mask_mode is not None and mask_mode not in MODES:
            raise VisheadsError(f"mask_mode={mask_mode} is not one of {', '.join(MODES)}")
        mask_seed = None
        if own.get("mask_seed") is not None:
            if not str(own["mask_seed"]).strip().lstrip("-").isdigit():
                raise VisheadsError(f"mask_seed={own['mask_seed']} is not a whole number")
            mask_seed = int(own["mask_seed"])
        mask = str(own["mask"]) if own.get("mask") not in (None, "") else None
        if mask is None and (mask_mode is not None or mask_seed is not None):
            raise VisheadsError("mask_mode and mask_seed modify a mask: give mask= as well")
        options = cls(
            mask=mask,
            mask_dir=_path(own, "mask_dir"),
            ranking=_path(own, "ranking"),
            mask_mode=mask_mode,
            mask_seed=mask_seed,
            record=_path(own, "record"),
            position=position,
            logit_lens=flag(own, "logit_lens"),
            head_means=_path(own, "head_means"),
            given={key: str(value) for key, value in own.items()},
        )
        if options.logit_lens and options.record is None:
            raise VisheadsError("logit_lens=true is recorded with the heads: give record=<dir> as well")
        return options


@dataclass(frozen=True)
class CheckedArgs:
    """model_args after the checks: this project's own, and the rest for ``llava_hf``."""

    pretrained: str  # where the weights load from
    name: str  # the model in records, rankings and tables: a shipped model's name, the hub id, or the resolved path
    config: PretrainedConfig
    family: Family
    own: OwnOptions
    parent: dict[str, Any]
    weights: dict[str, str | None]  # what loads: checkpoint, revision, commit, digest, dtype (visheads_eval.weights)


def check_model(
    pretrained: str,
    own: dict[str, Any],
    revision: str = "main",
    dtype: Any = "auto",
    trust_remote_code: bool = False,
    parent: dict[str, Any] | None = None,
    model_types: tuple[str, ...] | None = None,
    model_id: str = "visheads",
) -> CheckedArgs:
    """Resolve and check ``pretrained`` from its config (no weights load); ``own`` are this project's model_args,
    ``parent`` what the host's parent adapter gets; ``model_types`` the families ``model_id`` takes (all if None)."""
    options = OwnOptions.parse(own)
    resolved = resolve_pretrained(pretrained)
    config, family = load_model_config(resolved, revision, trust_remote_code, model_types, model_id)
    if options.logit_lens:
        from visheads_eval.capture.lens import check_lens_config

        check_lens_config(config)
    name = pretrained if pretrained in SHIPPED_MODELS else resolved
    weights = weights_identity(resolved, revision, dtype)
    return CheckedArgs(
        pretrained=resolved, name=name, config=config, family=family, own=options, parent=dict(parent or {}), weights=weights
    )
