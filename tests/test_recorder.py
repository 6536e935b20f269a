"""HeadRecorder against transformers' own eager attention, on every family, for both query positions."""

from __future__ import annotations

import contextlib
import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText
from transformers.integrations import sdpa_attention
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from fixtures.tiny_models import ALL_FAMILIES
from visheads_eval.capture import HeadRecorder
from visheads_eval.errors import VisheadsError
from visheads_eval.processors import load_processor

QUESTIONS = ["how many red circles are there in the image?", "what color?"]
IMAGES = [((80, 50), (200, 30, 30)), ((40, 90), (30, 200, 30))]  # non-square, different sizes


def _load(directory: Path, attn: str):
    return AutoModelForImageTextToText.from_pretrained(directory, attn_implementation=attn).eval()


def _inputs(directory: Path) -> dict:
    processor = load_processor(str(directory))
    processor.tokenizer.padding_side = "left"
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}], add_generation_prompt=True
        )
        for q in QUESTIONS
    ]
    images = [Image.new("RGB", size, colour) for size, colour in IMAGES]
    inputs = processor(images=[[image] for image in images], text=texts, return_tensors="pt", padding=True)
    assert not bool(inputs["attention_mask"].all()), "the batch must be left-padded for this test to mean anything"
    return dict(inputs)


def _reference(rows: np.ndarray, image: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics computed directly from eager attention rows ``(batch, layer, head, keys)``."""
    n_keys = rows.shape[-1]
    image = np.pad(image, ((0, 0), (0, n_keys - image.shape[1])))[:, None, None, :]
    region = np.pad(region, ((0, 0), (0, n_keys - region.shape[1])))[:, None, None, :]
    image_attn = (rows * image).sum(-1)
    p = rows * image / image_attn[..., None]
    entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(-1)
    order = np.cumsum(image, -1) - 1
    best = np.where(image, rows, -1).argmax(-1)
    return {
        "image_attn": image_attn,
        "text_attn": (rows * ~image).sum(-1),
        "region_attn": (rows * region).sum(-1),
        "concentration": 1 - entropy / np.log(image.sum(-1)),
        "image_argmax": np.take_along_axis(np.broadcast_to(order, rows.shape), best[..., None], -1)[..., 0],
    }


def _region(image: torch.Tensor) -> torch.Tensor:
    """Every other image token of each sample, as a question's region."""
    order = image.long().cumsum(-1) - 1
    return image & (order % 2 == 0)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("position", ["last_prompt", "answer"])
def test_statistics_equal_eager_attention(tiny_models: dict[str, Path], family: str, position: str) -> None:
    inputs = _inputs(tiny_models[family])
    sdpa, eager = _load(tiny_models[family], "sdpa"), _load(tiny_models[family], "eager")
    image = inputs["input_ids"] == sdpa.config.image_token_id
    region = _region(image)
    generate = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)
    with torch.inference_mode():
        with HeadRecorder(sdpa, position=position, region_mask=region) as recorder:
            if position == "last_prompt":
                sdpa(**inputs)
            else:
                ours = sdpa.generate(**inputs, **generate)
        if position == "last_prompt":
            attentions = eager(**inputs, output_attentions=True).attentions
        else:
            out = eager.generate(**inputs, **generate, output_attentions=True, return_dict_in_generate=True)
            assert torch.equal(ours, out.sequences)
            attentions = out.attentions[1]  # the first decoding step: query = the first generated token
    rows = torch.stack([a[:, :, -1, :] for a in attentions], dim=1).float().numpy()  # (batch, layer, head, keys)
    expected = _reference(rows, image.numpy(), region.numpy())
    for name, value in expected.items():
        got = recorder.stats[name]
        assert got.shape == (2, sdpa.config.text_config.num_hidden_layers, sdpa.config.text_config.num_attention_heads)
        np.testing.assert_allclose(got, value, atol=1e-4, err_msg=name)
    assert rows.max(-1).mean() > 5 / rows.shape[-1], "random weights should give peaked attention, not uniform"
    counts = recorder.token_counts
    np.testing.assert_array_equal(counts["n_image_tokens"], image.sum(-1).numpy())
    np.testing.assert_array_equal(counts["n_region_tokens"], region.sum(-1).numpy())
    extra = 0 if position == "last_prompt" else 1
    np.testing.assert_array_equal(counts["n_keys"], inputs["attention_mask"].sum(-1).numpy() + extra)


def test_records_under_sdpa_and_leaves_the_model_as_it_was(tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    model = _load(tiny_models["llava_mistral"], "sdpa")
    inputs = _inputs(tiny_models["llava_mistral"])
    registry_before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    with torch.inference_mode():
        before = model(**inputs).logits
    calls = []
    sdpa = sdpa_attention.torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        sdpa_attention.torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k)
    )
    with torch.inference_mode(), HeadRecorder(model) as recorder:
        during = model(**inputs).logits
    assert len(calls) >= model.config.text_config.num_hidden_layers, "the model's own SDPA kernel must run"
    assert model.config.text_config._attn_implementation == "sdpa"
    assert torch.equal(during, before), "recording must not change the model's output"
    assert recorder.stats["image_attn"].shape == (2, 3, 4)
    with pytest.raises(RuntimeError, match="boom"), torch.inference_mode(), HeadRecorder(model):
        model(**inputs)
        raise RuntimeError("boom")
    with torch.inference_mode():
        after = model(**inputs).logits
    assert torch.equal(after, before)
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == registry_before
    assert not model._forward_pre_hooks


def test_answer_position_without_a_decoding_step_is_reported(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_llama"], "sdpa")
    with torch.inference_mode(), HeadRecorder(model, position="answer") as recorder:
        model(**_inputs(tiny_models["llava_llama"]))
    assert not recorder.complete
    with pytest.raises(VisheadsError, match=r"position='answer' needs model.generate\(..., max_new_tokens>=2\)"):
        _ = recorder.stats


def test_bad_inputs(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_llama"], "sdpa")
    inputs = _inputs(tiny_models["llava_llama"])
    with pytest.raises(VisheadsError, match="unknown position 'first'"):
        HeadRecorder(model, position="first")
    not_image = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    not_image[:, -1] = True
    with pytest.raises(VisheadsError, match="not image tokens"), torch.inference_mode(), HeadRecorder(model, region_mask=not_image):
        model(**inputs)
    right_padded = {**inputs, "attention_mask": inputs["attention_mask"].flip(-1)}
    with pytest.raises(VisheadsError, match="left-padded"), torch.inference_mode(), HeadRecorder(model):
        model(**right_padded)


def test_a_failed_enter_leaves_no_hook_and_a_recorder_cannot_be_entered_twice(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from visheads_eval.capture import recorder as recorder_module

    model = _load(tiny_models["llava_llama"], "sdpa")

    def failing(*args, **kwargs):
        raise RuntimeError("cannot intercept")

    monkeypatch.setattr(recorder_module, "intercept_attention", failing)
    with pytest.raises(RuntimeError, match="cannot intercept"), HeadRecorder(model):
        pass
    assert not model._forward_pre_hooks, "the pre-hook installed before the failure must be removed"
    monkeypatch.undo()
    recorder = HeadRecorder(model)
    with recorder, pytest.raises(RuntimeError, match="already active"), recorder:
        pass
    assert not model._forward_pre_hooks


@pytest.mark.parametrize("mask_mode", [None, "uniform"])
def test_no_query_key_or_value_outlives_a_recorded_forward(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, mask_mode: str | None
) -> None:
    """Each layer's query, key and value are freed by reference counting as soon as the forward is done:
    nothing (a reference cycle, a stored call) holds them until the cyclic garbage collector runs."""
    from visheads_eval.masking.ablation import HeadMask

    model = _load(tiny_models["llava_mistral"], "sdpa")
    inputs = _inputs(tiny_models["llava_mistral"])
    seen: list[weakref.ref] = []
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def spying_sdpa(module, query, key, value, attention_mask, **kwargs):  # the model's own kernel, watched
        seen.extend(weakref.ref(tensor) for tensor in (query, key, value))
        return sdpa(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._local_mapping, "sdpa", spying_sdpa)
    gc.disable()
    try:
        with torch.inference_mode(), contextlib.ExitStack() as hooks:
            recorder = hooks.enter_context(HeadRecorder(model))
            if mask_mode is not None:
                hooks.enter_context(HeadMask(model, [(1, 2)], mode=mask_mode))
            for _ in range(2):
                model(**inputs, use_cache=False)
                alive = [ref for ref in seen if ref() is not None]
                assert len(seen) >= 3 * model.config.text_config.num_hidden_layers and not alive, (
                    f"{len(alive)} of {len(seen)} query/key/value tensors outlived the forward"
                )
                seen.clear()
    finally:
        gc.enable()
    assert recorder.stats["image_attn"].shape == (4, 3, 4)


@pytest.mark.parametrize("position", ["last_prompt", "answer"])
def test_generation_without_a_cache_records_the_same_rows(tiny_models: dict[str, Path], position: str) -> None:
    """``generate(use_cache=False)`` feeds the whole sequence at every step: still one record per prompt,
    with its region, equal to eager attention's rows."""
    directory = tiny_models["llava_llama"]
    inputs = _inputs(directory)
    sdpa, eager = _load(directory, "sdpa"), _load(directory, "eager")
    image = inputs["input_ids"] == sdpa.config.image_token_id
    region = _region(image)
    generate = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)
    with torch.inference_mode():
        with HeadRecorder(sdpa, position=position, region_mask=region) as recorder:
            ours = sdpa.generate(**inputs, **generate, use_cache=False)
        out = eager.generate(**inputs, **generate, output_attentions=True, return_dict_in_generate=True)
    assert torch.equal(ours, out.sequences)
    attentions = out.attentions[0 if position == "last_prompt" else 1]
    rows = torch.stack([a[:, :, -1, :] for a in attentions], dim=1).float().numpy()
    expected = _reference(rows, image.numpy(), region.numpy())
    for name, value in expected.items():
        np.testing.assert_allclose(recorder.stats[name], value, atol=1e-4, err_msg=name)


def test_a_sliding_window_in_the_mask_is_recorded_as_eager_applies_it(tiny_models: dict[str, Path]) -> None:
    directory = tiny_models["llava_mistral"]
    inputs = _inputs(directory)
    sdpa, eager = _load(directory, "sdpa"), _load(directory, "eager")
    image = inputs["input_ids"] == sdpa.config.image_token_id
    last_image = int(image[0].nonzero().max())
    window = image.shape[1] - last_image + 3  # the last query sees its last keys: the question and 4 image tokens
    with torch.inference_mode():
        full = torch.stack([a[:, :, -1, :] for a in eager(**inputs, output_attentions=True).attentions], dim=1)
        for model in (sdpa, eager):
            model.config.text_config.sliding_window = window
        with HeadRecorder(sdpa) as recorder:
            sdpa(**inputs)
        windowed = torch.stack([a[:, :, -1, :] for a in eager(**inputs, output_attentions=True).attentions], dim=1)
    assert int((windowed[0, 0, 0] > 0).sum()) == window and not torch.allclose(windowed, full, atol=1e-3)
    expected = _reference(windowed.float().numpy(), image.numpy(), np.zeros_like(image.numpy()))
    assert (expected["image_attn"][0] > 0).all(), "the window must reach into the image for this test to mean anything"
    for name in ("image_attn", "text_attn", "concentration", "image_argmax"):
        np.testing.assert_allclose(recorder.stats[name][0], expected[name][0], atol=1e-4, err_msg=name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"softcap": 50.0}, r"layer 2 uses logit soft-capping \(softcap= in its attention kernel\)"),
        ({"s_aux": torch.zeros(4)}, r"layer 2 uses attention sinks \(s_aux= in its attention kernel\)"),
        ({"sliding_window": 4}, r"layer 2 attends through a sliding window of 4 keys that its attention mask does not carry \(6 keys\)"),
    ],
)
def test_rows_the_recorder_cannot_model_are_refused(kwargs: dict, message: str) -> None:
    from visheads_eval.capture.rows import attention_row
    from visheads_eval.kernel import KernelCall

    query, key = torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8)
    call = KernelCall(torch.nn.Identity(), 2, query, key, key, None, {"scaling": 0.35, **kwargs})
    with pytest.raises(VisheadsError, match=message):
        attention_row(call)
    window_in_mask = torch.zeros(1, 1, 6, 6)  # a 4-D mask carries the window: nothing to refuse
    if "sliding_window" in kwargs:
        alpha, _ = attention_row(KernelCall(torch.nn.Identity(), 2, query, key, key, window_in_mask, {"scaling": 0.35, **kwargs}))
        expected = torch.softmax(torch.einsum("bhd,bhnd->bhn", query[:, :, -1], key) * 0.35, -1)
        torch.testing.assert_close(alpha, expected)


@pytest.mark.parametrize("position", ["last_prompt", "answer"])
def test_sliding_window_layers_are_recorded_exactly(tmp_path: Path, position: str) -> None:
    """Gemma 3's sliding-window layers see only the last W keys (at decode, its cache holds only them)."""
    from fixtures.tiny.modern import build_modern

    directory = build_modern("gemma3", tmp_path / "gemma3_w6", sliding_window=6)
    inputs = _inputs(directory)
    sdpa, eager = _load(directory, "sdpa"), _load(directory, "eager")
    image = inputs["input_ids"] == sdpa.config.image_token_id
    region = _region(image)
    generate = dict(max_new_tokens=2, min_new_tokens=2, do_sample=False)
    with torch.inference_mode():
        with HeadRecorder(sdpa, position=position, region_mask=region) as recorder:
            sdpa(**inputs) if position == "last_prompt" else sdpa.generate(**inputs, **generate)
        if position == "last_prompt":
            attentions = eager(**inputs, output_attentions=True).attentions
        else:
            attentions = eager.generate(**inputs, **generate, output_attentions=True, return_dict_in_generate=True).attentions[1]
    n_positions = inputs["input_ids"].shape[1] + (position == "answer")
    widths = {a.shape[-1] for a in attentions}
    assert (position == "answer") == (widths == {6, n_positions}), widths  # the decode cache of sliding layers holds 6 keys
    for layer, weights in enumerate(attentions):
        row = weights[:, :, -1, :].float().numpy()  # (batch, head, keys): the last n_keys positions
        n_keys = row.shape[-1]
        marks = np.pad(image.numpy(), ((0, 0), (0, n_positions - image.shape[1])))[:, -n_keys:]
        in_region = np.pad(region.numpy(), ((0, 0), (0, n_positions - image.shape[1])))[:, -n_keys:]
        np.testing.assert_allclose(recorder.stats["image_attn"][:, layer], (row * marks[:, None]).sum(-1), atol=1e-5)
        np.testing.assert_allclose(recorder.stats["region_attn"][:, layer], (row * in_region[:, None]).sum(-1), atol=1e-5)
    np.testing.assert_array_equal(recorder.token_counts["n_keys"], inputs["attention_mask"].sum(-1).numpy() + (position == "answer"))
