"""Reference means for ``mode="mean"`` masks: each head's average output over a set of inputs.

```python
with HeadMeans(model) as acc:
    for batch in reference_batches:
        model(**batch)                       # or model.generate(...)
save_means("means.npz", acc.means, {"model": ..., "inputs": ...})
means = load_means("means.npz", HeadShape.from_config(model.config))
```

A head's output is its slice of the input to ``o_proj``; the mean runs over every position the model
processes (prompt and generated tokens), padding excluded. The file is an ``.npz`` with one
``(head_dim,)`` array per head named ``L{layer}H{head}`` and a JSON ``__info__`` entry saying where the
means came from. ``lmms_eval --model llava_visheads --model_args head_means=FILE`` computes them over
any lmms-eval task.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from visheads_eval.errors import VisheadsError
from visheads_eval.heads import Head, HeadShape, output_projections
from visheads_eval.hook_context import HookContext

_INFO_KEY = "__info__"


class HeadMeans(HookContext):
    """Accumulate every head's mean output while the block runs."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.shape = HeadShape.from_config(model.config)
        self._sums: list[torch.Tensor | None] = [None] * self.shape.n_layers  # per layer (n_heads * head_dim,)
        self._positions = 0
        self._padding: torch.Tensor | None = None  # (batch, kv_len) of the current forward

    def _install(self, stack: contextlib.ExitStack) -> None:
        stack.callback(self.model.register_forward_pre_hook(self._on_model_call, with_kwargs=True).remove)
        for layer, projection in enumerate(output_projections(self.model)):
            stack.callback(projection.register_forward_pre_hook(self._accumulating(layer)).remove)

    def _on_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        self._padding = mask if mask is not None and mask.dim() == 2 else None

    def _accumulating(self, layer: int):
        def hook(module: nn.Module, args: tuple) -> None:
            heads_in = args[0].detach().double()  # (batch, seq, n_heads * head_dim)
            seq = heads_in.shape[1]
            weight = torch.ones(heads_in.shape[:2], dtype=heads_in.dtype, device=heads_in.device)
            if self._padding is not None:
                weight = self._padding[:, -seq:].to(heads_in)
            total = (heads_in * weight[..., None]).sum((0, 1))
            previous = self._sums[layer]
            self._sums[layer] = total if previous is None else previous + total
            if layer == 0:
                self._positions += int(weight.sum().item())

        return hook

    @property
    def positions(self) -> int:
        """How many token positions the means average over."""
        return self._positions

    @property
    def means(self) -> dict[Head, np.ndarray]:
        """Head -> its mean output ``(head_dim,)``."""
        if self._positions == 0:
            raise VisheadsError("no forward pass ran inside HeadMeans: there is nothing to average")
        means = {}
        for layer, total in enumerate(self._sums):
            if total is None:
                raise VisheadsError(f"layer {layer}'s heads produced no output inside HeadMeans; the decoder skipped it")
            by_head = (total / self._positions).float().cpu().numpy().reshape(self.shape.n_heads, self.shape.head_dim)
            for head in range(self.shape.n_heads):
                means[Head(layer, head)] = by_head[head]
        return means


def save_means(path: Path, means: dict[Head, np.ndarray], info: dict[str, Any]) -> None:
    """Write ``means`` and where they came from to ``path`` (.npz) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.npz")
    arrays: dict[str, np.ndarray] = {str(head): np.asarray(mean, dtype=np.float32) for head, mean in means.items()}
    arrays[_INFO_KEY] = np.array(json.dumps(info))
    np.savez(partial, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its allow_pickle flag
    os.replace(partial, path)


def load_means(path: Path, shape: HeadShape) -> dict[Head, torch.Tensor]:
    """Read a means file written by :func:`save_means` and check it fits a model of ``shape``."""
    path = Path(path)
    if not path.is_file():
        raise VisheadsError(f"means file {path} does not exist; compute one with --model_args head_means={path}")
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files if name != _INFO_KEY}
    except (OSError, ValueError) as error:
        raise VisheadsError(f"means file {path} is not a visheads means file: {error}") from error
    means = {}
    for name, mean in arrays.items():
        head = Head.parse(name)
        shape.check(head)
        if mean.shape != (shape.head_dim,):
            raise VisheadsError(f"means file {path}: {name} has {mean.shape}, this model's heads are ({shape.head_dim},)")
        means[head] = torch.from_numpy(mean)
    return means
