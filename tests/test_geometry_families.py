"""Region geometry of the families beyond LLaVA, checked three independent ways.

1. Hand-worked boxes on non-square images, per family, the arithmetic written out in comments, with the
   tiny models' processors and with the real models' settings (Qwen's 28 px cells, Gemma 3's 896 px image
   pooled 16 x 16, InternVL's 448 px tiles, SmolVLM's 512 px tiles).
2. Token counts against the real processors' ``input_ids`` over a sweep of image sizes.
3. Pixels: a white box painted on a black image, run through the real processor; each vision patch's
   brightness is then pushed through the model's own token-forming code (Qwen's patch order, window
   permutation and merger, Gemma 3's pooling projector, InternVL's and Idefics3's pixel shuffle,
   LLaVA-OneVision's unpadding, bilinear downsampling and newlines), with only the learned parts stubbed
   out, so the token order is the model's and not an assumption of this file. A token is "clearly in" when
   one of its source patches holds a near-white pixel and "clearly out" when none holds any light at all;
   tokens between the two (a box edge within a pixel or two of a footprint boundary, blurred by resampling)
   are not compared.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers
from PIL import Image, ImageDraw
from torch import nn
from transformers import AutoConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling

from fixtures.tiny.modern import MODERN_FAMILIES, build_modern
from visheads_eval.errors import VisheadsError
from visheads_eval.families import FAMILIES
from visheads_eval.geometry import image_token_count, region_token_mask
from visheads_eval.geometry.modern import bilinear_sources
from visheads_eval.processors import images_only, load_processor

PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "how many"}]}]
Tiny = dict[str, tuple[Path, Any, Any]]  # family -> (tiny model folder, processor, config)
Real = dict[str, tuple[Any, Any]]  # case -> (processor, config) with a real model's image settings


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """Each modern family's tiny model folder, its processor and its config, built once for the module."""
    root = tmp_path_factory.mktemp("modern")
    built = {}
    for family in MODERN_FAMILIES:
        folder = build_modern(family, root / family)
        built[family] = (folder, load_processor(str(folder)), AutoConfig.from_pretrained(folder))
    return built


REAL_NAMES = [
    "qwen2_5_vl_real",
    "qwen3_vl_real",
    "gemma3_real",
    "gemma3_pan_and_scan",
    "internvl_real",
    "smolvlm_real",
    "idefics3_real",
    "llava_onevision_real",
]


def real_cases(tiny: Tiny) -> Real:
    """The real models' image settings, on the tiny models' tokenizers and configs (no model is built)."""
    cases = {}
    for family, processor_class, patch, pixels in [
        ("qwen2_5_vl", transformers.Qwen2_5_VLProcessor, 14, 1605632),
        ("qwen3_vl", transformers.Qwen3VLProcessor, 16, 1048576),
    ]:
        _, processor, config = tiny[family]
        image_processor = transformers.Qwen2VLImageProcessorPil(
            patch_size=patch, merge_size=2, size={"shortest_edge": 3136, "longest_edge": pixels}
        )
        real = images_only(processor_class)(
            image_processor=image_processor, tokenizer=processor.tokenizer, chat_template=processor.chat_template
        )
        cases[family + "_real"] = (real, config)

    _, processor, config = tiny["gemma3"]
    config = copy.deepcopy(config)
    config.vision_config.image_size, config.vision_config.patch_size, config.mm_tokens_per_image = 896, 14, 256
    gemma = transformers.Gemma3Processor(
        image_processor=transformers.Gemma3ImageProcessorPil(size={"height": 896, "width": 896}),
        tokenizer=processor.tokenizer,
        image_seq_length=256,
        chat_template=processor.chat_template,
    )
    cases["gemma3_real"] = (gemma, config)
    pan_and_scan = transformers.Gemma3Processor(
        image_processor=transformers.Gemma3ImageProcessorPil(size={"height": 896, "width": 896}),
        tokenizer=processor.tokenizer,
        image_seq_length=256,
        chat_template=processor.chat_template,
    )
    pan_and_scan.images_kwargs = {**transformers.Gemma3Processor.images_kwargs, "do_pan_and_scan": True}
    cases["gemma3_pan_and_scan"] = (pan_and_scan, config)

    _, processor, config = tiny["internvl"]
    config = copy.deepcopy(config)
    config.vision_config.image_size, config.vision_config.patch_size = [448, 448], [14, 14]
    cases["internvl_real"] = (
        images_only(transformers.InternVLProcessor)(
            image_processor=transformers.GotOcr2ImageProcessorPil(
                size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1, max_patches=12
            ),
            tokenizer=processor.tokenizer,
            image_seq_length=256,
            chat_template=processor.chat_template,
        ),
        config,
    )

    for family, longest, tile, patch, scale in [("smolvlm", 2048, 512, 16, 4), ("idefics3", 1456, 364, 14, 2)]:
        _, processor, config = tiny[family]
        config = copy.deepcopy(config)
        config.vision_config.image_size, config.vision_config.patch_size, config.scale_factor = tile, patch, scale
        image_class = getattr(transformers, type(processor.image_processor).__name__)
        image_processor = image_class(size={"longest_edge": longest}, max_image_size={"longest_edge": tile})
        seq = (tile // patch // scale) ** 2
        if family == "smolvlm":
            real = images_only(transformers.SmolVLMProcessor)(
                image_processor=image_processor,
                tokenizer=processor.tokenizer,
                video_processor=None,
                image_seq_len=seq,
                chat_template=processor.chat_template,
            )
        else:
            real = transformers.Idefics3Processor(
                image_processor=image_processor, tokenizer=processor.tokenizer, image_seq_len=seq, chat_template=processor.chat_template
            )
        cases[family + "_real"] = (real, config)

    _, processor, config = tiny["llava_onevision"]
    config = copy.deepcopy(config)
    image_processor = transformers.LlavaOnevisionImageProcessorPil()  # 384 px tiles, the 36 default pinpoints
    config.vision_config.image_size, config.vision_config.patch_size = 384, 14
    config.image_grid_pinpoints, config.vision_aspect_ratio = image_processor.image_grid_pinpoints, "anyres_max_9"
    cases["llava_onevision_real"] = (
        images_only(transformers.LlavaOnevisionProcessor)(
            image_processor=image_processor,
            tokenizer=processor.tokenizer,
            num_image_tokens=729,
            vision_feature_select_strategy="full",
            vision_aspect_ratio="anyres_max_9",
            chat_template=processor.chat_template,
        ),
        config,
    )
    return cases


@pytest.fixture(scope="module")
def real(tiny: Tiny) -> Real:
    """:func:`real_cases`, once for the module."""
    return real_cases(tiny)


def tokens(bbox: list[float], image_size: tuple[int, int], processor: Any, config: Any, **kwargs: Any) -> set[int]:
    """The indices of the tokens ``region_token_mask`` marks."""
    return set(np.flatnonzero(region_token_mask(bbox, image_size, processor, config, **kwargs)).tolist())


def block(rows: range, cols: range, width: int, first: int = 0) -> set[int]:
    """Tokens ``first + row * width + col`` of a row-major grid ``width`` tokens wide."""
    return {first + r * width + c for r in rows for c in cols}


# ----------------------------------------------------------------------------------------------------
# 1. Hand-worked boxes. Image 100 x 60 (W x H) throughout the tiny cases.
# ----------------------------------------------------------------------------------------------------


def test_qwen_by_hand(tiny: Tiny, real: Real) -> None:
    """Qwen2.5-VL and Qwen3-VL, tiny and at Qwen2.5-VL's real 28 px cells and pixel budget."""
    # Qwen2.5-VL tiny: 14 px patches merged 2 x 2 = 28 px cells, 3136..28224 pixels. smart_resize(60, 100):
    # round(60 / 28) = 2 -> 56, round(100 / 28) = 4 -> 112; 56 * 112 = 6272 in range. 2 x 4 tokens, row-major.
    # x' = x * 112/100, y' = y * 56/60.
    _, processor, config = tiny["qwen2_5_vl"]
    assert image_token_count((100, 60), processor, config) == 8
    # [30, 10, 40, 20]: x [33.6, 78.4] -> cols 1, 2; y [9.33, 28] -> row 0 (28 is the row 0/1 boundary).
    assert tokens([30, 10, 40, 20], (100, 60), processor, config) == {1, 2}
    # [0, 31, 25, 29]: x [0, 28] -> col 0 only; y [28.93, 56] -> row 1.
    assert tokens([0, 31, 25, 29], (100, 60), processor, config) == {4}
    # [50, 0, 50, 60]: x [56, 112] -> cols 2, 3; every row.
    assert tokens([50, 0, 50, 60], (100, 60), processor, config) == {2, 3, 6, 7}
    # min_overlap: [30, 10, 40, 20] covers col 1 over (56 - 33.6) / 28 = 0.8, col 2 over 22.4 / 28 = 0.8,
    # row 0 over (28 - 9.33) / 28 = 0.667: both tokens 0.533 of their cell.
    assert tokens([30, 10, 40, 20], (100, 60), processor, config, min_overlap=0.5) == {1, 2}
    assert tokens([30, 10, 40, 20], (100, 60), processor, config, min_overlap=0.6) == set()

    # Qwen3-VL tiny: 16 px patches, 32 px cells, 4096..36864 pixels: round(60 / 32) = 2 -> 64,
    # round(100 / 32) = 3 -> 96. 2 x 3 tokens; x' = x * 0.96, y' = y * 64/60.
    _, processor, config = tiny["qwen3_vl"]
    assert image_token_count((100, 60), processor, config) == 6
    # [30, 10, 40, 20]: x [28.8, 67.2] -> cols 0, 1, 2; y [10.67, 32] -> row 0.
    assert tokens([30, 10, 40, 20], (100, 60), processor, config) == {0, 1, 2}
    # [0, 31, 25, 29]: x [0, 24] -> col 0; y [33.07, 64] -> row 1.
    assert tokens([0, 31, 25, 29], (100, 60), processor, config) == {3}

    # Qwen2.5-VL's real settings (28 px cells, at most 1605632 pixels). 1000 x 600: round(21.43) = 21 -> 588,
    # round(35.71) = 36 -> 1008: 21 x 36 tokens. x' = x * 1.008, y' = y * 0.98.
    processor, config = real["qwen2_5_vl_real"]
    assert image_token_count((1000, 600), processor, config) == 21 * 36
    # [100, 200, 300, 100]: x [100.8, 403.2] -> cols 3 (84..112) .. 14 (392..420); y [196, 294] -> rows 7 .. 10.
    assert tokens([100, 200, 300, 100], (1000, 600), processor, config) == block(range(7, 11), range(3, 15), 36)
    # 4000 x 3000 is over the pixel budget: beta = sqrt(12e6 / 1605632) = 2.7338; floor(3000 / 2.7338 / 28) = 39
    # -> 1092, floor(4000 / 2.7338 / 28) = 52 -> 1456: 39 x 52 tokens, x' = y' / y = 0.364.
    assert image_token_count((4000, 3000), processor, config) == 39 * 52 == processor_count(processor, config, (4000, 3000))
    # [2000, 0, 2000, 100]: x [728, 1456] -> cols 26 .. 51; y [0, 36.4] -> rows 0, 1.
    assert tokens([2000, 0, 2000, 100], (4000, 3000), processor, config) == block(range(2), range(26, 52), 52)


def test_gemma3_by_hand(tiny: Tiny, real: Real) -> None:
    """Gemma 3, tiny, real (896 px, 16 x 16 tokens) and with pan-and-scan crops."""
    # Tiny: stretched to 64 x 64, 8 px patches (8 x 8) pooled 2 x 2 into 4 x 4 tokens of 16 px.
    # x' = x * 0.64, y' = y * 64/60.
    _, processor, config = tiny["gemma3"]
    assert image_token_count((100, 60), processor, config) == 16
    # [30, 10, 40, 20]: x [19.2, 44.8] -> cols 1, 2; y [10.67, 32] -> rows 0, 1.
    assert tokens([30, 10, 40, 20], (100, 60), processor, config) == {1, 2, 5, 6}
    # [0, 31, 25, 29]: x [0, 16] -> col 0 only; y [33.07, 64] -> rows 2, 3.
    assert tokens([0, 31, 25, 29], (100, 60), processor, config) == {8, 12}

    # Real: 896 x 896, 14 px patches (64 x 64) pooled 4 x 4 into 16 x 16 tokens of 56 px.
    # 1000 x 600: x' = x * 0.896, y' = y * 1.4933.
    processor, config = real["gemma3_real"]
    assert image_token_count((1000, 600), processor, config) == 256
    # [100, 200, 300, 100]: x [89.6, 358.4] -> cols 1 .. 6; y [298.67, 448] -> rows 5 .. 7 (448 = 8 * 56).
    assert tokens([100, 200, 300, 100], (1000, 600), processor, config) == block(range(5, 8), range(1, 7), 16)

    # Pan-and-scan on, 1000 x 400: ratio 2.5 >= 1.2, crops floor(2.5 + 0.5) = 3 (<= floor(1000 / 256) = 3), each
    # ceil(1000 / 3) = 334 wide at x = 0, 334, 668 (the last 332 wide). Tokens: the image 0..255, crops 256.. each.
    processor, config = real["gemma3_pan_and_scan"]
    assert image_token_count((1000, 400), processor, config) == 4 * 256
    # [340, 0, 10, 56]. Whole image: x [304.6, 313.6] -> col 5; y * 2.24 -> [0, 125.4] -> rows 0 .. 2.
    # Crop 1 (x 334..668): x - 334 = [6, 16] * 896/334 -> [16.1, 42.9] -> col 0; same rows -> 512 + {0, 16, 32}.
    assert tokens([340, 0, 10, 56], (1000, 400), processor, config) == {5, 21, 37, 512, 528, 544}


def test_internvl_by_hand(tiny: Tiny, real: Real) -> None:
    """InternVL's tiles, their order and the thumbnail, tiny and with 448 px tiles."""
    # Tiny: 56 px tiles, 14 px patches, downsample 0.5: 2 x 2 tokens of 28 px per tile, 1..6 tiles.
    # 100 x 60 has aspect 1.667; of the grids (cols, rows) with 1..6 tiles, (3, 2) is closest (1.5) -> canvas
    # 168 x 112, tiles row-major, tokens 4 * tile + 2 * row + col; thumbnail last (tokens 24..27).
    # Canvas x' = x * 1.68, y' = y * 1.8667; thumbnail x' = x * 0.56, y' = y * 0.9333.
    _, processor, config = tiny["internvl"]
    assert image_token_count((100, 60), processor, config) == 7 * 4
    # [30, 10, 40, 20]: canvas x [50.4, 117.6] -> 28 px columns 1 .. 4, i.e. tile 0 col 1, tile 1 cols 0-1,
    # tile 2 col 0; y [18.67, 56] -> rows 0, 1 (tile row 0). Thumbnail x [16.8, 39.2] cols 0, 1, y [9.3, 28] row 0.
    assert tokens([30, 10, 40, 20], (100, 60), processor, config) == {1, 3, 4, 5, 6, 7, 8, 10, 24, 25}
    # [0, 40, 20, 20]: canvas x [0, 33.6] -> cols 0, 1; y [74.67, 112] -> rows 2, 3 = tile 3 whole;
    # thumbnail x [0, 11.2] col 0, y [37.3, 56] row 1 -> 24 + 2.
    assert tokens([0, 40, 20, 20], (100, 60), processor, config) == {12, 13, 14, 15, 26}

    # Real: 448 px tiles, 16 x 16 tokens of 28 px each, 1..12 tiles. 1000 x 600 (aspect 1.667): (5, 3) would need
    # 15 tiles; (3, 2) is closest -> canvas 1344 x 896, 6 tiles + thumbnail = 7 * 256 tokens.
    processor, config = real["internvl_real"]
    assert image_token_count((1000, 600), processor, config) == 7 * 256
    # [100, 200, 300, 100]: canvas x * 1.344 -> [134.4, 537.6] -> 28 px columns 4 .. 19 (tile 0 cols 4-15, tile 1
    # cols 0-3); y * 1.4933 -> [298.67, 448] -> rows 10 .. 15 of tile row 0. Thumbnail: x * 0.448 -> [44.8, 179.2]
    # cols 1 .. 6, y * 0.7467 -> [149.3, 224] rows 5 .. 7.
    expected = block(range(10, 16), range(4, 16), 16) | block(range(10, 16), range(4), 16, 256)
    expected |= block(range(5, 8), range(1, 7), 16, 6 * 256)
    assert tokens([100, 200, 300, 100], (1000, 600), processor, config) == expected


@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_idefics3_by_hand(tiny: Tiny, family: str) -> None:
    """Idefics3 and SmolVLM (same image processing): tiles row-major, then the global image."""
    # Tiny: longest edge 96, 32 px tiles, 8 px patches, scale factor 2: 2 x 2 tokens of 16 px per tile.
    # 100 x 60 -> width 96, height int(96 / 1.667) = 57, odd -> 58. Grown to tile multiples: width 96,
    # height ceil(58 / 32) * 32 = 64 -> 3 x 2 tiles, row-major, then the global image (tokens 24..27).
    # Canvas x' = x * 0.96, y' = y * 64/60; global x' = x * 0.32, y' = y * 32/60.
    _, processor, config = tiny[family]
    assert image_token_count((100, 60), processor, config) == 7 * 4
    # [30, 10, 40, 20]: canvas x [28.8, 67.2] -> 16 px columns 1 .. 4; y [10.67, 32] -> rows 0, 1.
    # Global x [9.6, 22.4] cols 0, 1; y [5.33, 16] row 0.
    assert tokens([30, 10, 40, 20], (100, 60), processor, config) == {1, 3, 4, 5, 6, 7, 8, 10, 24, 25}
    # [0, 40, 20, 20]: canvas x [0, 19.2] cols 0, 1; y [42.67, 64] rows 2, 3 -> tile 3; global col 0, row 1.
    assert tokens([0, 40, 20, 20], (100, 60), processor, config) == {12, 13, 14, 15, 26}


def test_smolvlm_real_by_hand(real: Real) -> None:
    """SmolVLM with its real 512 px tiles."""
    # SmolVLM's 512 px tiles, 16 px patches, scale factor 4: 8 x 8 tokens of 64 px per tile; longest edge 2048.
    # 1000 x 600 -> 2048 x int(1228.8) = 1228; grown to 2048 x 1536: 4 x 3 tiles + global = 13 * 64 tokens.
    # Canvas x' = x * 2.048, y' = y * 2.56; global x' = x * 0.512, y' = y * 0.8533.
    processor, config = real["smolvlm_real"]
    assert image_token_count((1000, 600), processor, config) == 13 * 64
    # [100, 200, 300, 100]: canvas x [204.8, 819.2] -> 64 px columns 3 .. 12 (tile col 0 cols 3-7, tile col 1
    # cols 0-4); y [512, 768] -> rows 8 .. 11 = tile row 1, rows 0-3. Tiles 4 and 5.
    # Global: x [51.2, 204.8] cols 0 .. 3, y [170.7, 256] rows 2, 3.
    expected = block(range(4), range(3, 8), 8, 4 * 64) | block(range(4), range(5), 8, 5 * 64)
    expected |= block(range(2, 4), range(4), 8, 12 * 64)
    assert tokens([100, 200, 300, 100], (1000, 600), processor, config) == expected


def test_llava_onevision_by_hand(tiny: Tiny) -> None:
    """LLaVA-OneVision: base image, then the downsampled tile grid, whose tokens cover 2 x 2 patches."""
    # Tiny: 28 px tiles, 7 px patches (4 x 4 per tile), pinpoints 28 * (1..3) per side, anyres_max_2.
    # Base image: stretched to 28 x 28, tokens 0..15 (x' = x * 0.28, y' = y * 0.4667).
    # 100 x 60: best pinpoint (h, w) = (56, 84): 84 x 50 = 4200 px kept, as (84, 84), but less waste -> 2 x 3
    # tiles, 8 x 12 patches. Resize: scale min(0.84, 0.933) -> 84 x ceil(50.4) = 51, padded (56 - 51) // 2 = 2 on
    # top: canvas x' = x * 0.84, y' = y * 0.85 + 2. Model unpad: new_height int(60 * 12/100) = 7, padding
    # (8 - 7) // 2 = 0: all 8 x 12 patches kept. ratio sqrt(96 / (2 * 16)) = 1.73 > 1.1: bilinear down to
    # int(8 // 1.73) x int(12 // 1.73) = 4 x 6, each output from input rows/cols 2i, 2i + 1 (scale 2, weights 1/2).
    # So each tile-grid token covers 2 x 2 patches (14 px); token 16 + 7 * row + col, a newline ends each row.
    _, processor, config = tiny["llava_onevision"]
    assert image_token_count((100, 60), processor, config) == 16 + 4 * 7
    # [30, 10, 40, 20]: base x [8.4, 19.6] cols 1, 2; y [4.67, 14] rows 0, 1 -> {1, 2, 5, 6}.
    # Grid x [25.2, 58.8] -> 14 px columns 1 .. 4; y [10.5, 27.5] -> rows 0, 1.
    assert tokens([30, 10, 40, 20], (100, 60), processor, config) == {1, 2, 5, 6} | block(range(2), range(1, 5), 7, 16)
    # [0, 40, 20, 20]: base x [0, 5.6] col 0, y [18.67, 28] rows 2, 3 -> {8, 12}. Grid x [0, 16.8] cols 0, 1;
    # y [36, 53] rows 2, 3.
    assert tokens([0, 40, 20, 20], (100, 60), processor, config) == {8, 12} | block(range(2, 4), range(2), 7, 16)
    # min_overlap is a fraction of the pooled footprint (14 x 14 px). [0, 0, 10, 60]: base x [0, 2.8] is 0.4 of
    # column 0 -> {0, 4, 8, 12} at 0.4. Grid x [0, 8.4] is 0.6 of column 0; y [2, 53] is 12/14 of row 0 ([0, 14)),
    # all of rows 1, 2 and 11/14 of row 3 ([42, 56)): tokens 16, 23, 30, 37 at 0.514, 0.6, 0.6, 0.471.
    assert tokens([0, 0, 10, 60], (100, 60), processor, config) == {0, 4, 8, 12, 16, 23, 30, 37}
    assert tokens([0, 0, 10, 60], (100, 60), processor, config, min_overlap=0.5) == {16, 23, 30}
    assert tokens([0, 0, 10, 60], (100, 60), processor, config, min_overlap=0.55) == {23, 30}


def test_bilinear_footprints_by_hand() -> None:
    """The source runs of a 1-D bilinear downsampling, worked out from align_corners=False."""
    # align_corners=False: output i reads input (i + 0.5) * n_in / n_out - 0.5, clamped at 0; its two
    # neighbours carry the weight. 8 -> 4: 2i + 0.5 -> inputs 2i, 2i + 1.
    assert bilinear_sources(8, 4).tolist() == [[0, 2], [2, 4], [4, 6], [6, 8]]
    # 6 -> 4: 1.5 i + 0.25 -> 0.25, 1.75, 3.25, 4.75: overlapping windows.
    assert bilinear_sources(6, 4).tolist() == [[0, 2], [1, 3], [3, 5], [4, 6]]
    # 4 -> 2: 2i + 0.5 -> [0, 2), [2, 4).
    assert bilinear_sources(4, 2).tolist() == [[0, 2], [2, 4]]


def test_token_order_inside_merged_blocks(tiny: Tiny) -> None:
    """The orders the layouts assume, read off the processors' and models' own code on index maps."""
    # Qwen: patchify an image whose pixels hold their 14 px patch's (row, col); each run of merge**2 = 4 flattened
    # patches (what the merger joins) is one 2 x 2 block, and the runs go row-major over the blocks.
    image_processor = tiny["qwen2_5_vl"][1].image_processor
    rows, cols = np.meshgrid(np.arange(4 * 14) // 14, np.arange(6 * 14) // 14, indexing="ij")
    image = np.broadcast_to((rows * 100 + cols)[None].astype(np.float32), (3, 4 * 14, 6 * 14))
    flat, grid_h, grid_w = image_processor.patchify(image, patch_size=14, merge_size=2, temporal_patch_size=2)
    runs = flat[:, 0].reshape(-1, 4).astype(int)  # (tokens, 4) patch ids
    assert (grid_h, grid_w) == (4, 6)
    assert [sorted(run) for run in runs.tolist()] == [
        sorted((2 * i + a) * 100 + 2 * j + b for a in range(2) for b in range(2)) for i in range(2) for j in range(3)
    ]
    # InternVL and Idefics3 / SmolVLM: the models' pixel shuffles on a 4 x 4 map of patch numbers (row-major, as
    # the patch convolution flattens them) gather token (i, j) from patches (2i + a, 2j + b), tokens row-major.
    expected = [sorted((2 * i + a) * 4 + 2 * j + b for a in range(2) for b in range(2)) for i in range(2) for j in range(2)]
    patches = torch.arange(16, dtype=torch.float32)
    for family in ("internvl", "idefics3", "smolvlm"):
        folder, _, config = tiny[family]
        model = FAMILIES[config.model_type].model_class_object().from_pretrained(folder)
        if family == "internvl":
            shuffled = model.model.pixel_shuffle(patches.reshape(1, 4, 4, 1), scale_factor=0.5).reshape(4, 4)
        else:
            shuffled = model.model.connector.pixel_shuffle(patches.reshape(1, 16, 1), scale_factor=2).reshape(4, 4)
        assert [sorted(token) for token in shuffled.int().tolist()] == expected, family


# ----------------------------------------------------------------------------------------------------
# 2. Token counts against the real processors.
# ----------------------------------------------------------------------------------------------------

SIZES = [  # (width, height): square, wide, tall, tiny, large, odd; aspect ratios up to Qwen's limit of 200
    (56, 56),
    (500, 500),
    (112, 84),
    (84, 112),
    (100, 60),
    (640, 480),
    (333, 500),
    (2000, 300),
    (300, 2000),
    (1, 1),
    (3, 7),
    (7, 3),
    (1000, 5),
    (5, 1000),
    (1023, 769),
    (4000, 3000),
    (29, 1000),
    (230, 33),
]
REAL_SIZES = [(640, 480), (2000, 300), (300, 2000), (1, 1), (1200, 900)]


def processor_count(processor: Any, config: Any, size: tuple[int, int]) -> int:
    """``(input_ids == config.image_token_id).sum()`` for the chat prompt with one black image of ``size``."""
    prompt = processor.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[Image.new("RGB", size)], text=[prompt], return_tensors="pt")
    return int((inputs["input_ids"] == config.image_token_id).sum())


@pytest.mark.parametrize("family", MODERN_FAMILIES)
def test_token_count_matches_the_tiny_processors(tiny: Tiny, family: str) -> None:
    """image_token_count equals the tiny processor's image tokens for every size; the mask has that length."""
    _, processor, config = tiny[family]
    for size in SIZES:
        expected = processor_count(processor, config, size)
        assert image_token_count(size, processor, config) == expected, size
        assert region_token_mask([0, 0, *size], size, processor, config).shape == (expected,)


@pytest.mark.parametrize("name", REAL_NAMES)
def test_token_count_matches_the_real_settings(real: Real, name: str) -> None:
    """image_token_count equals the processor's image tokens with the real models' image settings."""
    processor, config = real[name]
    for size in REAL_SIZES:
        assert image_token_count(size, processor, config) == processor_count(processor, config, size), size


def test_qwen_refuses_what_its_processor_refuses(tiny: Tiny) -> None:
    """An aspect ratio over 200, which smart_resize rejects, is a VisheadsError."""
    _, processor, config = tiny["qwen2_vl"]
    with pytest.raises(ValueError, match="aspect ratio"):
        processor_count(processor, config, (1000, 1))
    with pytest.raises(VisheadsError, match="refuses a 1000x1 image"):
        image_token_count((1000, 1), processor, config)


# ----------------------------------------------------------------------------------------------------
# 3. Painted boxes through the real processors and the models' own token-forming code.
# ----------------------------------------------------------------------------------------------------

CLEARLY_IN, LIT = 0.9, 0.05  # brightness (0..1): a near-white pixel; any light at all


def painted(size: tuple[int, int], bbox: list[int]) -> Image.Image:
    """A black image of ``size`` with the pixels of ``bbox`` (x, y, w, h) white."""
    image = Image.new("RGB", size, (0, 0, 0))
    x, y, w, h = bbox
    ImageDraw.Draw(image).rectangle([x, y, x + w - 1, y + h - 1], fill=(255, 255, 255))  # pixels x..x+w-1
    return image


def brightness(pixels: torch.Tensor, image_processor: Any) -> torch.Tensor:
    """Undo the normalisation of ``pixels  # (..., 3, h, w)`` and average the channels: ``(..., h, w)``, 0..1."""
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(image_processor.image_std, dtype=torch.float32)[:, None, None]
    return (pixels.float() * std + mean).mean(dim=-3)


def patch_max(light: torch.Tensor, patch: int) -> torch.Tensor:
    """``(n, h, w)`` -> ``(n, h // patch, w // patch)``: the brightest pixel of each vision patch."""
    n, h, w = light.shape
    rows, cols = h // patch, w // patch
    return light[:, : rows * patch, : cols * patch].reshape(n, rows, patch, cols, patch).amax(dim=(2, 4))


class Passthrough(nn.Module):
    """A vision block that leaves its input as it is."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``hidden_states``, unchanged."""
        return hidden_states


class Light:
    """Which pixels count as lit: ``threshold`` is set before each pass through a stubbed model."""

    threshold: float = 0.5

    def __call__(self, value: torch.Tensor) -> torch.Tensor:
        """1.0 where ``value`` is at least the threshold, else 0.0."""
        return (value >= self.threshold).float()


class PatchTower(nn.Module):
    """A stand-in for a ViT vision tower: feature channel 0 of each patch is ``light`` of its brightest pixel
    (the other ``channels - 1`` are 0), patches flattened row-major (as the patch convolution's
    ``flatten(2).transpose(1, 2)`` does), after ``cls`` leading all-zero tokens."""

    def __init__(self, image_processor: Any, patch: int, light: Light, cls: int = 0, channels: int = 1) -> None:
        super().__init__()
        self.image_processor, self.patch, self.light = image_processor, patch, light
        self.cls, self.channels = cls, channels

    def forward(self, pixel_values: torch.Tensor, *args: Any, **kwargs: Any) -> BaseModelOutputWithPooling:
        """``last_hidden_state  # (n_images, cls + patches, channels)``, also as the only hidden state."""
        values = self.light(patch_max(brightness(pixel_values, self.image_processor), self.patch))
        features = torch.zeros(len(values), self.cls + values[0].numel(), self.channels)
        features[:, self.cls :, 0] = values.reshape(len(values), -1)
        return BaseModelOutputWithPooling(last_hidden_state=features, hidden_states=(features,))


class QwenPatches(nn.Module):
    """A stand-in for Qwen's patch embedding: reads each flattened patch row the processor made (channels,
    temporal copies, pixels) and writes ``light`` of its brightest pixel into every feature channel."""

    def __init__(self, image_processor: Any, hidden: int, light: Light) -> None:
        super().__init__()
        self.image_processor, self.hidden, self.light = image_processor, hidden, light
        self.unused = nn.Parameter(torch.zeros(1))  # the vision model reads its dtype from its parameters

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(n_patches, 3 * t * p * p)`` flattened patches -> ``(n_patches, hidden)`` features."""
        p, t = self.image_processor.patch_size, self.image_processor.temporal_patch_size
        pixels = hidden_states.reshape(-1, 3, t, p, p)[:, :, 0]  # (n_patches, 3, p, p)
        values = self.light(brightness(pixels, self.image_processor).amax(dim=(1, 2)))
        return values[:, None].expand(-1, self.hidden).contiguous()


def _identity(module: nn.Module, names: tuple[str, ...]) -> None:
    """Replace the submodules ``names`` of ``module`` that it has by ``nn.Identity``."""
    for name in names:
        if hasattr(module, name):
            setattr(module, name, nn.Identity())


def stub(model: Any, processor: Any) -> Callable[[Any, float], np.ndarray]:
    """Replace the learned parts of ``model``'s vision side by stand-ins that carry each patch's light; return
    ``values(inputs, threshold)``: per image token, in the order the model writes image features, the patches
    at least ``threshold`` bright that the model's own code gathers into it (0: none), NaN for newline tokens."""
    image_processor, inner, config, light = processor.image_processor, model.model, model.config, Light()
    vision, layout = config.vision_config, FAMILIES[config.model_type].layout
    if layout == "qwen_vl":  # processor's patch order, window permutation (2.5) and merger grouping kept
        visual = inner.visual
        hidden = visual.merger.hidden_size // visual.spatial_merge_size**2
        visual.patch_embed = QwenPatches(image_processor, hidden, light)
        visual.blocks = nn.ModuleList(Passthrough() for _ in visual.blocks)
        for merger in (visual.merger, *getattr(visual, "deepstack_merger_list", ())):
            _identity(merger, ("ln_q", "mlp", "norm", "linear_fc1", "act_fn", "linear_fc2"))
        if hasattr(visual, "pos_embed"):
            visual.pos_embed.weight.data.zero_()

        def run(inputs: Any) -> torch.Tensor:
            """The stubbed model's image features of ``inputs``, one value per image token."""
            out = inner.get_image_features(pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
            return out.pooler_output[0].sum(-1)
    elif layout == "gemma3":  # the projector's pooling kept, its norm and projection made to pass channel 0
        inner.vision_tower = PatchTower(image_processor, vision.patch_size, light, channels=vision.hidden_size)
        projector = inner.multi_modal_projector
        projector.mm_soft_emb_norm = nn.Identity()
        projector.mm_input_projection_weight.data.zero_()
        projector.mm_input_projection_weight.data[0, 0] = 1.0

        def run(inputs: Any) -> torch.Tensor:
            """The stubbed model's image features of ``inputs``, one value per image token."""
            return inner.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output[..., 0].reshape(-1)
    elif layout == "internvl":  # CLS dropped, pixel shuffle kept
        inner.vision_tower = PatchTower(image_processor, vision.patch_size[0], light, cls=1)
        inner.multi_modal_projector = nn.Identity()

        def run(inputs: Any) -> torch.Tensor:
            """The stubbed model's image features of ``inputs``, one value per image token."""
            out = inner.get_image_features(
                pixel_values=inputs["pixel_values"], vision_feature_layer=-1, vision_feature_select_strategy="default"
            )
            return out.pooler_output.sum(-1).reshape(-1)
    elif layout == "idefics3":  # padding-frame removal and the connector's pixel shuffle kept
        inner.vision_model = PatchTower(image_processor, vision.patch_size, light)
        inner.connector.modality_projection = nn.Identity()

        def run(inputs: Any) -> torch.Tensor:
            """The stubbed model's image features of ``inputs``, one value per image token."""
            out = inner.get_image_features(pixel_values=inputs["pixel_values"], pixel_attention_mask=inputs["pixel_attention_mask"])
            return out.pooler_output[0].sum(-1)
    elif layout == "llava_onevision":  # unpadding, bilinear downsampling and newlines (NaN) kept
        inner.vision_tower = PatchTower(image_processor, vision.patch_size, light)
        inner.multi_modal_projector = nn.Identity()
        inner.image_newline = nn.Parameter(torch.tensor([float("nan")]))

        def run(inputs: Any) -> torch.Tensor:
            """The stubbed model's image features of ``inputs``, one value per image token."""
            out = inner.get_image_features(
                pixel_values=inputs["pixel_values"],
                image_sizes=inputs["image_sizes"],
                vision_feature_layer=-1,
                vision_feature_select_strategy="full",
                vision_aspect_ratio=config.vision_aspect_ratio,
                batch_num_images=inputs["batch_num_images"],
            )
            return out.pooler_output[0][:, 0]
    else:
        raise AssertionError(layout)

    def values(inputs: Any, threshold: float) -> np.ndarray:
        """Per image token, the patches of ``inputs`` at least ``threshold`` bright that it gathers."""
        light.threshold = threshold
        with torch.no_grad():
            return run(inputs).numpy()

    return values


@pytest.fixture(scope="module")
def stubbed(tiny: Tiny) -> Callable[[str], Callable[[Any, float], np.ndarray]]:
    """Each family's tiny model, stubbed by :func:`stub` once."""
    made = {}

    def get(family: str) -> Callable[[Any, float], np.ndarray]:
        """The stubbed model's ``values`` for ``family``."""
        if family not in made:
            folder, processor, config = tiny[family]
            model = FAMILIES[config.model_type].model_class_object().from_pretrained(folder).eval()
            made[family] = stub(model, processor)
        return made[family]

    return get


def compare_with_pixels(
    processor: Any, config: Any, values: Callable[[Any, float], np.ndarray], size: tuple[int, int], bbox: list[int]
) -> tuple[int, int]:
    """Assert the mask agrees with every clearly-in or clearly-out token; return (clear, unclear) counts.

    ``values`` is a stubbed model's (:func:`stub`)."""
    prompt = processor.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[painted(size, bbox)], text=[prompt], return_tensors="pt")
    clearly_in, lit = values(inputs, CLEARLY_IN), values(inputs, LIT)
    assert len(clearly_in) == int((inputs["input_ids"] == config.image_token_id).sum())
    mask = region_token_mask(bbox, size, processor, config)
    assert mask.shape == clearly_in.shape
    newline = np.isnan(clearly_in)
    sure_in, sure_out = ~newline & (clearly_in > 0), ~newline & (lit == 0)
    assert not mask[newline].any(), "a newline token is marked"
    assert mask[sure_in].all(), (config.model_type, size, bbox, np.flatnonzero(sure_in & ~mask))
    assert not mask[sure_out].any(), (config.model_type, size, bbox, np.flatnonzero(sure_out & mask))
    clear = int(sure_in.sum() + sure_out.sum())
    return clear, int((~newline).sum()) - clear


@pytest.mark.parametrize("family", MODERN_FAMILIES)
def test_mask_matches_painted_boxes_through_the_processor(tiny: Tiny, stubbed: Callable, family: str) -> None:
    """Random boxes on several image sizes agree with the pixels, traced through the tiny models' own code."""
    rng = np.random.default_rng(0)
    clear = unclear = in_tokens = 0
    for size in [(112, 84), (84, 112), (100, 60), (61, 170), (300, 97), (56, 56), (230, 40)]:
        for _ in range(4):
            width, height = size
            x, y = int(rng.integers(0, width - 4)), int(rng.integers(0, height - 4))
            bbox = [x, y, int(rng.integers(4, width - x + 1)), int(rng.integers(4, height - y + 1))]
            c, u = compare_with_pixels(*tiny[family][1:], stubbed(family), size, bbox)
            clear, unclear = clear + c, unclear + u
            in_tokens += int(region_token_mask(bbox, size, *tiny[family][1:]).sum())
    # The comparison must bite: most tokens are decided by the pixels, and many of them are inside boxes.
    assert clear > 4 * unclear and in_tokens > 60, (clear, unclear, in_tokens)


# OneVision downsamples 1200 x 900 (to 70 x 93 from 81 x 108 patches) and 1700 x 1100 (to 65 x 100 from 81 x 125).
REAL_BOXES = {
    (640, 480): [250, 130, 180, 200],
    (2000, 300): [1200, 40, 500, 200],
    (1200, 900): [300, 200, 500, 400],
    (1700, 1100): [100, 500, 900, 450],
}


@pytest.mark.parametrize("name", REAL_NAMES)
def test_mask_matches_painted_boxes_at_real_model_sizes(real: Real, name: str) -> None:
    """Boxes agree with the pixels at the real models' image settings and vision geometry."""
    # The real models' image settings with a model of the same vision geometry (random, tiny widths): every
    # size-dependent step of the model's token forming (pooling kernel, pixel shuffle, OneVision's downsampling
    # to anyres_max_9 with ratios that are not whole numbers) runs at the real sizes.
    processor, config = real[name]
    values = stub(FAMILIES[config.model_type].model_class_object()(config).eval(), processor)
    clear = unclear = 0
    for size, bbox in REAL_BOXES.items():
        c, u = compare_with_pixels(processor, config, values, size, bbox)
        clear, unclear = clear + c, unclear + u
    assert clear > 8 * unclear, (clear, unclear)


# ----------------------------------------------------------------------------------------------------
# 4. Refusals: one clear line.
# ----------------------------------------------------------------------------------------------------


def test_mismatched_processors_and_models_are_named(tiny: Tiny) -> None:
    """A processor and a model that do not belong together are refused in one line naming the mismatch."""
    _, qwen, qwen_config = tiny["qwen2_5_vl"]
    _, gemma, gemma_config = tiny["gemma3"]
    with pytest.raises(VisheadsError, match="needs its own image processor"):
        image_token_count((100, 60), gemma, qwen_config)
    with pytest.raises(VisheadsError, match="merged 2x2 but the vision tower takes 16 px"):
        image_token_count((100, 60), qwen, tiny["qwen3_vl"][2])
    config = copy.deepcopy(gemma_config)
    config.mm_tokens_per_image = 64
    with pytest.raises(VisheadsError, match="writes 16 image tokens per image but the model makes 64"):
        image_token_count((100, 60), gemma, config)
    _, internvl, internvl_config = tiny["internvl"]
    config = copy.deepcopy(internvl_config)
    config.vision_feature_select_strategy = "full"
    with pytest.raises(VisheadsError, match="only 'default'"):
        image_token_count((100, 60), internvl, config)
    _, onevision, onevision_config = tiny["llava_onevision"]
    config = copy.deepcopy(onevision_config)
    config.vision_aspect_ratio = "anyres_max_9"
    with pytest.raises(VisheadsError, match="vision_aspect_ratio='anyres_max_2' but the model packs them for"):
        image_token_count((100, 60), onevision, config)
    config = copy.deepcopy(onevision_config)
    config.vision_feature_select_strategy = "default"
    with pytest.raises(VisheadsError, match="model uses vision_feature_select_strategy='default'"):
        image_token_count((100, 60), onevision, config)
    with pytest.raises(VisheadsError, match="unsupported model type 'llama' for region geometry"):
        image_token_count((100, 60), qwen, _llama_config())


def _llama_config() -> transformers.LlamaConfig:
    """A text-only config, of no vision-language family."""
    return transformers.LlamaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)


def test_families_all_have_a_layout() -> None:
    """Every family's layout name is an entry of the dispatch table."""
    from visheads_eval.geometry.layouts import LAYOUTS

    assert {family.layout for family in FAMILIES.values()} <= set(LAYOUTS)
