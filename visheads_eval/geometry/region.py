"""A question's bounding box, in original-image pixels, to the image tokens it covers.

A token is in the region when its footprint, in the pixels the model actually sees, overlaps the box with
positive area; ``min_overlap`` raises that bar to a fraction of the footprint's area. The footprint is the
vision patch for LLaVA-1.5 / ViP-LLaVA / LLaVA-NeXT, and the square of patches a token is merged or pooled
from for the other families (Qwen-VL's merged cell, Gemma 3's pooled window, InternVL's and Idefics3's
pixel-shuffled block, LLaVA-OneVision's bilinear window; :mod:`visheads_eval.geometry.modern`). Box parts
that the processor crops away cover nothing; newline tokens and a kept CLS token are never in the region.
The model's family (:mod:`visheads_eval.families`) picks the layout (:mod:`visheads_eval.geometry.layouts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from transformers import PretrainedConfig, ProcessorMixin

from visheads_eval.errors import VisheadsError
from visheads_eval.geometry.axis import cell_overlaps, map_interval
from visheads_eval.geometry.layout import Grid, Segment, TokenLayout
from visheads_eval.geometry.layouts import layout_of


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
    return layout_of(width, height, processor, config)


def image_token_count(image_size: Sequence[int], processor: ProcessorMixin, config: PretrainedConfig) -> int:
    """How many ``<image>`` tokens the processor gives an image of ``image_size`` = (width, height).

    Equal to ``(input_ids == config.image_token_id).sum()`` for a prompt with one such image, and to the
    number of features the model writes into them.
    """
    return _layout(image_size, processor, config).n_tokens


def _axis_overlap(interval: tuple[Fraction, Fraction], segments: Sequence[Segment], patch: int) -> np.ndarray:
    return np.concatenate([cell_overlaps(map_interval(interval, s.steps), s.n_cells, patch) for s in segments])


def _covered(grid: Grid, box_x: tuple[Fraction, Fraction], box_y: tuple[Fraction, Fraction], cell: int) -> np.ndarray:
    """``covered  # (token_rows, token_cols)``: the fraction of each token's footprint inside the box."""
    y, x = _axis_overlap(box_y, grid.y, cell), _axis_overlap(box_x, grid.x, cell)
    if grid.row_cells is None and grid.col_cells is None:
        return np.outer(y, x) / float(cell**2)

    def pooled(overlap: np.ndarray, runs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per token row/column: the box's length inside its footprint, and the footprint's length."""
        if runs is None:
            return overlap, np.full(len(overlap), float(cell))
        return np.array([overlap[a:b].sum() for a, b in runs]), (runs[:, 1] - runs[:, 0]) * float(cell)

    (y_in, y_len), (x_in, x_len) = pooled(y, grid.row_cells), pooled(x, grid.col_cells)
    return np.outer(y_in, x_in) / np.outer(y_len, x_len)


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

    A token is in the region when the box covers a positive area of its footprint (its patch, or the
    block of patches it is merged or pooled from) and at least ``min_overlap`` (0..1) of the footprint's
    area, measured in the pixels the vision tower sees. The default 0 keeps every token the box touches
    (the paper's rule). Parts of the box outside the image or cropped away by the processor cover
    nothing; a box with zero width or height covers nothing.
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
        raise VisheadsError(f"bbox {list(bbox)} lies outside the {width}x{height} image; boxes are [x, y, w, h] in original pixels")
    layout = layout_of(width, height, processor, config)
    mask = np.zeros(layout.n_tokens, dtype=bool)
    if w == 0 or h == 0:
        return mask
    box_x = (max(Fraction(x), Fraction(0)), min(Fraction(x) + Fraction(w), Fraction(width)))
    box_y = (max(Fraction(y), Fraction(0)), min(Fraction(y) + Fraction(h), Fraction(height)))
    for grid in layout.grids:
        covered = _covered(grid, box_x, box_y, layout.patch_size)  # fraction of each footprint inside the box
        inside = (covered > 0) & (covered >= min_overlap) & (grid.token_index >= 0)
        mask[grid.token_index[inside]] = True
    return mask
