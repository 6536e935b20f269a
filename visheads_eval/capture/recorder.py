"""``HeadRecorder``: per-head statistics of one query's attention, recorded under SDPA.

```python
with HeadRecorder(model, position="last_prompt", region_mask=None) as rec:
    model(**inputs)                      # or model.generate(**inputs, max_new_tokens=...)
rec.stats["image_attn"]                  # (batch, n_layers, n_heads)
```

With ``logit_lens=True`` the same forward also reads the residual stream at the query position through
the model's final norm and ``lm_head`` after the embeddings and after every layer
(:mod:`visheads_eval.capture.lens`): ``rec.lens["answer_logprob"]  # (batch, n_layers + 1)``.

The query is the last prompt position, recorded from the prefill forward (``last_prompt``: the
position that predicts the answer), or the first generated token at the next decoding step, whose
keys are the prompt plus that token (``answer``: the paper's choice, n = input length + 1; it needs
``generate(..., max_new_tokens>=2)``). Later decoding steps are never recorded. Each prefill inside
the ``with`` block adds its batch to the records; a forward without a cache that reads the latest
batch's sequence plus one token is that batch's next decoding step (``generate(use_cache=False)``). The attention kernel is intercepted
(:mod:`visheads_eval.kernel`): the model keeps its own kernel (SDPA) and is never asked for
``output_attentions``; only ``batch x heads x keys`` numbers per layer are formed. Prompts must be
left-padded, so that the last position is every sample's own last token.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from visheads_eval.capture.lens import LENS_STATISTICS, LensReadout, lens_statistics
from visheads_eval.capture.rows import attention_row, row_statistics
from visheads_eval.errors import VisheadsError
from visheads_eval.heads import HeadShape
from visheads_eval.hook_context import HookContext
from visheads_eval.kernel import KernelCall, KernelOutput, intercept_attention

POSITIONS = ("last_prompt", "answer")
STATISTICS = ("image_attn", "region_attn", "text_attn", "concentration", "image_argmax")


@dataclass
class _Batch:
    """What one prefill (and the decoding steps after it) recorded."""

    image: torch.Tensor  # (batch, prompt_len) bool
    region: torch.Tensor | None  # (batch, prompt_len) bool
    step: int = 0  # forwards since the prefill
    layers: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # layer -> stat -> (batch, n_heads)
    n_keys: torch.Tensor | None = None  # (batch,) keys the query could see
    residuals: dict[int, torch.Tensor] = field(default_factory=dict)  # reading -> (batch, hidden), until the lens is read
    lens: dict[str, torch.Tensor] | None = None  # statistic -> (batch, n_layers + 1); answer_token -> (batch,)


class HeadRecorder(HookContext):
    """Record per-head attention statistics of ``model`` (a LLaVA-family model) while the block runs."""

    def __init__(
        self, model: PreTrainedModel, position: str = "last_prompt", region_mask: torch.Tensor | None = None, logit_lens: bool = False
    ) -> None:
        if position not in POSITIONS:
            raise VisheadsError(f"unknown position '{position}'; choose one of {', '.join(POSITIONS)}")
        image_token_id = getattr(model.config, "image_token_id", None)
        if image_token_id is None:
            raise VisheadsError(f"{type(model).__name__} has no config.image_token_id; HeadRecorder needs a LLaVA-family model")
        self.model = model
        self.position = position
        self.region_mask = region_mask
        self.shape = HeadShape.from_config(model.config)
        self._image_token_id = int(image_token_id)
        self._target_step = POSITIONS.index(position)
        self._readout = LensReadout.of(model) if logit_lens else None
        self._batches: list[_Batch] = []
        self._latest_input_ids: torch.Tensor | None = None  # (batch, seq_len) read by the latest forward without a cache

    def _install(self, stack: contextlib.ExitStack) -> None:
        stack.callback(self.model.register_forward_pre_hook(self._on_model_call, with_kwargs=True).remove)
        stack.enter_context(intercept_attention(self.model, self._on_kernel_call))
        if self._readout is not None:
            layers = self.model.get_decoder().layers
            stack.callback(layers[0].register_forward_pre_hook(self._on_first_layer_input, with_kwargs=True).remove)
            for layer, module in enumerate(layers):
                stack.callback(module.register_forward_hook(functools.partial(self._on_layer_output, layer)).remove)

    def _on_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = cache.get_seq_length() if cache is not None else 0
        if past > 0 and self._batches:
            self._batches[-1].step += 1
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            raise VisheadsError("HeadRecorder needs input_ids (it finds image tokens as input_ids == image_token_id)")
        continues = self._continues_without_cache(input_ids)
        self._latest_input_ids = input_ids
        if continues:
            self._batches[-1].step += 1
            return
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
            raise VisheadsError("HeadRecorder needs left-padded prompts: set tokenizer.padding_side = 'left'")
        image = input_ids == self._image_token_id
        region = None
        if self.region_mask is not None:
            if self._batches:
                raise VisheadsError("a region_mask belongs to one batch: use one HeadRecorder per prefill when giving regions")
            region = self.region_mask.to(device=image.device, dtype=torch.bool)
            if region.shape != image.shape:
                raise VisheadsError(f"region_mask is {tuple(region.shape)} but the prompt is {tuple(image.shape)} (batch, prompt_len)")
            if bool((region & ~image).any()):
                raise VisheadsError("region_mask marks positions that are not image tokens")
        self._batches.append(_Batch(image=image, region=region))

    def _continues_without_cache(self, input_ids: torch.Tensor) -> bool:
        """Whether a forward without a cache is the next decoding step of the latest batch
        (``generate(use_cache=False)`` feeds the whole sequence again, one token longer each step)."""
        previous = self._latest_input_ids
        return (
            previous is not None
            and input_ids.shape[0] == previous.shape[0]
            and input_ids.shape[1] == previous.shape[1] + 1
            and torch.equal(input_ids[:, :-1], previous)
        )

    def _on_kernel_call(self, call: KernelCall, proceed: Any) -> KernelOutput:
        output = proceed()
        batch = self._recording_batch()
        if batch is None:
            return output
        alpha, visible = attention_row(call)  # (batch, n_heads, kv_len), (batch, kv_len)
        uniform = visible.float() / visible.sum(-1, keepdim=True)
        for head in call.uniform_heads:  # a uniform mask replaced this head's attention
            alpha[:, head] = uniform
        image, region = self._key_marks(call, batch, alpha.shape[-1])
        batch.layers[call.layer] = row_statistics(alpha, image, region)
        seen = visible.sum(-1)  # sliding-window layers see fewer keys: a sample's count is its widest layer's
        batch.n_keys = seen if batch.n_keys is None else torch.maximum(batch.n_keys, seen)
        return output

    def _key_marks(self, call: KernelCall, batch: _Batch, n_keys: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Which of the call's ``n_keys`` keys are image tokens (and in the region): ``(batch, n_keys)`` each.

        The keys are the sequence so far, prompt first; a sliding-window layer's decode cache (Gemma 3's) keeps
        only the last ``n_keys`` of them, which are then the last ``n_keys`` positions."""
        n_positions = batch.image.shape[1] + batch.step
        pad = (0, n_positions - batch.image.shape[1])
        image = F.pad(batch.image, pad)
        region = F.pad(batch.region, pad) if batch.region is not None else None
        if n_keys == n_positions:
            return image, region
        window = getattr(call.module, "sliding_window", None) or call.kwargs.get("sliding_window")
        if n_keys < n_positions and window is not None and n_keys <= window and batch.step > 0:
            return image[:, -n_keys:], region[:, -n_keys:] if region is not None else None
        raise VisheadsError(
            f"layer {call.layer} attends over {n_keys} keys where the sequence has {n_positions} positions; HeadRecorder "
            "supports one prefill of the whole prompt (no chunked prefill) and sliding-window decode caches"
        )

    def _recording_batch(self) -> _Batch | None:
        batch = self._batches[-1] if self._batches else None
        return batch if batch is not None and batch.step == self._target_step else None

    def _on_first_layer_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        batch = self._recording_batch()
        if batch is not None:
            hidden = args[0] if args else kwargs["hidden_states"]  # (batch, q_len, hidden): the embeddings
            batch.residuals[0] = hidden[:, -1].clone()  # a copy: a view would keep the whole sequence alive

    def _on_layer_output(self, layer: int, module: nn.Module, args: tuple, output: Any) -> None:
        batch = self._recording_batch()
        if batch is None:
            return
        hidden = output[0] if isinstance(output, tuple) else output  # (batch, q_len, hidden)
        batch.residuals[layer + 1] = hidden[:, -1].clone()
        if layer == self.shape.n_layers - 1 and self._readout is not None:
            if len(batch.residuals) != self.shape.n_layers + 1:
                raise VisheadsError("the logit lens missed a layer's residual stream; the decoder ran its layers out of order")
            batch.lens = lens_statistics(self._readout, [batch.residuals[index] for index in range(self.shape.n_layers + 1)])
            batch.residuals.clear()

    @property
    def complete(self) -> bool:
        """Whether every batch recorded its query position in every layer (and its lens, when asked)."""
        return bool(self._batches) and all(
            len(b.layers) == self.shape.n_layers and (self._readout is None or b.lens is not None) for b in self._batches
        )

    @property
    def stats(self) -> dict[str, np.ndarray]:
        """Statistic name -> ``(batch, n_layers, n_heads)`` array over every batch recorded so far."""
        per_batch = [self._stack_layers(index, batch) for index, batch in enumerate(self._batches)]
        if not per_batch:
            return {}
        return {name: np.concatenate([b[name] for b in per_batch]) for name in per_batch[0]}

    @property
    def lens(self) -> dict[str, np.ndarray]:
        """Logit-lens statistic -> ``(batch, n_layers + 1)`` over every batch recorded so far, and
        ``answer_token`` -> ``(batch,)`` (see :mod:`visheads_eval.capture.lens`)."""
        if self._readout is None:
            raise VisheadsError("this HeadRecorder does not read the logit lens; create it with logit_lens=True")
        _ = self.stats  # raises if a batch is incomplete
        per_batch = [batch.lens for batch in self._batches if batch.lens is not None]
        if len(per_batch) != len(self._batches):
            raise VisheadsError("a batch recorded attention but not the logit lens at its query position")
        return {name: np.concatenate([lens[name].numpy() for lens in per_batch]) for name in (*LENS_STATISTICS, "answer_token")}

    @property
    def token_counts(self) -> dict[str, np.ndarray]:
        """Per sample ``(batch,)``: ``n_keys`` the query saw, ``n_image_tokens``, ``n_region_tokens``."""
        _ = self.stats  # raises if a batch is incomplete
        counts = {
            "n_keys": [b.n_keys.cpu().numpy() for b in self._batches if b.n_keys is not None],  # set with every layer's row
            "n_image_tokens": [b.image.sum(-1).cpu().numpy() for b in self._batches],
            "n_region_tokens": [
                (b.region.sum(-1) if b.region is not None else torch.zeros(len(b.image), dtype=torch.long)).cpu().numpy()
                for b in self._batches
            ],
        }
        return {name: np.concatenate(parts) for name, parts in counts.items()}

    def _stack_layers(self, index: int, batch: _Batch) -> dict[str, np.ndarray]:
        missing = [layer for layer in range(self.shape.n_layers) if layer not in batch.layers]
        if missing:
            if self.position == "answer" and not batch.layers:
                raise VisheadsError(
                    f"batch {index} has no decoding step after its prompt: position='answer' needs "
                    "model.generate(..., max_new_tokens>=2) that goes on past the first token"
                )
            raise VisheadsError(f"batch {index} recorded no attention in layers {missing}")
        names = batch.layers[0].keys()
        return {
            # each layer's numbers on the CPU first: with device_map=auto the layers sit on different GPUs
            name: torch.stack([batch.layers[layer][name].cpu() for layer in range(self.shape.n_layers)], dim=1).numpy()
            for name in names
        }
