"""Region geometry: a question's bounding box (original pixels) -> the image tokens it covers.

Follows what the processor and the model really do to the image, per processor: resize + centre crop
(CLIP-style, HF LLaVA-1.5 and ViP-LLaVA), pad to square first (``LlavaImageProcessor(do_pad=True)``, the
original LLaVA-1.5 recipe) and LLaVA-NeXT anyres (base image, tiles, unpadding, newline tokens).

    mask = region_token_mask(bbox, image_size, processor, config)   # (n_image_tokens,) bool
    n = image_token_count(image_size, processor, config)             # == (input_ids == image_token_id).sum()
"""

from visheads_eval.geometry.region import image_token_count, region_token_mask

__all__ = ["image_token_count", "region_token_mask"]
