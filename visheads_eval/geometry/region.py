"""A question's bounding box, in original-image pixels, to the image tokens it covers.

A token is in the region when its vision patch, in the pixels the model actually sees, overlaps the
box with positive area; ``min_overlap`` raises that bar to a fraction of the patch's area. Box parts
that the processor crops away cover nothing; LLaVA-NeXT newline tokens and a kept CLS token are never
in the region.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from transformers import PretrainedConfig, ProcessorMixin

from visheads_eval.errors import VisheadsError
from visheads_eval.geometry.axis import cell_overlaps, map_interval
from visheads_eval.geometry.layout import Segment, TokenLayout, token_layout
from visheads_eval.geometry.settings import read_geometry


def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        values = tuple(image_size)
        width, height = (int(v) for v in values)
    except (TypeError, ValueError):
        raise VisheadsError(f"image_size must be (width, height) in pixels, got {image_size!r}") from None
    if width <= 0 or height <= 0 or (width, height) != values:
        raise VisheadsError(f"image_size must be two positive whole numbers (width, height), got {image_size!r}")
    return width, height


def _layout(image_size: Sequence[int], processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    width, height = _check_image_size(image_size)
    return token_layout(width, height, read_geometry(processor, config))


def image_token_count(image_size: Sequence[int], processor: ProcessorMixin, config: PretrainedConfig) -> int:
    """How many ``<image>`` tokens the processor gives an image of ``image_size`` = (width, height).

    Equal to ``(input_ids == config.image_token_id).sum()`` for a prompt with one such image, and to the
    number of features the model writes into them.
    """
    return _layout(image_size, processor, config).n_tokens


def _axis_overlap(interval: tuple[Fraction, Fraction], segments: Sequence[Segment], patch: int) -> np.ndarray:
    return np.concatenate([cell_overlaps(map_interval(interval, s.steps), s.n_cells, patch) for s in segments])


def region_token_mask(
    bbox: Sequence[float],
    image_size: Sequence[int],
    processor: ProcessorMixin,
    config: PretrainedConfig,
    *,
    min_overlap: float = 0.0,
) -> np.ndarray:
    """Which image tokens the box covers: ``mask  # (n_image_tokens,)`` bool, in image-token order.

    ``bbox`` is ``[x, y, w, h]`` in original pixels (pixel edges: ``[0, 0, W, H]`` is the whole image),
    ``image_size`` is the original ``(width, height)``; ``processor`` and ``config`` are the model's own.
    Image-token order is the order in which the model writes image features into the positions where
    ``input_ids == config.image_token_id``.

    A token is in the region when the box covers a positive area of its patch and at least
    ``min_overlap`` (0..1) of the patch's area, measured in the pixels the vision tower sees. The
    default 0 keeps every patch the box touches (the paper's rule). Parts of the box outside the image
    or cropped away by the processor cover nothing; a box with zero width or height covers nothing.
    """
    width, height = _check_image_size(image_size)
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise VisheadsError(f"bbox must be [x, y, w, h] in original pixels, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise VisheadsError(f"bbox {list(bbox)} must be [x, y, w, h] with finite values and w, h >= 0")
    if not 0.0 <= min_overlap <= 1.0:
        raise VisheadsError(f"min_overlap is a fraction of a patch's area, 0..1; got {min_overlap}")
    if w > 0 and h > 0 and (x >= width or y >= height or x + w <= 0 or y + h <= 0):
        raise VisheadsError(
            f"bbox {list(bbox)} lies outside the {width}x{height} image; boxes are [x, y, w, h] in original pixels"
        )
    layout = token_layout(width, height, read_geometry(processor, config))
    mask = np.zeros(layout.n_tokens, dtype=bool)
    if w == 0 or h == 0:
        return mask
    box_x = (max(Fraction(x), Fraction(0)), min(Fraction(x) + Fraction(w), Fraction(width)))
    box_y = (max(Fraction(y), Fraction(0)), min(Fraction(y) + Fraction(h), Fraction(height)))
    patch_area = float(layout.patch_size**2)
    for grid in layout.grids:
        covered = np.outer(
            _axis_overlap(box_y, grid.y, layout.patch_size), _axis_overlap(box_x, grid.x, layout.patch_size)
        ) / patch_area  # (rows, cols) fraction of each patch inside the box
        inside = (covered > 0) & (covered >= min_overlap) & (grid.token_index >= 0)
        mask[grid.token_index[inside]] = True
    return mask
