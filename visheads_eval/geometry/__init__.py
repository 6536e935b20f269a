"""Region geometry: a question's bounding box (original pixels) -> the image tokens it covers.

Follows what the processor and the model really do to the image, per family (the model's family picks the
layout, :mod:`visheads_eval.geometry.layouts`): resize + centre crop (CLIP-style, HF LLaVA-1.5 and
ViP-LLaVA), pad to square first (``LlavaImageProcessor(do_pad=True)``, the original LLaVA-1.5 recipe),
LLaVA-NeXT anyres (base image, tiles, unpadding, newline tokens) in :mod:`~visheads_eval.geometry.layout`;
LLaVA-OneVision (anyres with bilinear downsampling), Qwen2/2.5/3-VL (smart_resize, 2 x 2 merged cells),
Gemma 3 (pooled tokens, pan-and-scan crops), InternVL (GotOcr2 tiles and thumbnail, pixel shuffle) and
Idefics3 / SmolVLM (tiles and global image, pixel shuffle) in :mod:`~visheads_eval.geometry.modern`.

    mask = region_token_mask(bbox, image_size, processor, config)   # (n_image_tokens,) bool
    n = image_token_count(image_size, processor, config)             # == (input_ids == image_token_id).sum()
"""

from visheads_eval.geometry.region import image_token_count, region_token_mask

__all__ = ["image_token_count", "region_token_mask"]
