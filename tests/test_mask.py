"""HeadMask against weight surgery, on every family; stacking with HeadRecorder; reference means."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import AutoModelForImageTextToText

from fixtures.tiny_models import ALL_FAMILIES
from visheads_eval import HeadMask
from visheads_eval.capture import HeadRecorder
from visheads_eval.errors import VisheadsError
from visheads_eval.heads import Head, HeadShape, attention_modules
from visheads_eval.masking.means import HeadMeans, load_means, save_means
from visheads_eval.processors import load_processor

HEADS = [Head(0, 1), Head(1, 3), Head(2, 0)]


def _load(directory: Path, attn: str = "sdpa"):
    return AutoModelForImageTextToText.from_pretrained(directory, attn_implementation=attn).eval()


def _inputs(directory: Path, questions=("how many red circles are there in the image?", "what color?")) -> dict:
    processor = load_processor(str(directory))
    processor.tokenizer.padding_side = "left"
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}], add_generation_prompt=True
        )
        for q in questions
    ]
    images = [Image.new("RGB", (80, 50), (200, 30, 30)), Image.new("RGB", (40, 90), (30, 200, 30))][: len(questions)]
    return dict(processor(images=[[image] for image in images], text=texts, return_tensors="pt", padding=True))


def _logits(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model(**inputs).logits


def _query_rows(module: nn.Module, head: int, head_dim: int) -> tuple[nn.Linear, slice]:
    """The projection and output rows that compute ``head``'s query (Phi-3 fuses q, k, v)."""
    if hasattr(module, "q_proj"):
        return module.q_proj, slice(head * head_dim, (head + 1) * head_dim)
    return module.qkv_proj, slice(head * head_dim, (head + 1) * head_dim)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_zero_mode_equals_zeroing_o_proj_columns(tiny_models: dict[str, Path], family: str) -> None:
    model = _load(tiny_models[family])
    inputs = _inputs(tiny_models[family])
    shape = HeadShape.from_config(model.config)
    before = _logits(model, inputs)
    with HeadMask(model, HEADS, mode="zero"):
        masked = _logits(model, inputs)
    assert torch.equal(_logits(model, inputs), before), "unmasking must restore the model bit for bit"
    assert not torch.allclose(masked, before, atol=1e-3), "masking three heads must change the output"

    surgery = copy.deepcopy(model)
    with torch.no_grad():
        for head in HEADS:
            attention_modules(surgery)[head.layer].o_proj.weight[:, head.head * shape.head_dim : (head.head + 1) * shape.head_dim] = 0
    torch.testing.assert_close(masked, _logits(surgery, inputs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_uniform_mode_equals_a_zero_query(tiny_models: dict[str, Path], family: str) -> None:
    """A head whose query is zero scores every key 0: softmax over the visible keys is uniform."""
    model = _load(tiny_models[family])
    inputs = _inputs(tiny_models[family])
    shape = HeadShape.from_config(model.config)
    with HeadMask(model, HEADS, mode="uniform"):
        masked = _logits(model, inputs)
    surgery = copy.deepcopy(model)
    with torch.no_grad():
        for head in HEADS:
            projection, rows = _query_rows(attention_modules(surgery)[head.layer], head.head, shape.head_dim)
            projection.weight[rows] = 0
            if projection.bias is not None:
                projection.bias[rows] = 0
    valid = inputs["attention_mask"].bool()  # padding positions' outputs are nobody's business
    torch.testing.assert_close(masked[valid], _logits(surgery, inputs)[valid], atol=1e-5, rtol=1e-5)


def test_uniform_mode_keeps_causality(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_llama"])
    inputs = _inputs(tiny_models["llava_llama"], questions=("how many red circles are there?",))
    changed = {**inputs, "input_ids": inputs["input_ids"].clone()}
    changed["input_ids"][0, -1] = 7  # a different last token
    layer0 = [Head(0, h) for h in range(4)]  # every head of the first layer: the only path forward
    with HeadMask(model, layer0, mode="uniform"):
        a, b = _logits(model, inputs), _logits(model, changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1], atol=0, rtol=0)
    assert not torch.equal(a[:, -1], b[:, -1])


def test_mean_mode_equals_surgery_with_a_bias(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    model = _load(tiny_models["llava_mistral"])
    inputs = _inputs(tiny_models["llava_mistral"])
    shape = HeadShape.from_config(model.config)
    with HeadMeans(model) as accumulator, torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    save_means(tmp_path / "means.npz", accumulator.means, {"inputs": "two test prompts"})
    means = load_means(tmp_path / "means.npz", shape)
    with HeadMask(model, HEADS, mode="mean", means=means):
        masked = _logits(model, inputs)

    surgery = copy.deepcopy(model)
    with torch.no_grad():
        for head in HEADS:
            attention = attention_modules(surgery)[head.layer]
            old = attention.o_proj
            columns = slice(head.head * shape.head_dim, (head.head + 1) * shape.head_dim)
            new = nn.Linear(old.in_features, old.out_features, bias=True)
            new.weight.copy_(old.weight)
            new.bias.copy_((old.bias if old.bias is not None else 0) + old.weight[:, columns] @ means[head])
            new.weight[:, columns] = 0
            attention.o_proj = new
    torch.testing.assert_close(masked, _logits(surgery, inputs), atol=1e-5, rtol=1e-5)


def test_means_average_every_unpadded_position(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_llama"])
    inputs = _inputs(tiny_models["llava_llama"])
    seen = []
    handle = attention_modules(model)[1].o_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    with HeadMeans(model) as accumulator, torch.inference_mode():
        model(**inputs)
    handle.remove()
    valid = inputs["attention_mask"].bool()
    expected = seen[0][valid].double().mean(0).float().reshape(4, -1)
    assert accumulator.positions == int(valid.sum())
    np.testing.assert_allclose(accumulator.means[Head(1, 3)], expected[3].numpy(), atol=1e-6)


def test_recorder_under_masks(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_llama"])
    inputs = _inputs(tiny_models["llava_llama"])
    image = inputs["input_ids"] == model.config.image_token_id
    with torch.inference_mode(), HeadRecorder(model) as plain:
        model(**inputs)
    with torch.inference_mode(), HeadMask(model, [Head(2, 1)], mode="zero"), HeadRecorder(model) as zeroed:
        model(**inputs)
    # removing a head of the last layer changes nothing upstream of it, its own attention included
    np.testing.assert_allclose(zeroed.stats["image_attn"], plain.stats["image_attn"], atol=1e-6)
    with torch.inference_mode(), HeadRecorder(model) as recorder, HeadMask(model, [Head(1, 2)], mode="uniform"):
        model(**inputs)
    n_keys = inputs["attention_mask"].sum(-1).numpy()
    np.testing.assert_allclose(recorder.stats["image_attn"][:, 1, 2], image.sum(-1).numpy() / n_keys, atol=1e-6)
    np.testing.assert_allclose(recorder.stats["concentration"][:, 1, 2], 0.0, atol=1e-6)


def test_bad_masks(tiny_models: dict[str, Path]) -> None:
    model = _load(tiny_models["llava_llama"])
    with pytest.raises(VisheadsError, match="unknown mask mode 'zeros' \\(did you mean 'zero'\\?\\)"):
        HeadMask(model, HEADS, mode="zeros")
    with pytest.raises(VisheadsError, match="head L3H0 is out of range"):
        HeadMask(model, [(3, 0)])
    with pytest.raises(VisheadsError, match="mode='mean' needs the heads' reference means"):
        HeadMask(model, HEADS, mode="mean")
