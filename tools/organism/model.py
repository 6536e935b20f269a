"""The organism's architecture: a small LLaVA-1.5 (CLIP-style tower, MLP projector, Llama text model).

The tokenizer is the project's offline word-level tokenizer over the words of the synthetic PointQA
prompts; the processor pads images to a square and resizes them to ``GRID`` x ``GRID`` patches, so each
cell of a synthetic scene lands on exactly one image token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from fixtures.tiny.processor import build_llava_processor
from fixtures.tiny.tokenizer import build_tokenizer
from visheads_eval.data import synth
from visheads_eval.data.pointqa import QUESTION_KINDS, VARIANTS, question_text

PATCH_SIZE = 14
IMAGE_SIZE = synth.GRID * PATCH_SIZE


@dataclass(frozen=True)
class Architecture:
    """Sizes of the three parts; the defaults are the shipped organism's."""

    vision_hidden: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    text_hidden: int = 96
    text_layers: int = 6
    text_heads: int = 8
    text_intermediate: int = 256

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def prompt_words() -> list[str]:
    """The words of every synthetic PointQA prompt, exactly as the tasks render them."""
    example = next(synth.generate_docs(0, "vocabulary", 1))
    texts = [question_text(example, kind, variant) for kind in QUESTION_KINDS for variant in VARIANTS]
    return [*synth.vocabulary(), *" ".join(texts).split()]


def build_processor() -> LlavaProcessor:
    """The organism's tokenizer and image processor (pads to a square, ``IMAGE_SIZE`` pixels)."""
    tokenizer = build_tokenizer(word.strip(".,?[]") for word in prompt_words())
    return build_llava_processor(tokenizer, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, pad_to_square=True)


def build_model(processor: LlavaProcessor, architecture: Architecture, seed: int) -> LlavaForConditionalGeneration:
    """A freshly initialised organism (weights drawn from ``seed``)."""
    tokenizer = processor.tokenizer
    vision = CLIPVisionConfig(
        hidden_size=architecture.vision_hidden,
        intermediate_size=2 * architecture.vision_hidden,
        num_hidden_layers=architecture.vision_layers,
        num_attention_heads=architecture.vision_heads,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=architecture.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=architecture.text_hidden,
        intermediate_size=architecture.text_intermediate,
        num_hidden_layers=architecture.text_layers,
        num_attention_heads=architecture.text_heads,
        num_key_value_heads=architecture.text_heads,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=synth.GRID * synth.GRID,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():
        embedding = model.model.vision_tower.embeddings.position_embedding.weight  # (1 + patches, width)
        embedding[1:] = 2 * grid_position_code(synth.GRID, architecture.vision_hidden)
    return model


def grid_position_code(grid: int, width: int) -> torch.Tensor:
    """``(grid * grid, width)`` 2-D sine-cosine code of each patch's row and column (half the width each).

    The vision tower's position embeddings start from this code (as in MAE) rather than from noise, so
    that which cell a patch is in can be read from the start; they are trained from there.
    """
    quarter = width // 4
    frequencies = 1.0 / (grid ** (torch.arange(quarter) / quarter))  # (quarter,)
    angles = torch.arange(grid)[:, None] * frequencies[None, :] * torch.pi / 2  # (grid, quarter)
    code_1d = torch.cat([angles.sin(), angles.cos()], dim=1)  # (grid, 2 * quarter)
    rows = code_1d[:, None, :].expand(grid, grid, -1)
    columns = code_1d[None, :, :].expand(grid, grid, -1)
    return torch.cat([rows, columns], dim=-1).reshape(grid * grid, 4 * quarter)
