"""``HeadMask``: remove attention heads from a model while a ``with`` block runs.

```python
with HeadMask(model, heads=[(2, 5), (10, 3)], mode="zero"):
    model(**inputs)
```

What "removing a head" means is explicit, because ablations whose meaning is unclear do not reproduce:

- ``zero`` (default): the head's output is removed. A head's output is its slice ``h*d:(h+1)*d`` of the
  input to ``o_proj`` (pyvene's LLaVA mapping); a pre-hook sets that slice to zero. This is exactly
  zeroing those columns of ``o_proj.weight``, and works under any attention kernel.
- ``mean``: the slice is replaced by the head's mean output over a reference set
  (:mod:`visheads_eval.masking.means`), removing what the head computes for this input but not the
  average signal later layers expect.
- ``uniform``: the head attends uniformly to every key its query may see (causal and padding masks
  kept), i.e. its output is the mean of the visible values. The paper's own code instead sets the head's
  pre-softmax scores to zero after the mask is built, which also lets prefill queries attend to future
  tokens; this mode is that ablation with causality kept.

Masks stack with :class:`~visheads_eval.capture.HeadRecorder` (under ``uniform`` the recorder reports
the uniform attention the head really had). On exit every hook is removed and the model is exactly as
before, also after an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.heads import Head, HeadShape, output_projections
from visheads_eval.hook_context import HookContext
from visheads_eval.kernel import KernelCall, KernelOutput, intercept_attention, visible
from visheads_eval.masking.schema import MODES


class HeadMask(HookContext):
    """Ablate ``heads`` of ``model``'s language model in ``mode`` while the block runs."""

    def __init__(
        self,
        model: PreTrainedModel,
        heads: Iterable[Head | tuple[int, int]],
        mode: str = "zero",
        means: Mapping[Head, torch.Tensor] | None = None,
    ) -> None:
        if mode not in MODES:
            raise VisheadsError(f"unknown mask mode '{mode}'{did_you_mean(mode, MODES)}; modes are {', '.join(MODES)}")
        self.model = model
        self.mode = mode
        self.shape = HeadShape.from_config(model.config)
        self.heads = tuple(sorted({Head(*head) for head in heads}))
        for head in self.heads:
            self.shape.check(head)
        self._by_layer: dict[int, list[int]] = {}
        for head in self.heads:
            self._by_layer.setdefault(head.layer, []).append(head.head)
        self._means = self._check_means(means) if mode == "mean" else None

    def _check_means(self, means: Mapping[Head, torch.Tensor] | None) -> dict[Head, torch.Tensor]:
        if means is None:
            raise VisheadsError("mode='mean' needs the heads' reference means (see visheads_eval.masking.means)")
        missing = [str(h) for h in self.heads if h not in means]
        if missing:
            raise VisheadsError(f"the reference means lack the heads {', '.join(missing)}")
        checked = {}
        for head in self.heads:
            mean = torch.as_tensor(means[head])
            if mean.shape != (self.shape.head_dim,):
                raise VisheadsError(f"the mean of {head} has shape {tuple(mean.shape)}, expected ({self.shape.head_dim},)")
            checked[head] = mean
        return checked

    def _install(self, stack: contextlib.ExitStack) -> None:
        if self.mode == "uniform":
            stack.enter_context(intercept_attention(self.model, self._uniform))
            return
        projections = output_projections(self.model)
        for layer, heads in self._by_layer.items():
            stack.callback(projections[layer].register_forward_pre_hook(self._replacing(layer, heads)).remove)

    def _replacing(self, layer: int, heads: list[int]):
        head_dim = self.shape.head_dim

        def hook(module: nn.Module, args: tuple) -> tuple:
            heads_in = args[0].clone()  # (batch, seq, n_heads * head_dim)
            by_head = heads_in.view(*heads_in.shape[:-1], -1, head_dim)  # (batch, seq, n_heads, head_dim)
            for head in heads:
                if self._means is None:
                    by_head[..., head, :] = 0
                else:
                    by_head[..., head, :] = self._means[Head(layer, head)].to(by_head)
            return (heads_in, *args[1:])

        return hook

    def _uniform(self, call: KernelCall, proceed: Any) -> KernelOutput:
        heads = self._by_layer.get(call.layer)
        if not heads:
            return proceed()
        call.uniform_heads.update(heads)
        output, weights = proceed()  # output (batch, q_len, n_heads, head_dim)
        allowed = visible(call).to(call.value.dtype)  # (batch, q_len, kv_len)
        uniform = allowed / allowed.sum(-1, keepdim=True).clamp(min=1)  # padding queries see nothing: 0
        n_rep = call.query.shape[1] // call.value.shape[1]
        output = output.clone()
        for head in heads:
            values = call.value[:, head // n_rep]  # (batch, kv_len, head_dim)
            output[:, :, head, :] = torch.bmm(uniform, values).to(output.dtype)
            if weights is not None:
                weights = weights.clone()
                weights[:, head] = uniform.to(weights.dtype)
        return output, weights
