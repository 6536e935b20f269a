"""Tiny random models of today's vision-language families, saved with processors that load offline.

One builder per family beyond the paper's LLaVA: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision,
InternVL, Gemma 3, Idefics3 and SmolVLM. Each takes the family's real configuration classes, shrunk
(2 vision layers, 3 text layers x 4 heads, grouped-query attention where the family has it), the
family's real image processor with small image sizes, and a word-level tokenizer holding the family's
own markers (``<|vision_start|>``, ``<start_of_image>``, ``<fake_token_around_image>``, ...) with a chat
template in the family's layout. Processors are saved through :func:`visheads_eval.processors.images_only`
where transformers cannot build their video part without torchvision.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import PreTrainedTokenizerFast

from tools.tiny.tokenizer import build_tokenizer
from visheads_eval.processors import images_only

MODERN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl", "gemma3", "idefics3", "smolvlm")
WORDS = (
    "how many are there in the image is this a of what color shape object objects red green blue "
    "yellow circle circles square squares triangle triangles answer with number single word yes no "
    "question box boxed exemplary these kind system you helpful model"
).split()
INITIALIZER_RANGE = 0.2
N_HEADS = 4
HEAD_DIM = 16

# Chat layouts of the families (the real templates' structure, over the tiny vocabulary).
IM_TEMPLATE = (  # Qwen2/2.5/3-VL, LLaVA-OneVision, InternVL: <|im_start|>role ... <|im_end|>
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ image_marker }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)
GEMMA_TEMPLATE = (
    "<s>{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn> {% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model {% endif %}"
)
IDEFICS_TEMPLATE = (
    "<s>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance> {% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
QWEN_MARKERS = ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>")


def _tokenizer(image_token: str, markers: tuple[str, ...], **named: str) -> PreTrainedTokenizerFast:
    return build_tokenizer(WORDS, image_token=image_token, extra_special=markers, named=named)


def _text(tokenizer: PreTrainedTokenizerFast, n_layers: int, **extra: Any) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=HEAD_DIM * N_HEADS,
        intermediate_size=128,
        num_hidden_layers=n_layers,
        num_attention_heads=N_HEADS,
        num_key_value_heads=N_HEADS // 2,
        head_dim=HEAD_DIM,
        max_position_embeddings=1024,
        initializer_range=INITIALIZER_RANGE,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def _ids(tokenizer: PreTrainedTokenizerFast, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(token) for token in tokens]


def _qwen(model_type: str, n_layers: int) -> tuple[Any, Any]:
    tokenizer = _tokenizer("<|image_pad|>", QWEN_MARKERS)
    tokenizer.chat_template = IM_TEMPLATE.replace("{{ image_marker }}", "<|vision_start|><|image_pad|><|vision_end|>")
    image, video, start, end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    markers = dict(image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)
    hidden = HEAD_DIM * N_HEADS
    if model_type == "qwen3_vl":
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=16,
            spatial_merge_size=2,
            out_hidden_size=hidden,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0, 1],
        )
        patch = 16
        config = transformers.Qwen3VLConfig(text_config=_text(tokenizer, n_layers, rope_parameters=rope), vision_config=vision, **markers)
        model_class = transformers.Qwen3VLForConditionalGeneration
    else:
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]}
        text = _text(tokenizer, n_layers, rope_parameters=rope)
        if model_type == "qwen2_vl":
            vision = dict(depth=2, embed_dim=32, hidden_size=hidden, num_heads=2, patch_size=14, spatial_merge_size=2, mlp_ratio=2)
            config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, **markers)
            model_class = transformers.Qwen2VLForConditionalGeneration
        else:
            vision = dict(
                depth=2,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                patch_size=14,
                spatial_merge_size=2,
                out_hidden_size=hidden,
                window_size=56,
                fullatt_block_indexes=[1],
            )
            config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **markers)
            model_class = transformers.Qwen2_5_VLForConditionalGeneration
        patch = 14
    cell = patch * 2
    image_processor = transformers.Qwen2VLImageProcessorPil(
        patch_size=patch,
        merge_size=2,
        size={"shortest_edge": 4 * cell * cell, "longest_edge": 36 * cell * cell},
    )
    processor_class = (
        transformers.Qwen3VLProcessor
        if model_type == "qwen3_vl"
        else (transformers.Qwen2_5_VLProcessor if model_type == "qwen2_5_vl" else transformers.Qwen2VLProcessor)
    )
    processor = images_only(processor_class)(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    return model_class(config), processor


def _onevision(n_layers: int) -> tuple[Any, Any]:
    tokenizer = _tokenizer("<image>", ("<video>", "<|im_start|>", "<|im_end|>"))
    tokenizer.chat_template = IM_TEMPLATE.replace("{{ image_marker }}", "<image>")
    image, video = _ids(tokenizer, "<image>", "<video>")
    pinpoints = [[28 * r, 28 * c] for r in range(1, 4) for c in range(1, 4)]
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=7,
        model_type="siglip_vision_model",
    )
    config = transformers.LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_text(tokenizer, n_layers)},
        vision_config=vision,
        image_token_id=image,
        video_token_id=video,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_2",
        vision_feature_layer=-1,
    )
    image_processor = transformers.LlavaOnevisionImageProcessorPil(
        size={"height": 28, "width": 28},
        image_grid_pinpoints=pinpoints,
        crop_size={"height": 28, "width": 28},
    )
    processor = images_only(transformers.LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=tokenizer.chat_template,
        vision_aspect_ratio="anyres_max_2",
    )
    return transformers.LlavaOnevisionForConditionalGeneration(config), processor


def _internvl(n_layers: int) -> tuple[Any, Any]:
    markers = ("<img>", "</img>", "<video>", "<|im_start|>", "<|im_end|>")
    tokenizer = _tokenizer(
        "<IMG_CONTEXT>",
        markers,
        start_image_token="<img>",
        end_image_token="</img>",
        context_image_token="<IMG_CONTEXT>",
        video_token="<video>",
    )
    tokenizer.chat_template = IM_TEMPLATE.replace("{{ image_marker }}", "<IMG_CONTEXT>")
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=[56, 56], patch_size=[14, 14]
    )
    config = transformers.InternVLConfig(
        text_config={"model_type": "qwen2", **_text(tokenizer, n_layers)},
        vision_config=vision,
        image_token_id=_ids(tokenizer, "<IMG_CONTEXT>")[0],
        image_seq_length=4,
        vision_feature_layer=-1,
    )
    image_processor = transformers.GotOcr2ImageProcessorPil(
        size={"height": 56, "width": 56},
        crop_to_patches=True,
        min_patches=1,
        max_patches=6,
    )
    processor = images_only(transformers.InternVLProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=4,
        chat_template=tokenizer.chat_template,
    )
    return transformers.InternVLForConditionalGeneration(config), processor


def _gemma3(n_layers: int, sliding_window: int) -> tuple[Any, Any]:
    tokenizer = _tokenizer(
        "<image_soft_token>",
        ("<start_of_image>", "<end_of_image>", "<start_of_turn>", "<end_of_turn>"),
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
    )
    tokenizer.chat_template = GEMMA_TEMPLATE
    soft, boi, eoi = _ids(tokenizer, "<image_soft_token>", "<start_of_image>", "<end_of_image>")
    text = _text(
        tokenizer,
        n_layers,
        sliding_window=sliding_window,
        layer_types=[("sliding_attention", "full_attention")[i % 2] for i in range(n_layers)],
        query_pre_attn_scalar=HEAD_DIM,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        model_type="siglip_vision_model",
        vision_use_head=False,
    )
    # Untied unembedding: with Gemma's scaled, tied embeddings a random model only echoes its last input token.
    config = transformers.Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=16,
        image_token_id=soft,
        boi_token_id=boi,
        eoi_token_id=eoi,
        tie_word_embeddings=False,
    )
    image_processor = transformers.Gemma3ImageProcessorPil(size={"height": 64, "width": 64})
    processor = transformers.Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=16, chat_template=tokenizer.chat_template
    )
    return transformers.Gemma3ForConditionalGeneration(config), processor


def _idefics(model_type: str, n_layers: int) -> tuple[Any, Any]:
    tokenizer = _tokenizer(
        "<image>",
        (
            "<fake_token_around_image>",
            "<global-img>",
            "<end_of_utterance>",
            *(f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)),
        ),
        fake_image_token="<fake_token_around_image>",
        global_image_token="<global-img>",
        end_of_utterance_token="<end_of_utterance>",
    )
    tokenizer.chat_template = IDEFICS_TEMPLATE
    image = _ids(tokenizer, "<image>")[0]
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    text = {"model_type": "llama", **_text(tokenizer, n_layers)}
    if model_type == "smolvlm":
        config = transformers.SmolVLMConfig(text_config=text, vision_config=vision, image_token_id=image, scale_factor=2)
        image_processor = transformers.SmolVLMImageProcessorPil(size={"longest_edge": 96}, max_image_size={"longest_edge": 32})
        processor = images_only(transformers.SmolVLMProcessor)(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            image_seq_len=4,
            chat_template=tokenizer.chat_template,
        )
        return transformers.SmolVLMForConditionalGeneration(config), processor
    config = transformers.Idefics3Config(text_config=text, vision_config=vision, image_token_id=image, scale_factor=2)
    image_processor = transformers.Idefics3ImageProcessorPil(size={"longest_edge": 96}, max_image_size={"longest_edge": 32})
    processor = transformers.Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=tokenizer.chat_template
    )
    return transformers.Idefics3ForConditionalGeneration(config), processor


_BUILDERS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "qwen2_vl": lambda n_layers, **_: _qwen("qwen2_vl", n_layers),
    "qwen2_5_vl": lambda n_layers, **_: _qwen("qwen2_5_vl", n_layers),
    "qwen3_vl": lambda n_layers, **_: _qwen("qwen3_vl", n_layers),
    "llava_onevision": lambda n_layers, **_: _onevision(n_layers),
    "internvl": lambda n_layers, **_: _internvl(n_layers),
    "gemma3": lambda n_layers, sliding_window=512, **_: _gemma3(n_layers, sliding_window),
    "idefics3": lambda n_layers, **_: _idefics("idefics3", n_layers),
    "smolvlm": lambda n_layers, **_: _idefics("smolvlm", n_layers),
}


def _sharpen_qk_norms(model: torch.nn.Module) -> None:
    """Qwen3 and Gemma 3 normalise queries and keys per head, which keeps a random model's attention almost
    uniform; larger norm weights give it the peaked attention a trained model has."""
    with torch.no_grad():
        for layer in model.get_decoder().layers:
            for name in ("q_norm", "k_norm"):
                norm = getattr(layer.self_attn, name, None)
                if norm is not None:
                    norm.weight.fill_(3.0)


def build_modern(family: str, directory: Path, seed: int = 0, n_layers: int = 3, **options: Any) -> Path:
    """Build the tiny random model of ``family`` (one of :data:`MODERN_FAMILIES`), save it and its processor
    in ``directory``. ``sliding_window=`` sets Gemma 3's window."""
    torch.manual_seed(seed)
    model, processor = _BUILDERS[family](n_layers=n_layers, **options)
    _sharpen_qk_norms(model)
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
