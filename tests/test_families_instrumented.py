"""The instrumentation on today's families: a one-token answer recorded through the fallback forward (whose
per-token side inputs, Qwen's ``mm_token_type_ids`` and Gemma 3's ``token_type_ids``, grow by the answer token)
equals the answer step of a longer generation, recorded by the model's own decoding; records carry the family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from fixtures.tiny.modern import MODERN_FAMILIES
from fixtures.tiny_models import ALL_FAMILIES
from visheads_eval.capture import HeadRecorder
from visheads_eval.errors import VisheadsError
from visheads_eval.instrumentation import DocContext, Instrumentation
from visheads_eval.model_args import check_model
from visheads_eval.processors import load_processor
from visheads_eval.records import RecordKey, load_records


def _batch(directory: Path) -> tuple[dict, list[Image.Image]]:
    processor = load_processor(str(directory))
    processor.tokenizer.padding_side = "left"
    questions = ["how many red circles are there in the image?", "what color?"]
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}], add_generation_prompt=True
        )
        for q in questions
    ]
    images = [Image.new("RGB", (80, 50), (200, 30, 30)), Image.new("RGB", (40, 90), (30, 200, 30))]
    return dict(processor(images=[[image] for image in images], text=texts, return_tensors="pt", padding=True)), images


@pytest.mark.parametrize("family", MODERN_FAMILIES)
def test_one_token_answer_is_recorded_as_the_decoding_step(tiny_models: dict[str, Path], family: str, tmp_path: Path) -> None:
    directory = tiny_models[family]
    inputs, images = _batch(directory)
    model = AutoModelForImageTextToText.from_pretrained(directory).eval()
    no_image_answer = {"suppress_tokens": [model.config.image_token_id]}  # a random model may answer with an image token
    with torch.inference_mode(), HeadRecorder(model, position="answer") as reference:
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False, **no_image_answer)

    checked = check_model(str(directory), {"record": str(tmp_path / "rec"), "position": "answer"})
    instrumentation = Instrumentation(checked)
    instrumentation.attach(model, load_processor(str(directory)), rank=0)
    contexts = [DocContext(RecordKey("t", "test", row), {}, [image]) for row, image in enumerate(images)]
    with torch.inference_mode():
        output = instrumentation.generate(
            model.generate, contexts, (), {**inputs, "max_new_tokens": 1, "do_sample": False, "top_k": 5, **no_image_answer}
        )
    instrumentation.finish()
    assert output.shape[1] == inputs["input_ids"].shape[1] + 1, "generation stopped after one token: the fallback forward ran"
    records = load_records(tmp_path / "rec", progress=False)
    order = np.argsort(records.meta["doc_id"].to_numpy())
    np.testing.assert_allclose(records.stat("image_attn")[order], reference.stats["image_attn"], atol=1e-4)
    assert records.run["family"] == family and instrumentation.describe()["family"] == family


def test_an_unknown_per_token_input_is_refused_by_name(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    directory = tiny_models["llava_llama"]
    inputs, images = _batch(directory)
    model = AutoModelForImageTextToText.from_pretrained(directory).eval()
    instrumentation = Instrumentation(check_model(str(directory), {"record": str(tmp_path / "rec"), "position": "answer"}))
    instrumentation.attach(model, load_processor(str(directory)), rank=0)
    contexts = [DocContext(RecordKey("t", "test", row), {}, [image]) for row, image in enumerate(images)]
    strange = {**inputs, "position_ids": inputs["attention_mask"].long().cumsum(-1) - 1, "max_new_tokens": 1, "do_sample": False}
    with pytest.raises(VisheadsError, match="per-token input 'position_ids'"), torch.inference_mode():
        instrumentation.generate(model.generate, contexts, (), strange)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_is_found_from_its_config(tiny_models: dict[str, Path], family: str) -> None:
    checked = check_model(str(tiny_models[family]), {})
    model = AutoModelForImageTextToText.from_pretrained(tiny_models[family])
    assert type(model).__name__ == checked.family.model_class
