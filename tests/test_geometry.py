"""Region geometry: bounding box (original pixels) -> image tokens, checked three independent ways.

1. Hand-worked boxes on non-square images, the arithmetic written out in comments.
2. Token counts against the real processor's ``input_ids`` (and the real model's packing) over a sweep
   of image sizes.
3. Pixels: a box painted in red on a grey image, run through the real processor; a patch is "clearly in"
   when it holds a near-pure red pixel and "clearly out" when it holds no red at all, and anyres tiles
   are put in token order by the real ``LlavaNextModel.pack_image_features``. Patches between the two
   (a box edge within a pixel or two of a patch boundary, where bicubic resampling blurs the edge) are
   not compared: resampling alone decides them, not geometry.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers import (
    AutoConfig,
    AutoProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaNextConfig,
    LlavaNextModel,
    LlavaProcessor,
    VipLlavaConfig,
)
from transformers.image_utils import SizeDict

from fixtures.tiny.processor import CHAT_TEMPLATE, build_llava_next_processor, build_llava_processor
from fixtures.tiny.tokenizer import build_tokenizer
from fixtures.tiny_models import FAMILIES, GRID_PINPOINTS, WORDS
from visheads_eval.errors import VisheadsError
from visheads_eval.geometry import image_token_count, region_token_mask

TOKENIZER = build_tokenizer(WORDS)
LLAVA_NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # llava-v1.6 default


def make_config(model: str, image_size: int, pinpoints=None, strategy: str = "default", patch_size: int = 14):
    vision = CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
    )
    text = LlamaConfig(vocab_size=len(TOKENIZER), hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4)
    common = dict(vision_config=vision, text_config=text, image_token_id=TOKENIZER.image_token_id)
    if model == "llava_next":
        return LlavaNextConfig(image_grid_pinpoints=pinpoints, vision_feature_select_strategy=strategy, **common)
    if model == "vipllava":
        return VipLlavaConfig(**common)
    return LlavaConfig(vision_feature_select_strategy=strategy, **common)


def clip_processor(image_size: int, strategy: str = "default", shortest_edge: int | None = None) -> LlavaProcessor:
    """llava-hf/llava-1.5's own setup: a CLIP image processor (resize shortest edge, centre crop)."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": shortest_edge or image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=TOKENIZER,
        patch_size=14,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


CASES = {
    # name: (processor, config); tiny ones are 56 px / 14 px patches = 4 x 4 base tokens
    "crop": (build_llava_processor(TOKENIZER, image_size=56, patch_size=14), make_config("llava", 56)),
    "clip_crop": (clip_processor(56), make_config("llava", 56)),
    # resize to 40 then "crop" 56: the centre crop pads the image instead
    "small_crop": (clip_processor(56, shortest_edge=40), make_config("llava", 56)),
    "pad": (build_llava_processor(TOKENIZER, image_size=56, patch_size=14, pad_to_square=True), make_config("llava", 56)),
    "anyres": (
        build_llava_next_processor(TOKENIZER, image_size=56, patch_size=14, grid_pinpoints=GRID_PINPOINTS),
        make_config("llava_next", 56, GRID_PINPOINTS),
    ),
    # the real models' geometry: LLaVA-1.5 (336 px, 24 x 24 tokens), its pad-to-square recipe, LLaVA-1.6
    "llava15": (clip_processor(336), make_config("llava", 336)),
    "llava15_pad": (build_llava_processor(TOKENIZER, image_size=336, patch_size=14, pad_to_square=True), make_config("llava", 336)),
    "llava16": (
        build_llava_next_processor(TOKENIZER, image_size=336, patch_size=14, grid_pinpoints=LLAVA_NEXT_PINPOINTS),
        make_config("llava_next", 336, LLAVA_NEXT_PINPOINTS),
    ),
}


def tokens(bbox, image_size, case: str, **kwargs) -> set[int]:
    processor, config = CASES[case]
    return set(np.flatnonzero(region_token_mask(bbox, image_size, processor, config, **kwargs)).tolist())


# ----------------------------------------------------------------------------------------------------
# 1. Hand-worked boxes. Tokens of a 4 x 4 grid are numbered row * 4 + col (row-major, as CLIP's patch
#    convolution flattens them); patch col c covers processed x in [14c, 14c + 14).
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["crop", "clip_crop"])
def test_resize_and_centre_crop_by_hand(case: str) -> None:
    # Image 112 x 84 (W x H). Shortest edge 84 -> 56: height 56, width int(56 * 112 / 84) = int(74.67) = 74.
    # So x' = x * 74/112, y' = y * 56/84 = y * 2/3. Centre crop 56: left = (74 - 56) // 2 = 9, top = 0.
    size = (112, 84)
    # Box [60, 10, 30, 50]: x [60, 90] -> [39.64, 59.46] - 9 -> [30.64, 50.46] -> cols 2, 3;
    # y [10, 60] -> [6.67, 40] -> rows 0, 1, 2 (40 lies in row 2 = [28, 42)).
    assert tokens([60, 10, 30, 50], size, case) == {2, 3, 6, 7, 10, 11}
    # Box [30, 0, 20, 21]: x [30, 50] -> [19.82, 33.04] - 9 -> [10.82, 24.04] -> cols 0, 1;
    # y [0, 21] -> [0, 14] exactly: row 0 only (the edge sits on the row 0/1 boundary, no overlap area).
    assert tokens([30, 0, 20, 21], size, case) == {0, 1}
    # Box [90, 0, 22, 20]: x [90, 112] -> [59.46, 74] - 9 -> [50.46, 65], kept up to 56 -> col 3;
    # y [0, 20] -> [0, 13.33] -> row 0.
    assert tokens([90, 0, 22, 20], size, case) == {3}
    # Box [0, 30, 12, 20]: x [0, 12] -> [0, 7.93] - 9 -> [-9, -1.07]: cropped away entirely.
    assert tokens([0, 30, 12, 20], size, case) == set()
    # Tall 60 x 100: width 60 -> 56 (x' = x * 56/60), height int(56 * 100/60) = int(93.33) = 93 (y' = y * .93).
    # Crop 56 from 93: top = (93 - 56) // 2 = 18 (the odd pixel is cut at the bottom).
    # Box [0, 0, 60, 35]: x -> [0, 56] all cols; y [0, 35] -> [0, 32.55] - 18 -> [0, 14.55] -> rows 0, 1.
    assert tokens([0, 0, 60, 35], (60, 100), case) == set(range(8))


def test_centre_crop_of_a_smaller_image_pads_it_by_hand() -> None:
    # Image 112 x 84, shortest edge -> 40: height 40, width int(40 * 112/84) = int(53.33) = 53.
    # "Crop" to 56 x 56 pads: PIL puts ceil(16 / 2) = 8 rows on top and ceil(3 / 2) = 2 columns on the left
    # (torchvision would put the odd column on the right: 1). x' = x * 53/112 + 2, y' = y * 40/84 + 8.
    # Box [0, 0, 56, 10]: x [0, 26.5] + 2 -> [2, 28.5] -> cols 0, 1, 2; y [0, 4.76] + 8 -> row 0.
    assert tokens([0, 0, 56, 10], (112, 84), "small_crop") == {0, 1, 2}
    # Box [0, 76, 112, 8]: y [36.19, 40] + 8 -> [44.19, 48] -> row 3; x [2, 55] -> all cols.
    assert tokens([0, 76, 112, 8], (112, 84), "small_crop") == {12, 13, 14, 15}


def test_min_overlap_keeps_patches_covered_enough_by_hand() -> None:
    # Box [60, 10, 30, 50] on 112 x 84 as above: processed x [30.643, 50.464], y [6.667, 40].
    # Fraction of each patch's width/height covered: col 2 (42 - 30.643) / 14 = 0.811, col 3 8.464 / 14 = 0.605;
    # row 0 (14 - 6.667) / 14 = 0.524, row 1 1.0, row 2 (40 - 28) / 14 = 0.857.
    # Area fractions: r0c2 0.425, r0c3 0.317, r1c2 0.811, r1c3 0.605, r2c2 0.695, r2c3 0.518.
    assert tokens([60, 10, 30, 50], (112, 84), "crop", min_overlap=0.5) == {6, 7, 10, 11}
    assert tokens([60, 10, 30, 50], (112, 84), "crop", min_overlap=0.7) == {6}
    assert tokens([60, 10, 30, 50], (112, 84), "crop", min_overlap=1.0) == set()


def test_pad_to_square_by_hand() -> None:
    # Image 112 x 84: padded to 112 x 112 with (112 - 84) // 2 = 14 rows on top; resize to 56: scale 1/2.
    # x' = x / 2, y' = (y + 14) / 2. No crop (56 -> 56).
    size = (112, 84)
    # Box [0, 30, 12, 20] (cropped away by resize + crop): x [0, 6] -> col 0; y [44, 64] / 2 = [22, 32] -> rows 1, 2.
    assert tokens([0, 30, 12, 20], size, "pad") == {4, 8}
    # Box [60, 0, 30, 14]: x [30, 45] -> cols 2, 3; y [14, 28] / 2 = [7, 14] -> row 0 only (14 is a boundary).
    assert tokens([60, 0, 30, 14], size, "pad") == {2, 3}
    # Tall image 84 x 112: 14 columns of padding on the left. Box [0, 0, 14, 10]: x [14, 28] / 2 = [7, 14]
    # -> col 0 only; y [0, 5] -> row 0.
    assert tokens([0, 0, 14, 10], (84, 112), "pad") == {0}
    # Box [70, 100, 14, 12]: x [84, 98] / 2 = [42, 49] -> col 3; y [100, 112] / 2 = [50, 56] -> row 3.
    assert tokens([70, 100, 14, 12], (84, 112), "pad") == {15}


def test_anyres_by_hand() -> None:
    # Pinpoints (h, w) [[56, 112], [112, 56], [112, 112]], 56 px tiles, 4 x 4 patches per tile.
    # Image 112 x 84 (W x H). select_best_resolution: [56,112] scale min(1, .667) -> 74 x 56 = 4144 px kept;
    # [112,56] scale .5 -> 2352; [112,112] scale 1 -> all 9408 px -> best 112 x 112, 2 x 2 tiles, grid 8 x 8.
    # Resize keeping aspect: width 112, height min(ceil(84 * 1), 112) = 84; pad (112 - 84) // 2 = 14 rows on top.
    # Model unpad: 112/84 > 8/8 -> new_height = round(84 * 8/112) = 6, padding (8 - 6) // 2 = 1 -> rows 1..6 kept,
    # all 8 cols; each kept row is 8 tokens + 1 newline. Tokens: base 0..15, then 16 + kept_row * 9 + col.
    # Base image: stretched to 56 x 56: x' = x / 2, y' = y * 56/84.
    size = (112, 84)
    # Box [0, 0, 56, 42]: base x [0, 28] y [0, 28] -> rows 0-1, cols 0-1 -> {0, 1, 4, 5}.
    # Grid: x [0, 56] -> cols 0..3; y [0, 42] + 14 -> [14, 56] -> rows 1, 2, 3 -> kept rows 0, 1, 2.
    assert tokens([0, 0, 56, 42], size, "anyres") == {0, 1, 4, 5, 16, 17, 18, 19, 25, 26, 27, 28, 34, 35, 36, 37}
    # Newline tokens (16 + 9k + 8) are never in the region, even for the whole image.
    whole = tokens([0, 0, 112, 84], size, "anyres")
    assert whole == set(range(16 + 6 * 9)) - {16 + 9 * k + 8 for k in range(6)}

    # Image 100 x 60: [56,112] scale min(1.12, .933) -> 93 x 56 = 5208 kept; [112,56] scale .56 -> 56 x 33;
    # [112,112] scale 1.12 -> 112 x 67 > 6000, so all 6000 px kept -> best 112 x 112, 2 x 2 tiles.
    # Resize: width 112, height min(ceil(60 * 1.12), 112) = ceil(67.2) = 68; pad (112 - 68) // 2 = 22 on top.
    # Model unpad: 100/60 > 1 -> new_height = int(round(60 * 8/100, 7)) = int(4.8) = 4, padding (8 - 4) // 2 = 2:
    # rows 2..5 kept. Content spans canvas rows [22, 90) = grid rows 1..6, so rows 1 and 6 of the picture
    # reach the model only through the base image.
    size = (100, 60)
    # Box [0, 0, 100, 5]: base y [0, 4.67] -> row 0, all cols -> {0, 1, 2, 3}; grid y [22, 27.67] -> row 1: dropped.
    assert tokens([0, 0, 100, 5], size, "anyres") == {0, 1, 2, 3}
    # Box [40, 20, 20, 20]: base x * .56 -> [22.4, 33.6] cols 1, 2; y * 56/60 -> [18.67, 37.33] rows 1, 2
    # -> {5, 6, 9, 10}. Grid x * 1.12 -> [44.8, 67.2] cols 3, 4 (col 4 is tile 1's first);
    # y * 68/60 + 22 -> [44.67, 67.33] rows 3, 4 = kept rows 1, 2 -> 16 + 9 + {3, 4}, 16 + 18 + {3, 4}.
    assert tokens([40, 20, 20, 20], size, "anyres") == {5, 6, 9, 10, 28, 29, 37, 38}

    # Image 112 x 83: best 112 x 112 again (scale 1 keeps all pixels); resized 112 x 83, padding 29 rows:
    # (112 - 83) // 2 = 14 on top, 15 below. Model unpad: new_height = int(round(83 * 8/112, 7)) = int(5.93) = 5
    # (truncated, not rounded), padding (8 - 5) // 2 = 1 -> rows 1..6 kept: 16 + 6 * 9 = 70 tokens.
    size = (112, 83)
    assert image_token_count(size, *CASES["anyres"]) == 70
    # Box [0, 0, 112, 13.5]: base y * 56/83 -> [0, 9.1] -> row 0 -> {0..3}; grid y + 14 -> [14, 27.5] -> row 1
    # only (kept row 0) -> 16..23.
    assert tokens([0, 0, 112, 13.5], size, "anyres") == {0, 1, 2, 3, *range(16, 24)}


def test_kept_cls_token_is_never_in_the_region() -> None:
    # "full" keeps CLS as image token 0: 17 tokens, patches shifted by one.
    processor, config = clip_processor(56, strategy="full"), make_config("llava", 56, strategy="full")
    assert image_token_count((112, 84), processor, config) == 17
    mask = region_token_mask([60, 10, 30, 50], (112, 84), processor, config)
    assert set(np.flatnonzero(mask).tolist()) == {3, 4, 7, 8, 11, 12}  # {2, 3, 6, 7, 10, 11} + 1
    assert not region_token_mask([0, 0, 112, 84], (112, 84), processor, config)[0]


def test_vipllava_drops_cls_like_default() -> None:
    processor = build_llava_processor(TOKENIZER, image_size=56, patch_size=14)
    config = make_config("vipllava", 56)
    assert image_token_count((112, 84), processor, config) == 16
    mask = region_token_mask([60, 10, 30, 50], (112, 84), processor, config)
    assert set(np.flatnonzero(mask).tolist()) == {2, 3, 6, 7, 10, 11}


# ----------------------------------------------------------------------------------------------------
# 2. Token counts against the real processor.
# ----------------------------------------------------------------------------------------------------

SIZES = [  # (width, height): square, wide, tall, tiny, large, odd aspect ratios
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
    (1000, 1),
    (4000, 3000),
    (1023, 769),
]


def processed(case: str, image: Image.Image):
    processor, _ = CASES[case]
    return processor(text="<image> how many", images=image, return_tensors="pt")


@pytest.mark.parametrize("case", list(CASES))
def test_token_count_matches_the_processor(case: str) -> None:
    processor, config = CASES[case]
    for size in SIZES:
        inputs = processed(case, Image.new("RGB", size, (128, 128, 128)))
        expected = int((inputs["input_ids"] == config.image_token_id).sum())
        assert image_token_count(size, processor, config) == expected, size
        assert region_token_mask([0, 0, *size], size, processor, config).shape == (expected,)


def test_token_count_of_saved_models_matches_their_processor(tiny_models) -> None:
    for family in FAMILIES:
        processor = AutoProcessor.from_pretrained(tiny_models[family])
        config = AutoConfig.from_pretrained(tiny_models[family])
        for size in [(112, 84), (84, 112), (100, 60), (56, 56)]:
            inputs = processor(text="<image> how many", images=Image.new("RGB", size), return_tensors="pt")
            expected = int((inputs["input_ids"] == config.image_token_id).sum())
            assert image_token_count(size, processor, config) == expected, (family, size)


# ----------------------------------------------------------------------------------------------------
# 3. Painted boxes through the real processor (and, for anyres, the real model's packing).
# ----------------------------------------------------------------------------------------------------

# Redness (R - G, 0..1) of the reddest pixel of a patch. The grey background has 0; LlavaImageProcessor pads
# with the CLIP mean colour, whose R - G is 0.024.
CLEARLY_IN, CLEARLY_OUT = 0.9, 0.05


def painted(size: tuple[int, int], bbox) -> Image.Image:
    image = Image.new("RGB", size, (128, 128, 128))
    x, y, w, h = bbox
    ImageDraw.Draw(image).rectangle([x, y, x + w - 1, y + h - 1], fill=(255, 0, 0))  # pixels x..x+w-1
    return image


def patch_redness(pixel_values: torch.Tensor, processor, patch: int) -> np.ndarray:
    """``redness  # (n_images, rows, cols)``: the reddest pixel of every patch of every processed image."""
    image_processor = processor.image_processor
    mean = np.asarray(image_processor.image_mean)[None, :, None, None]
    std = np.asarray(image_processor.image_std)[None, :, None, None]
    rgb = pixel_values.numpy() * std + mean  # undo normalisation: 0..1
    red = rgb[:, 0] - rgb[:, 1]
    n, side = red.shape[0], red.shape[-1] // patch
    return red.reshape(n, side, patch, side, patch).max(axis=(2, 4))


def redness_in_token_order(case: str, image: Image.Image) -> np.ndarray:
    """Each image token's patch redness, in the order the model writes features (NaN for newline tokens)."""
    processor, config = CASES[case]
    inputs = processed(case, image)
    if "image_sizes" not in inputs:  # LLaVA-1.5: CLIP patches in row-major order, after any kept CLS
        return patch_redness(inputs["pixel_values"], processor, 14).reshape(-1)
    tiles = patch_redness(inputs["pixel_values"][0], processor, 14)  # base image first, then tiles
    features = torch.from_numpy(tiles.reshape(len(tiles), -1, 1)).float()
    model = LlavaNextModel(config)
    packed, lengths = model.pack_image_features([features], inputs["image_sizes"], "default", image_newline=torch.tensor([float("nan")]))
    assert int(lengths[0]) == int((inputs["input_ids"] == config.image_token_id).sum())
    return packed[0][:, 0].numpy()


def compare_with_pixels(case: str, size, bbox) -> tuple[int, int]:
    """Assert the mask agrees with every clearly-in or clearly-out patch; return (clear, unclear) counts."""
    processor, config = CASES[case]
    redness = redness_in_token_order(case, painted(size, bbox))
    mask = region_token_mask(bbox, size, processor, config)
    patches = ~np.isnan(redness)
    clearly_in, clearly_out = redness >= CLEARLY_IN, patches & (redness <= CLEARLY_OUT)
    assert not mask[~patches].any(), "a newline token is marked"
    assert mask[clearly_in].all(), (case, size, bbox, np.flatnonzero(clearly_in & ~mask))
    assert not mask[clearly_out].any(), (case, size, bbox, np.flatnonzero(clearly_out & mask))
    clear = int(clearly_in.sum() + clearly_out.sum())
    return clear, int(patches.sum()) - clear


@pytest.mark.parametrize("case", ["crop", "clip_crop", "small_crop", "pad", "anyres"])
def test_mask_matches_painted_boxes_through_the_processor(case: str) -> None:
    rng = np.random.default_rng(0)
    clear = unclear = in_patches = 0
    for size in [(112, 84), (84, 112), (100, 60), (61, 170), (300, 97), (56, 56)]:
        for _ in range(12):
            width, height = size
            x, y = int(rng.integers(0, width - 4)), int(rng.integers(0, height - 4))
            bbox = [x, y, int(rng.integers(4, width - x + 1)), int(rng.integers(4, height - y + 1))]
            c, u = compare_with_pixels(case, size, bbox)
            clear, unclear = clear + c, unclear + u
            in_patches += int(region_token_mask(bbox, size, *CASES[case]).sum())
    # The comparison must bite: most patches are decided by the pixels, and many of them are inside boxes.
    assert clear > 20 * unclear and in_patches > 200


@pytest.mark.parametrize("case", ["llava15", "llava15_pad", "llava16"])
def test_mask_matches_painted_boxes_at_real_model_sizes(case: str) -> None:
    boxes = {(640, 480): [250, 130, 180, 200], (333, 500): [20, 400, 150, 60], (1023, 769): [0, 0, 120, 769]}
    clear = unclear = 0
    for size, bbox in boxes.items():
        c, u = compare_with_pixels(case, size, bbox)
        clear, unclear = clear + c, unclear + u
    assert clear > 8 * unclear


# ----------------------------------------------------------------------------------------------------
# 4. The paper's mapping: a 24 x 24 grid laid over the raw image, cell marked if it overlaps the box.
# ----------------------------------------------------------------------------------------------------


def naive_grid_tokens(bbox, size, n: int = 24) -> set[int]:
    """The reference being refuted (jing-bi/visual-head): cells of the raw image, ignoring the processor."""
    (x, y, w, h), (width, height) = bbox, size
    cell_w, cell_h = width / n, height / n
    return {
        row * n + col
        for row in range(n)
        for col in range(n)
        if col * cell_w < x + w and x < (col + 1) * cell_w and row * cell_h < y + h and y < (row + 1) * cell_h
    }


@pytest.mark.parametrize("case", ["llava15", "llava15_pad"])
def test_naive_grid_disagrees_with_what_the_model_sees(case: str) -> None:
    size, bbox = (640, 480), [40, 300, 120, 100]  # a wide photo, an object near the left edge
    redness = redness_in_token_order(case, painted(size, bbox))
    clearly_in, clearly_out = set(np.flatnonzero(redness >= CLEARLY_IN)), set(np.flatnonzero(redness <= CLEARLY_OUT))
    naive, real = naive_grid_tokens(bbox, size), tokens(bbox, size, case)
    assert clearly_in <= real and not (real & clearly_out)
    assert naive & clearly_out, "the naive grid marks patches that show no trace of the box"
    assert clearly_in - naive, "the naive grid misses patches that are full of the box"


# ----------------------------------------------------------------------------------------------------
# 5. Bad input: one clear line.
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bbox, size, message",
    [
        ([1, 2, 3], (112, 84), r"bbox must be \[x, y, w, h\]"),
        ([0, 0, -5, 10], (112, 84), "w, h >= 0"),
        ([0, 0, float("nan"), 10], (112, 84), "finite"),
        ([200, 0, 10, 10], (112, 84), "lies outside the 112x84 image"),
        ([0, 0, 10, 10], (0, 84), "positive whole numbers"),
        ([0, 0, 10, 10], (112.5, 84), "positive whole numbers"),
    ],
)
def test_bad_boxes_and_sizes_are_named(bbox, size, message: str) -> None:
    processor, config = CASES["crop"]
    with pytest.raises(VisheadsError, match=message):
        region_token_mask(bbox, size, processor, config)


def test_degenerate_and_clipped_boxes() -> None:
    processor, config = CASES["crop"]
    assert not region_token_mask([10, 10, 0, 20], (112, 84), processor, config).any()  # no area, no tokens
    # A box reaching past the image is clipped to it: [100, -50, 500, 100] covers x [100, 112], y [0, 50].
    assert tokens([100, -50, 500, 100], (112, 84), "crop") == tokens([100, 0, 12, 50], (112, 84), "crop")
    with pytest.raises(VisheadsError, match="min_overlap"):
        region_token_mask([0, 0, 10, 10], (112, 84), processor, config, min_overlap=1.5)


def test_mismatched_or_unsupported_processors_are_named() -> None:
    processor, config = CASES["crop"]
    with pytest.raises(VisheadsError, match="patch_size"):
        image_token_count((112, 84), processor, make_config("llava", 56, patch_size=8))
    with pytest.raises(VisheadsError, match="vision tower takes 112x112"):
        image_token_count((112, 84), processor, make_config("llava", 112))
    with pytest.raises(VisheadsError, match="does not belong to a model of type 'llava_next'"):
        image_token_count((112, 84), processor, CASES["anyres"][1])
    with pytest.raises(VisheadsError, match="unsupported model type 'llama'"):
        image_token_count((112, 84), processor, config.text_config)
    with pytest.raises(VisheadsError, match="vision_feature_select_strategy='default' but the model uses 'full'"):
        image_token_count((112, 84), processor, make_config("llava", 56, strategy="full"))
    with pytest.raises(VisheadsError, match="image_grid_pinpoints"):
        image_token_count((112, 84), CASES["anyres"][0], make_config("llava_next", 56, [[56, 56]]))
    with pytest.raises(VisheadsError, match="has no image_processor"):
        image_token_count((112, 84), TOKENIZER, config)


class _CustomImageProcessor(CLIPImageProcessorPil):
    """An image processor with its own pipeline, which region geometry cannot know."""

    def _preprocess(self, images, **kwargs):
        return super()._preprocess(images, **kwargs)


def test_unknown_image_processing_is_refused() -> None:
    processor = LlavaProcessor(
        image_processor=_CustomImageProcessor(),
        tokenizer=TOKENIZER,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    with pytest.raises(VisheadsError, match="unsupported image processor _CustomImageProcessor"):
        region_token_mask([0, 0, 10, 10], (112, 84), processor, make_config("llava", 56))
    processor = clip_processor(56)
    processor.image_processor.size = SizeDict(max_pixels=4000)
    with pytest.raises(VisheadsError, match="unsupported image processor size"):
        image_token_count((112, 84), processor, make_config("llava", 56))
