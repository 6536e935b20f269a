"""Tiny random models of every supported family, built from small configs, saved with an offline processor.

One builder per family the paper studies: LLaVA-1.5 on Llama, on Mistral (grouped-query attention)
and on Phi-3 (fused qkv), LLaVA-NeXT (anyres, non-square tiling) and ViP-LLaVA; today's families
(Qwen2/2.5/3-VL, LLaVA-OneVision, InternVL, Gemma 3, Idefics3, SmolVLM) come from
:mod:`tools.tiny.modern`. Text-model weights are initialised wide enough (``initializer_range``) that
attention is peaked rather than uniform.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    MistralConfig,
    Phi3Config,
    PreTrainedModel,
    VipLlavaConfig,
    VipLlavaForConditionalGeneration,
)

from tools.tiny.modern import MODERN_FAMILIES, build_modern
from tools.tiny.processor import build_llava_next_processor, build_llava_processor
from tools.tiny.tokenizer import build_tokenizer

FAMILIES = ("llava_llama", "llava_mistral", "llava_phi3", "llava_next", "vipllava")  # the paper's LLaVA family
ALL_FAMILIES = (*FAMILIES, *MODERN_FAMILIES)
WORDS = (
    "how many are there in the image is this a of what color shape object objects red green blue "
    "yellow circle circles square squares triangle triangles answer with number single word yes no "
    "question box boxed exemplary these kind"
).split()
IMAGE_SIZE = 56
PATCH_SIZE = 14
GRID_PINPOINTS = [[56, 112], [112, 56], [112, 112]]
INITIALIZER_RANGE = 0.2


def _text_config(
    family: str, vocab_size: int, special: dict[str, int], n_layers: int, n_heads: int
) -> LlamaConfig | MistralConfig | Phi3Config:
    common = dict(
        vocab_size=vocab_size,
        hidden_size=16 * n_heads,
        intermediate_size=32 * n_heads,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        max_position_embeddings=512,
        initializer_range=INITIALIZER_RANGE,
        **special,
    )
    if family == "llava_mistral":
        return MistralConfig(num_key_value_heads=n_heads // 2, sliding_window=None, **common)
    if family == "llava_phi3":
        return Phi3Config(num_key_value_heads=n_heads, **common)
    return LlamaConfig(num_key_value_heads=n_heads, **common)


def build_family(family: str, directory: Path, seed: int = 0, n_layers: int = 3, n_heads: int = 4) -> Path:
    """Build the tiny random model of ``family`` (3 layers x 4 heads unless told), save it and its
    processor in ``directory``."""
    if family in MODERN_FAMILIES:
        return build_modern(family, directory, seed=seed, n_layers=n_layers)
    tokenizer = build_tokenizer(WORDS)
    special = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = _text_config(family, len(tokenizer), special, n_layers, n_heads)
    common = dict(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)
    model_class: type[PreTrainedModel]
    if family == "llava_next":
        config = LlavaNextConfig(image_grid_pinpoints=GRID_PINPOINTS, **common)
        model_class = LlavaNextForConditionalGeneration
        processor = build_llava_next_processor(tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, grid_pinpoints=GRID_PINPOINTS)
    elif family == "vipllava":
        config = VipLlavaConfig(vision_feature_layers=[-2, -1], **common)
        model_class = VipLlavaForConditionalGeneration
        processor = build_llava_processor(tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    else:
        config = LlavaConfig(**common)
        model_class = LlavaForConditionalGeneration
        processor = build_llava_processor(tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
