"""Interception of the attention-kernel call of a model's language-model layers.

Every attention module of the transformers LLaVA backbones (Llama, Mistral, Phi-3) computes its query,
key and value (after RoPE, with the cache appended) and hands them to the kernel that
``config._attn_implementation`` names (``sdpa``, ``eager``, ...) through transformers' attention
registry. :func:`intercept_attention` puts a dispatcher in that registry entry for as long as a
``with`` block lasts, so that handlers see exactly the tensors the kernel sees, and may change its
output, without switching the model to another kernel. The model object is never modified; the
registry entry is restored on exit, also after an error. The registry is reached through its public
mapping interface only (``get``, item assignment and deletion, which write its local entries).

Handlers of several contexts (a recorder and a mask, say) stack: each receives the call and a
``proceed()`` that runs the next handler, the innermost finally the model's own kernel. What recording
and masking both need of a call lives here, typed: :func:`visible` (which keys each query may attend to)
and ``KernelCall.uniform_heads`` (the heads a mask replaced, which the recorder then reads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from visheads_eval.heads import attention_modules

KernelOutput = tuple[torch.Tensor, torch.Tensor | None]


@dataclass
class KernelCall:
    """One call of the attention kernel in one layer.

    ``query`` is ``(batch, n_heads, q_len, head_dim)``; ``key`` and ``value`` are
    ``(batch, n_kv_heads, kv_len, head_dim)`` (grouped-query models have fewer key/value heads);
    ``attention_mask`` is whatever the model built for this kernel (``None``, a boolean or an additive
    4-D mask ``(batch, 1, q_len, kv_len)``). ``uniform_heads`` is what handlers of one call tell each other:
    the query heads whose attention a mask replaced by a uniform row over the visible keys (the recorder
    then records that row).
    """

    module: nn.Module
    layer: int
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    attention_mask: torch.Tensor | None
    kwargs: dict[str, Any]
    uniform_heads: set[int] = field(default_factory=set)

    @property
    def scaling(self) -> float:
        scaling = self.kwargs.get("scaling")
        return float(scaling) if scaling is not None else self.query.shape[-1] ** -0.5


Handler = Callable[[KernelCall, Callable[[], KernelOutput]], KernelOutput]


def visible(call: KernelCall, queries: slice = slice(None)) -> torch.Tensor:
    """Which keys each selected query may attend to: ``(batch, n_queries, kv_len)`` bool.

    Without a mask the kernel runs causal and unpadded: query ``t`` of ``q_len`` sees the keys up to
    its own position, ``kv_len - q_len + t``.
    """
    batch, q_len, kv_len = call.key.shape[0], call.query.shape[2], call.key.shape[2]
    mask = call.attention_mask
    if mask is None:
        position = torch.arange(q_len, device=call.key.device)[queries] + (kv_len - q_len)
        causal = torch.arange(kv_len, device=call.key.device)[None, :] <= position[:, None]
        return causal[None].expand(batch, -1, -1)
    if mask.dim() == 2:  # key padding mask (flash attention): 1 keep, 0 pad; causal within
        padding = mask[:, None, :kv_len].bool()
        return padding & visible(dataclasses.replace(call, attention_mask=None), queries)
    if mask.dim() != 4:
        raise ValueError(f"unexpected attention mask of shape {tuple(mask.shape)}")
    rows = mask[:, 0, queries, :kv_len]  # a mask shared by all heads
    if rows.dtype == torch.bool:
        return rows
    return rows > torch.finfo(rows.dtype).min / 2  # additive mask: 0 keep, the dtype's minimum to drop


@dataclass
class _Binding:
    layer_of: dict[int, int]  # id(attention module) -> layer index
    handler: Handler


_bindings: list[_Binding] = []
_installed: dict[str, tuple[int, Callable | None]] = {}  # impl -> (users, the kernel the entry resolved to before)


def _original_kernel(impl: str, module: nn.Module) -> Callable:
    original = _installed[impl][1]
    if original is not None:
        return original
    # "eager" is not in the registry: each modeling file passes its own eager function as the default.
    return sys.modules[type(module).__module__].eager_attention_forward


def _run_kernel(original: Callable, call: KernelCall) -> KernelOutput:
    return original(call.module, call.query, call.key, call.value, call.attention_mask, **call.kwargs)


def _dispatch(impl: str) -> Callable:
    def kernel(module: nn.Module, query, key, value, attention_mask, **kwargs) -> KernelOutput:
        original = _original_kernel(impl, module)
        bindings = [b for b in _bindings if id(module) in b.layer_of]
        if not bindings:
            return original(module, query, key, value, attention_mask, **kwargs)
        call = KernelCall(module, bindings[0].layer_of[id(module)], query, key, value, attention_mask, kwargs)
        # The chain is built innermost first, each link holding the next: no function refers to itself, so
        # no reference cycle keeps ``call`` (this layer's query, key and value) alive after the kernel returns.
        proceed = functools.partial(_run_kernel, original, call)
        for binding in reversed(bindings):
            proceed = functools.partial(binding.handler, call, proceed)
        return proceed()

    return kernel


def _install(impl: str) -> None:
    users, original = _installed.get(impl, (0, None))
    if users == 0:
        original = ALL_ATTENTION_FUNCTIONS.get(impl)  # the kernel the entry resolves to now; None for "eager"
        ALL_ATTENTION_FUNCTIONS[impl] = _dispatch(impl)  # the registry's public __setitem__: a local entry
    _installed[impl] = (users + 1, original)


def _uninstall(impl: str) -> None:
    users, original = _installed[impl]
    if users > 1:
        _installed[impl] = (users - 1, original)
        return
    del _installed[impl]
    del ALL_ATTENTION_FUNCTIONS[impl]  # our local entry; the entry resolves to the registered kernel again
    if ALL_ATTENTION_FUNCTIONS.get(impl) is not original:
        ALL_ATTENTION_FUNCTIONS[impl] = original  # someone's own local entry was under ours: put it back


def attention_implementation(model: PreTrainedModel) -> str:
    """The kernel the language model's attention layers use (``sdpa``, ``eager``, ...)."""
    config: Any = getattr(attention_modules(model)[0], "config")  # noqa: B009  (nn.Module's __getattr__ types it as a tensor)
    return str(config._attn_implementation)


@contextlib.contextmanager
def intercept_attention(model: PreTrainedModel, handler: Handler) -> Iterator[None]:
    """Route every attention-kernel call of ``model``'s language model through ``handler``."""
    modules = attention_modules(model)
    impl = attention_implementation(model)
    binding = _Binding({id(module): layer for layer, module in enumerate(modules)}, handler)
    _install(impl)
    _bindings.append(binding)
    try:
        yield
    finally:
        _bindings.remove(binding)
        _uninstall(impl)
