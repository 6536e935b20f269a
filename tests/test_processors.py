"""Processors with a video part load without torchvision, for images and text, and only here."""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers
from PIL import Image

from fixtures.tiny.modern import MODERN_FAMILIES
from visheads_eval import processors
from visheads_eval.processors import images_only, load_processor, video_processors_available

WITH_VIDEO = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl", "smolvlm")


def test_this_machine_is_the_case_the_workaround_is_for(tiny_models: dict[str, Path]) -> None:
    """Without torchvision, transformers' own AutoProcessor cannot load a Qwen-VL processor (issue 48558 upstream)."""
    with pytest.raises(AttributeError, match="_extra_content"):
        transformers.Qwen2_5_VLProcessor(
            image_processor=transformers.Qwen2VLImageProcessorPil(), tokenizer=load_processor(str(tiny_models["qwen2_5_vl"])).tokenizer
        )
    assert not video_processors_available()


@pytest.mark.parametrize("family", MODERN_FAMILIES)
def test_every_family_loads_its_own_processor_class(tiny_models: dict[str, Path], family: str) -> None:
    processor = load_processor(str(tiny_models[family]))
    stock = transformers.models.auto.processing_auto.processor_class_from_name(type(processor).__name__)
    assert isinstance(processor, stock), "the images-only class is the family's own processor class, named as it"
    assert hasattr(stock, "get_attributes") and ("video_processor" in stock.get_attributes()) == (family in WITH_VIDEO)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "how many"}]}], add_generation_prompt=True, tokenize=False
    )
    out = processor(images=[[Image.new("RGB", (64, 40))]], text=[text], return_tensors="pt")
    assert out["input_ids"].shape[0] == 1 and "pixel_values" in out


def test_stock_processors_load_where_transformers_can(tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Where transformers builds video processors, its own AutoProcessor loads them, with the same arguments."""
    calls = []
    monkeypatch.setattr(processors, "video_processors_available", lambda: True)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", lambda *a, **k: calls.append((a, k)) or "stock")
    assert load_processor(str(tiny_models["qwen2_5_vl"]), revision="main") == "stock"
    assert calls == [((str(tiny_models["qwen2_5_vl"]),), {"revision": "main"})]
    monkeypatch.undo()
    assert type(load_processor(str(tiny_models["gemma3"]))) is transformers.Gemma3Processor  # no video part: stock either way


def test_nothing_in_transformers_is_changed(tiny_models: dict[str, Path]) -> None:
    load_processor(str(tiny_models["qwen2_5_vl"]))
    assert transformers.Qwen2_5_VLProcessor.get_attributes() == ["image_processor", "tokenizer", "video_processor"]
    assert images_only(transformers.Qwen2_5_VLProcessor) is not transformers.Qwen2_5_VLProcessor
    assert images_only(transformers.Gemma3Processor) is transformers.Gemma3Processor
    tokenizer = load_processor(str(tiny_models["qwen2_5_vl"])).tokenizer
    with pytest.raises(AttributeError, match="_extra_content"):
        transformers.Qwen2_5_VLProcessor(image_processor=transformers.Qwen2VLImageProcessorPil(), tokenizer=tokenizer)
