"""The logit lens at the recorded query position: what each layer's residual stream would answer.

After the embeddings and after each decoder layer, the residual stream at the query position is read
through the model's own final norm and ``lm_head`` (paper section 4.2). Per sample and layer (``n_layers
+ 1`` readings, index 0 = the embeddings, index ``l + 1`` = after decoder layer ``l``):

- ``answer_logprob``: log-probability of the answer token, the final layer's top-1 at that position (the
  token greedy decoding answers with);
- ``answer_rank``: how many tokens the reading ranks strictly above the answer token (0 = top-1);
- ``top1``: the reading's top-1 token id;
- ``entropy``: entropy of the reading's distribution, in nats;
- ``kl_to_final``: KL(final || reading), the divergence from the reading to the final distribution, in nats.

The last reading is the model's own output distribution: its ``answer_rank`` and ``kl_to_final`` are 0.
Which token the lens follows depends on the query position: at ``last_prompt`` it is the answer's first
token; at ``answer`` (the first generated token) it is the token after it, for one-word answers the end
of the answer. To see where the answer itself settles, record the lens at ``last_prompt``.
Only these ``(batch, n_layers + 1)`` numbers are kept; each vocabulary-wide distribution lives for one
reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from visheads_eval.errors import VisheadsError

# Each is (batch, n_layers + 1); answer_rank and top1 are integers.
LENS_STATISTICS = ("answer_logprob", "answer_rank", "top1", "entropy", "kl_to_final")

# Output scalings some language models apply after lm_head; the lens reads lm_head(norm(h)) only.
_CHUNK_VALUES = 1 << 24  # vocabulary-wide float32 values computed at once (64 MiB)
_UNMODELLED_OUTPUT = {"final_logit_softcapping": None, "logit_scale": 1.0, "logits_scaling": 1.0, "output_multiplier_scale": 1.0}


def check_lens_config(config: PretrainedConfig) -> None:
    """Refuse, before any weights load, a model whose logits are more than ``lm_head(norm(h))``."""
    text = config.get_text_config()
    for name, neutral in _UNMODELLED_OUTPUT.items():
        value = getattr(text, name, None)
        if value is not None and value != neutral:
            raise VisheadsError(
                f"this {config.model_type} model applies {name}={value} to its logits, which the logit lens does not model; "
                "record without logit_lens"
            )


@dataclass(frozen=True)
class LensReadout:
    """The model's own final norm and unembedding, found through its API."""

    norm: nn.Module
    unembed: nn.Module
    weight: torch.Tensor  # the unembedding's (vocab, hidden)

    @classmethod
    def of(cls, model: PreTrainedModel) -> LensReadout:
        check_lens_config(model.config)
        norm = getattr(model.get_decoder(), "norm", None)
        unembed = model.get_output_embeddings()
        weight = getattr(unembed, "weight", None)
        if not isinstance(norm, nn.Module) or not isinstance(unembed, nn.Module) or not isinstance(weight, torch.Tensor):
            raise VisheadsError(
                f"{type(model).__name__} has no final norm at get_decoder().norm or no output embeddings; "
                "the logit lens cannot read its residual stream"
            )
        return cls(norm, unembed, weight)

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    def log_probs(self, residual: torch.Tensor) -> torch.Tensor:
        """``(..., hidden)`` residual stream -> ``(..., vocab)`` float32 log-probabilities."""
        hidden = self.norm(residual.to(self.weight.device))
        return torch.log_softmax(self.unembed(hidden.to(self.weight.dtype)).float(), dim=-1)


def lens_statistics(readout: LensReadout, residuals: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Statistics of ``n_layers + 1`` readings ``(batch, hidden)`` each -> name -> ``(batch, n_layers + 1)``,
    plus ``answer_token`` ``(batch,)``, all on the CPU.

    Readings go through ``lm_head`` a few at a time (one pass over its weights for up to ``_CHUNK_VALUES``
    vocabulary-wide values), not one by one: on a large vocabulary reading the weights dominates.
    """
    device = residuals[-1].device
    batch, n_readings = residuals[-1].shape[0], len(residuals)
    per_chunk = max(1, _CHUNK_VALUES // (batch * readout.vocab_size))
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in LENS_STATISTICS}

    def log_probs(start: int, stop: int) -> torch.Tensor:  # readings start..stop-1 -> (readings, batch, vocab)
        return readout.log_probs(torch.stack([r.to(device) for r in residuals[start:stop]])).to(device)

    # The last chunk first: it holds the final reading, which every other reading is compared with.
    chunks = [(max(0, stop - per_chunk), stop) for stop in range(n_readings, 0, -per_chunk)]
    logp = log_probs(*chunks[0])
    final = logp[-1]  # (batch, vocab): the model's own output distribution
    answer = final.argmax(-1)  # (batch,)
    p_final = final.exp()
    for index, (start, stop) in enumerate(chunks):
        if index > 0:
            logp = log_probs(start, stop)
        answer_logp = logp.gather(-1, answer[None, :, None].expand(stop - start, -1, 1))  # (readings, batch, 1)
        columns["answer_logprob"].insert(0, answer_logp[..., 0])
        columns["answer_rank"].insert(0, (logp > answer_logp).sum(-1))
        columns["top1"].insert(0, logp.argmax(-1))
        columns["entropy"].insert(0, torch.special.entr(logp.exp()).sum(-1))
        columns["kl_to_final"].insert(0, torch.where(p_final > 0, p_final * (final - logp), 0.0).sum(-1))
    stats = {name: torch.cat(values).T.cpu() for name, values in columns.items()}  # (batch, readings)
    stats["answer_token"] = answer.cpu()
    return stats
