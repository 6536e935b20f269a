"""Assemble the processor of a small LLaVA-family model: image processor, tokenizer, chat template.

The chat template follows the Vicuna layout that LLaVA-1.5 uses (``USER: <image>\\n... ASSISTANT:``)
and accepts both plain-string content (lmms-eval's simple adapter) and the list-of-parts content of
chat messages (lmms-eval's chat adapter).
"""

from __future__ import annotations

from transformers import (
    LlavaImageProcessorPil,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_llava_processor(
    tokenizer: PreTrainedTokenizerFast,
    *,
    image_size: int,
    patch_size: int,
    pad_to_square: bool = False,
) -> LlavaProcessor:
    """A LLaVA-1.5 / ViP-LLaVA processor: resize the shortest edge and centre-crop to ``image_size``.

    With ``pad_to_square`` the image is first padded to a square (the original LLaVA-1.5 recipe),
    so nothing is cropped away.
    """
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_pad=pad_to_square,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def build_llava_next_processor(
    tokenizer: PreTrainedTokenizerFast,
    *,
    image_size: int,
    patch_size: int,
    grid_pinpoints: list[list[int]],
) -> LlavaNextProcessor:
    """A LLaVA-NeXT (anyres) processor tiling images onto the best of ``grid_pinpoints``."""
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=grid_pinpoints,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
