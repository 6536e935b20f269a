"""One vocabulary for attention heads, and where they live in a LLaVA-family model.

A head is named ``L{layer}H{head}`` (0-based, as TransformerLens and the paper's figures do). The
language model's attention modules are found through the model's own API (``get_decoder()``), never
through hard-coded module paths, so every family (Llama, Mistral, Phi-3 backbones; LLaVA, LLaVA-NeXT,
ViP-LLaVA wrappers) is handled alike. A head's output is its slice of the input to ``o_proj``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from visheads_eval.errors import VisheadsError, did_you_mean

if TYPE_CHECKING:  # only for annotations: naming heads and stages needs neither torch nor transformers
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedModel

_HEAD_NAME = re.compile(r"^L(\d+)H(\d+)$", re.IGNORECASE)


class Head(NamedTuple):
    """One attention head of the language model: ``Head(12, 5)`` is ``L12H5`` (and equals ``(12, 5)``)."""

    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"

    @classmethod
    def parse(cls, name: str) -> Head:
        """Read ``"L12H5"`` (case-insensitive) into ``Head(12, 5)``."""
        match = _HEAD_NAME.match(name.strip())
        if match is None:
            raise VisheadsError(f"'{name}' is not a head name; write heads as L<layer>H<head>, e.g. L12H5")
        return cls(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class HeadShape:
    """How many layers and query heads the language model has, and the per-head width."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> HeadShape:
        """Read the shape from a LLaVA-family config (its text config) without loading weights."""
        text = config.get_text_config()
        n_heads = int(text.num_attention_heads)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // n_heads
        return cls(
            n_layers=int(text.num_hidden_layers),
            n_heads=n_heads,
            n_kv_heads=int(getattr(text, "num_key_value_heads", None) or n_heads),
            head_dim=int(head_dim),
        )

    def check(self, head: Head) -> None:
        """Raise a clear error if ``head`` does not exist in a model of this shape."""
        if not (0 <= head.layer < self.n_layers and 0 <= head.head < self.n_heads):
            raise VisheadsError(
                f"head {head} is out of range for this model: layers are 0..{self.n_layers - 1}, heads 0..{self.n_heads - 1}"
            )


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The language model's self-attention modules, indexed by layer."""
    decoder = model.get_decoder()
    return [layer.self_attn for layer in decoder.layers]


def output_projections(model: PreTrainedModel) -> list[nn.Module]:
    """Each layer's attention output projection (``o_proj``), whose input holds every head's output side by side."""
    projections = [getattr(module, "o_proj", None) for module in attention_modules(model)]
    if not all(callable(getattr(projection, "register_forward_pre_hook", None)) for projection in projections):
        raise VisheadsError(f"{type(model).__name__}'s attention layers have no o_proj module; heads cannot be masked or averaged")
    return projections  # type: ignore[return-value]


STAGES = ("early", "mid", "late")

# The paper's own splits of the layers into thirds (section 5.1). Other depths split at n//3 and 2n//3.
_PAPER_STAGE_BOUNDS = {32: (10, 20), 40: (13, 27)}


def stage_bounds(n_layers: int) -> tuple[int, int]:
    """First layer of the mid and of the late stage: early = [0, a), mid = [a, b), late = [b, n)."""
    if n_layers < 3:
        raise VisheadsError(f"a model with {n_layers} layers cannot be split into early, mid and late stages")
    return _PAPER_STAGE_BOUNDS.get(n_layers, (n_layers // 3, 2 * n_layers // 3))


def stage_layers(stage: str, n_layers: int) -> range:
    """The layers of ``stage`` (``early``, ``mid`` or ``late``) in a model of ``n_layers`` layers."""
    a, b = stage_bounds(n_layers)
    bounds = {"early": (0, a), "mid": (a, b), "late": (b, n_layers)}
    if stage not in bounds:
        raise VisheadsError(f"unknown stage '{stage}'{did_you_mean(stage, STAGES)}; stages are {', '.join(STAGES)}")
    return range(*bounds[stage])


def stage_of(layer: int, n_layers: int) -> str:
    """The stage that ``layer`` belongs to."""
    a, b = stage_bounds(n_layers)
    return "early" if layer < a else "mid" if layer < b else "late"
