"""One image axis: how a processor's resizes, pads and crops move an interval, and which cells it covers.

Every step a LLaVA-family image processor applies (resize, pad, centre crop, cutting a tile out of the
anyres canvas) acts on each axis separately as ``u -> u * scale + shift`` followed by keeping only
``[0, length)``, the new canvas. Coordinates are continuous pixel edges (pixel ``i`` spans ``[i, i+1)``),
which is also how PIL and torchvision resampling map pixels (no ``align_corners``). Arithmetic is exact
(``fractions.Fraction``), so a box edge that lands exactly on a patch boundary never spills into the
neighbouring patch through rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

Interval = tuple[Fraction, Fraction]


@dataclass(frozen=True)
class Step:
    """``u -> u * scale + shift``, then keep ``[0, length)``: one resize, pad or crop along one axis."""

    scale: Fraction
    shift: Fraction
    length: int


def map_interval(interval: Interval | None, steps: Sequence[Step]) -> Interval | None:
    """Carry ``interval`` through ``steps``; ``None`` once nothing of it is left on the canvas."""
    for step in steps:
        if interval is None:
            return None
        lo = max(interval[0] * step.scale + step.shift, Fraction(0))
        hi = min(interval[1] * step.scale + step.shift, Fraction(step.length))
        interval = (lo, hi) if lo < hi else None
    return interval


def cell_overlaps(interval: Interval | None, n_cells: int, cell: int) -> np.ndarray:
    """Length of ``interval`` inside each of ``n_cells`` cells ``[i*cell, (i+1)*cell)``.

    Returns ``overlap  # (n_cells,)`` float64, in pixels; an entry is positive exactly when the
    interval overlaps that cell with positive length. Pixels beyond ``n_cells * cell`` (a canvas that
    is not a multiple of the patch size) belong to no cell, as in the vision tower's patch convolution.
    """
    overlap = np.zeros(n_cells)
    if interval is None:
        return overlap
    lo, hi = interval[0], min(interval[1], Fraction(n_cells * cell))
    if lo >= hi:
        return overlap
    first, last = math.floor(lo / cell), math.ceil(hi / cell)  # cells [first, last) are touched
    overlap[first:last] = cell
    overlap[first] = float(min(hi, Fraction((first + 1) * cell)) - lo)
    overlap[last - 1] = float(hi - max(lo, Fraction((last - 1) * cell)))
    return overlap


def centre_crop_shift(length: int, crop: int, backend: str) -> int:
    """Where a centre crop of ``crop`` pixels moves pixel 0 of an axis of ``length`` pixels.

    Both backends cut ``(length - crop) // 2`` pixels off the start when the image is large enough.
    When it is smaller, they pad it to ``crop`` first and disagree on the odd pixel: PIL
    (``image_transforms.center_crop``) puts it before the image, torchvision after.
    """
    if length >= crop:
        return -((length - crop) // 2)
    if backend == "pil":
        return (crop - length + 1) // 2
    return (crop - length) // 2
