"""The vision-language model families visheads_eval supports, as data: one :class:`Family` per ``config.model_type``.

What differs between families is an entry here, not a branch in the code that records, masks or reads
the lens: the transformers class that loads the model, the region-geometry layout of its image tokens
(:mod:`visheads_eval.geometry`), the per-token inputs besides ``input_ids`` and ``attention_mask`` that a
forward over the prompt plus one answer token must extend, and lmms-eval's own adapter for the family,
whose prompting ``visheads`` reproduces. Every family finds its image tokens as
``input_ids == config.image_token_id`` (the processors expand one placeholder into that many tokens) and
routes its text layers' attention through transformers' attention registry, which is where recording and
masking hook in (:mod:`visheads_eval.kernel`).

Adding a family: an entry in :data:`FAMILIES`, a layout in :mod:`visheads_eval.geometry` and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from visheads_eval.errors import VisheadsError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


@dataclass(frozen=True)
class Family:
    """One ``config.model_type`` and what is particular to it."""

    model_type: str
    label: str  # as papers and model cards name it
    model_class: str  # the transformers class that loads it for generation
    layout: str  # the region geometry of its image tokens (visheads_eval.geometry.layouts)
    lmms_adapter: str | None  # lmms-eval's own adapter for the family (its HF-format one), if it has one
    side_inputs: tuple[str, ...] = ()  # per-token inputs (batch, seq) besides input_ids and attention_mask; 0 = text

    def model_class_object(self) -> type[PreTrainedModel]:
        import transformers

        return getattr(transformers, self.model_class)


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family("llava", "LLaVA-1.5", "LlavaForConditionalGeneration", "llava", "llava_hf"),
        Family("llava_next", "LLaVA-1.6 / NeXT", "LlavaNextForConditionalGeneration", "llava_next", "llava_hf"),
        Family("vipllava", "ViP-LLaVA", "VipLlavaForConditionalGeneration", "llava", "llava_hf"),
        Family("llava_onevision", "LLaVA-OneVision", "LlavaOnevisionForConditionalGeneration", "llava_onevision", "llava_hf"),
        Family("qwen2_vl", "Qwen2-VL", "Qwen2VLForConditionalGeneration", "qwen_vl", "qwen2_vl", ("mm_token_type_ids",)),
        Family("qwen2_5_vl", "Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration", "qwen_vl", "qwen2_5_vl", ("mm_token_type_ids",)),
        Family("qwen3_vl", "Qwen3-VL", "Qwen3VLForConditionalGeneration", "qwen_vl", "qwen3_vl", ("mm_token_type_ids",)),
        Family("internvl", "InternVL", "InternVLForConditionalGeneration", "internvl", "internvl_hf"),
        Family("gemma3", "Gemma 3", "Gemma3ForConditionalGeneration", "gemma3", "gemma3", ("token_type_ids",)),
        Family("idefics3", "Idefics3", "Idefics3ForConditionalGeneration", "idefics3", None),
        Family("smolvlm", "SmolVLM", "SmolVLMForConditionalGeneration", "idefics3", None),
    )
}

# Families known and refused, with the reason: what recording or masking them would need beyond an entry.
REFUSED: dict[str, str] = {
    "mllama": "Mllama (Llama-3.2-Vision) reads the image through cross-attention layers, not through image tokens "
    "in self-attention, so it has no visual heads in the paper's sense",
    "paligemma": "PaliGemma 2's Gemma 2 language model soft-caps attention logits, which the recorder's attention "
    "row (an SDPA softmax) does not apply, and PaliGemma's image and prompt attend to each other both ways",
}


def family_of(config: PretrainedConfig) -> Family:
    """The family of a model from its config; one line naming what is supported otherwise."""
    model_type = getattr(config, "model_type", None)
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    supported = ", ".join(FAMILIES)
    if model_type in REFUSED:
        raise VisheadsError(f"'{model_type}' is not supported: {REFUSED[model_type]}; supported: {supported}")
    raise VisheadsError(f"a '{model_type}' model is not a supported vision-language family; supported: {supported}")
