"""One query's attention row per head, and its reduction to per-head statistics.

``attention_row`` recomputes, from the tensors the kernel receives, the softmax row that eager
attention would give for the last query position: scores ``q . k * scaling`` against every key (grouped-query
key heads repeated to the query heads, keys after RoPE, the cache included), the model's mask applied,
softmax in float32. Only ``batch x heads x keys`` numbers are formed, never the ``N x N`` matrix. A
kernel call whose row depends on more (logit soft-capping, attention sinks, a sliding window that the
mask does not carry) is refused in one line instead of being recorded wrong.

``row_statistics`` reduces rows to the statistics documented in docs/architecture.md. Concentration is
``1 - H(p) / log(N_img)`` with ``p`` the row restricted to the image tokens and renormalised and both
logarithms natural: the paper's formula divides a natural-log entropy by ``log2(N)``, which does not
give its stated 0..1 range; with one base it does. One image token gives concentration 1; no image
token (or no attention on the image at all) gives NaN, and ``image_argmax`` -1.
"""

from __future__ import annotations

import math

import torch

from visheads_eval.errors import VisheadsError
from visheads_eval.kernel import KernelCall, visible

# Kernel arguments that change the attention row in ways the recomputation does not model.
_UNMODELLED = {"softcap": "logit soft-capping", "s_aux": "attention sinks"}


def _check_modelled(call: KernelCall) -> None:
    """Refuse a kernel call whose row would be recomputed wrong, rather than record it silently wrong."""
    for name, what in _UNMODELLED.items():
        if call.kwargs.get(name) is not None:
            raise VisheadsError(
                f"layer {call.layer} uses {what} ({name}= in its attention kernel), which the recorder's row "
                "computation does not model; recording supports the LLaVA backbones (Llama, Mistral, Phi-3)"
            )
    window, mask = call.kwargs.get("sliding_window"), call.attention_mask
    if window is not None and call.key.shape[2] > window and (mask is None or mask.dim() != 4):
        raise VisheadsError(
            f"layer {call.layer} attends through a sliding window of {window} keys that its attention mask does not "
            f"carry ({call.key.shape[2]} keys); record with attn_implementation=sdpa or eager, whose masks include the window"
        )


def attention_row(call: KernelCall) -> tuple[torch.Tensor, torch.Tensor]:
    """The last query's ``alpha (batch, n_heads, kv_len)`` (float32, rows summing to 1), and which
    keys it could see, ``(batch, kv_len)``."""
    _check_modelled(call)
    query = call.query[:, :, -1, :].float()  # (batch, n_heads, head_dim)
    key = call.key.float()  # (batch, n_kv_heads, kv_len, head_dim)
    n_rep = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(n_rep, dim=1)  # query head h reads key head h // n_rep
    scores = torch.einsum("bhd,bhnd->bhn", query, key) * call.scaling
    keys = visible(call, slice(-1, None))[:, 0]
    mask = call.attention_mask
    if mask is not None and mask.dim() == 4 and mask.dtype != torch.bool:
        scores = scores + mask[:, :, -1, : key.shape[2]].float()  # exactly what eager adds
    scores = scores.masked_fill(~keys[:, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1), keys


def row_statistics(alpha: torch.Tensor, image: torch.Tensor, region: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-head statistics of rows ``alpha (batch, n_heads, kv_len)``.

    ``image`` and ``region`` are boolean ``(batch, kv_len)`` marks of the image tokens and of the
    image tokens inside the question's box. Every result is ``(batch, n_heads)``.
    """
    image_f = image[:, None, :].to(alpha.dtype)
    image_attn = (alpha * image_f).sum(-1)
    stats = {"image_attn": image_attn, "text_attn": (alpha * (1 - image_f)).sum(-1)}
    if region is not None:
        stats["region_attn"] = (alpha * region[:, None, :].to(alpha.dtype)).sum(-1)

    n_image = image.sum(-1)[:, None].expand_as(image_attn)  # (batch, n_heads)
    p = alpha * image_f / image_attn[..., None]
    entropy = -torch.xlogy(p, p).sum(-1)
    log_n = torch.log(n_image.clamp(min=2).to(alpha.dtype))
    concentration = 1 - entropy / log_n
    concentration = torch.where(n_image == 1, torch.ones_like(concentration), concentration)
    stats["concentration"] = torch.where((n_image == 0) | (image_attn <= 0), math.nan, concentration)

    order = image.long().cumsum(-1) - 1  # position -> index among image tokens
    best = torch.where(image[:, None, :], alpha, -1.0).argmax(-1)  # (batch, n_heads) key positions
    argmax = order.gather(1, best)
    stats["image_argmax"] = torch.where(n_image > 0, argmax, -1)
    return stats
