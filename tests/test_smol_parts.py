"""visheads-smol's trained parts (tools.smol.parts): what a training session keeps is the model it trained,
up to float16 rounding, and a continued session starts from exactly those weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

from tools.smol.parts import save_parts
from visheads_eval.errors import VisheadsError
from visheads_eval.organism.smol import PARTS_FILE, PROJECTOR_FILE, load_parts, read_sessions
from visheads_eval.processors import load_processor


def _trained(folder: Path) -> torch.nn.Module:
    """A tiny LLaVA with LoRA adapters on its language model, adapters and projector moved off their init."""
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=r".*language_model.*\.(q_proj|v_proj|down_proj)")
    peft_model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name or "multi_modal_projector" in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return peft_model


def _logits(model: torch.nn.Module, folder: Path) -> torch.Tensor:
    """The model's logits on one image and question, through the model's own processor."""
    processor = load_processor(str(folder))
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "how many"}]}], add_generation_prompt=True
    )
    inputs = processor(images=[Image.new("RGB", (40, 30), (200, 30, 30))], text=[text], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def test_parts_restore_the_trained_model_in_float16(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = tiny_models["llava_llama"]
    trained = _trained(folder)
    config = trained.base_model.model.config
    sessions = [{"config": {"seed": 0}, "train_seconds": 1.0}]
    parts = save_parts(tmp_path / "parts", trained, sessions)
    assert read_sessions(parts) == sessions
    # Every stored weight is float16, and nothing but the projector and the adapters is stored.
    projector = load_file(str(parts / PROJECTOR_FILE))
    adapter = load_file(str(parts / "adapter" / "adapter_model.safetensors"))
    assert {value.dtype for value in [*projector.values(), *adapter.values()]} == {torch.float16}
    assert all("lora_" in name for name in adapter) and len(adapter) == 2 * 3 * config.text_config.num_hidden_layers
    # Loaded into a fresh copy of the base model: the trained model with its projector and adapters rounded to
    # float16 (done here by hand on the trained model itself).
    restored = load_parts(LlavaForConditionalGeneration.from_pretrained(folder).eval(), parts, trainable=True)
    assert any(p.requires_grad for n, p in restored.named_parameters() if "lora_" in n), "a continued session trains the adapters"
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if "lora_" in name or "multi_modal_projector" in name:
                parameter.copy_(parameter.half().float())
    reference = _logits(trained, folder)
    torch.testing.assert_close(_logits(restored, folder), reference, atol=1e-5, rtol=1e-5)
    untouched = _logits(LlavaForConditionalGeneration.from_pretrained(folder).eval(), folder)
    assert (untouched - reference).abs().max() > 1e-2, "the parts change the model"


def test_parts_whose_files_changed_are_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    parts = save_parts(tmp_path / "parts", _trained(tiny_models["llava_llama"]), [])
    (parts / PROJECTOR_FILE).write_bytes((parts / PROJECTOR_FILE).read_bytes()[:-2] + b"\x00\x00")
    with pytest.raises(VisheadsError, match=f"does not match the SHA-256 recorded in {parts / PARTS_FILE}"):
        read_sessions(parts)
