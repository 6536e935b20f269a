"""The recorder's logit lens against transformers' own hidden states, read through the final norm and
``lm_head`` here, on every family, for both query positions, on a left-padded batch of two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.tiny_models import ALL_FAMILIES
from tests.test_recorder import _inputs, _load
from visheads_eval.capture import HeadRecorder
from visheads_eval.errors import VisheadsError


def _reference(readings: list[torch.Tensor], final_logits: torch.Tensor) -> dict[str, np.ndarray]:
    """Lens statistics in float64 from ``n_layers`` pre-norm residuals already read to logits
    ``(batch, vocab)`` and the model's own final logits."""
    logps = [torch.log_softmax(logits.double(), -1) for logits in [*readings, final_logits]]
    final = logps[-1]
    answer = final.argmax(-1)
    p_final = final.exp()
    per_reading = []
    for logp in logps:
        answer_logp = logp.gather(-1, answer[:, None])[:, 0]
        per_reading.append(
            {
                "answer_logprob": answer_logp,
                "answer_rank": (logp > answer_logp[:, None]).sum(-1),
                "top1": logp.argmax(-1),
                "entropy": -(logp.exp() * logp).sum(-1),
                "kl_to_final": (p_final * (final - logp)).sum(-1),
            }
        )
    expected = {name: torch.stack([r[name] for r in per_reading], 1).numpy() for name in per_reading[0]}
    expected["answer_token"] = answer.numpy()
    return expected


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("position", ["last_prompt", "answer"])
def test_lens_equals_hidden_states_through_norm_and_lm_head(tiny_models: dict[str, Path], family: str, position: str) -> None:
    _check_lens(tiny_models[family], position)


@pytest.mark.parametrize("values", [1, 3 * 2 * 60])
def test_lens_read_a_few_readings_at_a_time_is_the_same(tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, values: int) -> None:
    """A large vocabulary is read through lm_head in chunks of readings (one at a time, or three here)."""
    from visheads_eval.capture import lens

    monkeypatch.setattr(lens, "_CHUNK_VALUES", values)
    _check_lens(tiny_models["llava_next"], "answer")


def _check_lens(directory: Path, position: str) -> None:
    model = _load(directory, "sdpa")
    inputs = _inputs(directory)
    n_layers = model.config.text_config.num_hidden_layers
    with torch.inference_mode():
        with HeadRecorder(model, position=position, logit_lens=True) as recorder:
            if position == "last_prompt":
                out = model(**inputs, output_hidden_states=True)
                hidden, final_logits = out.hidden_states, out.logits[:, -1]
            else:
                out = model.generate(
                    **inputs,
                    max_new_tokens=3,
                    min_new_tokens=3,
                    do_sample=False,
                    output_hidden_states=True,
                    output_logits=True,
                    return_dict_in_generate=True,
                )
                hidden, final_logits = out.hidden_states[1], out.logits[1]  # the first decoding step
        assert len(hidden) == n_layers + 1
        text_model = model.model.text_model if hasattr(model.model, "text_model") else model.model.language_model  # Idefics3 / others
        norm, lm_head = text_model.norm, model.lm_head  # named here, independently of the recorder
        readings = [lm_head(norm(state[:, -1])) for state in hidden[:n_layers]]
    expected = _reference(readings, final_logits)
    got = recorder.lens
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-4, err_msg=name)
    assert (got["answer_rank"][:, -1] == 0).all() and np.abs(got["kl_to_final"][:, -1]).max() < 1e-5
    assert (got["answer_rank"][:, :-1] > 0).any(), "a random model's early readings should disagree with its answer"
    if position == "answer":
        assert np.array_equal(got["answer_token"], out.sequences[:, inputs["input_ids"].shape[1] + 1].numpy())


def test_lens_refuses_logit_scalings_it_does_not_model(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_llama"], "sdpa")
    model.config.text_config.final_logit_softcapping = 30.0
    with pytest.raises(VisheadsError, match="final_logit_softcapping=30.0 .* record without logit_lens"):
        HeadRecorder(model, logit_lens=True)


def test_lens_hooks_are_removed_and_change_nothing(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_phi3"], "sdpa")
    inputs = _inputs(tiny_models["llava_phi3"])
    layers = model.model.language_model.layers
    with torch.inference_mode():
        before = model(**inputs).logits
        with HeadRecorder(model, logit_lens=True):
            during = model(**inputs).logits
    assert torch.equal(during, before)
    assert not any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers)
    with pytest.raises(VisheadsError, match="logit_lens=True"):
        recorder = HeadRecorder(model)
        with torch.inference_mode(), recorder:
            model(**inputs)
        _ = recorder.lens
