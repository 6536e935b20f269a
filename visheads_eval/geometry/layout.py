"""Where each image token of one image comes from: the processor's pixel steps and the model's feature order.

A :class:`TokenLayout` holds one or more patch grids. Each grid cell is one vision patch; per axis, the
grid is a run of segments (one per anyres tile row or column), each with the steps that carry an
original-image coordinate onto that segment's pixels. ``token_index`` tells which image token (0-based,
in the order the model writes features into the ``<image>`` positions) each cell becomes, ``-1`` for
cells the model drops (LLaVA-NeXT unpadding).

Sizes come from transformers' own helpers (``get_resize_output_image_size``, ``select_best_resolution``,
``get_patch_output_size``, the model's ``unpad_image``), so the integer rounding is the installed
version's; the per-image steps mirror ``LlavaImageProcessor(Pil)._preprocess``, the backends' generic
``_preprocess`` and ``LlavaNextImageProcessor(Pil)._preprocess``/``get_image_patches``, and the grid
order mirrors ``LlavaNextModel.pack_image_features``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio
from transformers.image_utils import ChannelDimension, SizeDict, get_image_size_for_max_height_width
from transformers.models.llava_next.modeling_llava_next import unpad_image

from visheads_eval.errors import VisheadsError
from visheads_eval.geometry.axis import Step, centre_crop_shift
from visheads_eval.geometry.settings import Geometry, ImageSettings


def _shape_only(height: int, width: int) -> np.ndarray:
    """A (1, height, width) array that costs no memory, for transformers helpers that read only the shape."""
    return np.broadcast_to(np.zeros((), dtype=np.uint8), (1, height, width))


def resized_size(height: int, width: int, size: SizeDict) -> tuple[int, int]:
    """The (height, width) the backends' ``resize`` produces for ``size`` (same rules in PIL and torchvision)."""
    if size.shortest_edge and size.longest_edge:
        return get_size_with_aspect_ratio((height, width), size.shortest_edge, size.longest_edge)
    if size.shortest_edge:
        return get_resize_output_image_size(
            _shape_only(height, width), size.shortest_edge, default_to_square=False,
            input_data_format=ChannelDimension.FIRST,
        )
    if size.max_height and size.max_width:
        return get_image_size_for_max_height_width((height, width), size.max_height, size.max_width)
    if size.height and size.width:
        return size.height, size.width
    raise VisheadsError(f"unsupported image processor size {dict(size)}; region geometry knows shortest_edge, "
                        "shortest_edge+longest_edge, max_height+max_width and height+width")


@dataclass
class Trace:
    """A canvas of ``height`` x ``width`` pixels and the steps that carried original pixels onto it."""

    height: int
    width: int
    y: list[Step] = field(default_factory=list)
    x: list[Step] = field(default_factory=list)

    def resize(self, height: int, width: int) -> None:
        self.y.append(Step(Fraction(height, self.height), Fraction(0), height))
        self.x.append(Step(Fraction(width, self.width), Fraction(0), width))
        self.height, self.width = height, width

    def move(self, dy: int, dx: int, height: int, width: int) -> None:
        """Pad (positive shift) or crop (negative shift) onto a new canvas of ``height`` x ``width``."""
        self.y.append(Step(Fraction(1), Fraction(dy), height))
        self.x.append(Step(Fraction(1), Fraction(dx), width))
        self.height, self.width = height, width

    def copy(self) -> Trace:
        return Trace(self.height, self.width, list(self.y), list(self.x))


def _resize_and_crop(trace: Trace, image: ImageSettings) -> None:
    """``do_resize`` with ``size`` then ``do_center_crop`` with ``crop_size``, as every processor here does."""
    if image.do_resize:
        if image.size is None:
            raise VisheadsError("the image processor has do_resize=True but no size")
        trace.resize(*resized_size(trace.height, trace.width, image.size))
    if image.do_center_crop:
        crop = image.crop_size
        if crop is None or not (crop.height and crop.width):
            raise VisheadsError(f"the image processor's crop_size must have height and width, got {crop}")
        trace.move(
            centre_crop_shift(trace.height, crop.height, image.backend),
            centre_crop_shift(trace.width, crop.width, image.backend),
            crop.height,
            crop.width,
        )


def _check_fits(trace: Trace, geometry: Geometry, what: str) -> None:
    if (trace.height, trace.width) != (geometry.vision_size, geometry.vision_size):
        side = geometry.vision_size
        raise VisheadsError(
            f"the processor makes {what} of {trace.height}x{trace.width} pixels but the vision tower takes "
            f"{side}x{side}; the model cannot run this processor's output (check size, crop_size, do_center_crop)"
        )


@dataclass(frozen=True)
class Segment:
    """A run of ``n_cells`` patch cells along one axis, reached from original pixels through ``steps``."""

    steps: tuple[Step, ...]
    n_cells: int


@dataclass(frozen=True)
class Grid:
    """Patch cells ``(rows, cols)``: the y segments give the rows, the x segments the columns."""

    y: tuple[Segment, ...]
    x: tuple[Segment, ...]
    token_index: np.ndarray  # (rows, cols) int64, -1 where the cell becomes no token


@dataclass(frozen=True)
class TokenLayout:
    """All image tokens of one image: ``n_tokens`` positions, of which the grids' cells are patches."""

    n_tokens: int
    grids: tuple[Grid, ...]
    patch_size: int


def _single_grid(trace: Trace, geometry: Geometry, first_token: int) -> Grid:
    n = geometry.patches_per_side
    token_index = first_token + np.arange(n * n, dtype=np.int64).reshape(n, n)
    return Grid((Segment(tuple(trace.y), n),), (Segment(tuple(trace.x), n),), token_index)


def _plain_layout(width: int, height: int, geometry: Geometry) -> TokenLayout:
    """LLaVA-1.5 / ViP-LLaVA: one processed image, patches in row-major order after any kept CLS."""
    image = geometry.image
    trace = Trace(height, width)
    if image.kind == "llava" and image.do_pad:  # pad to a centred square before anything else
        side = max(height, width)
        trace.move((side - height) // 2, (side - width) // 2, side, side)
    _resize_and_crop(trace, image)
    if image.kind == "generic" and image.do_pad and image.pad_size is not None:  # pad bottom/right
        pad = image.pad_size
        if pad.height < trace.height or pad.width < trace.width:
            raise VisheadsError(f"pad_size {dict(pad)} is smaller than the processed image")
        trace.move(0, 0, pad.height, pad.width)
    _check_fits(trace, geometry, "an image")
    grid = _single_grid(trace, geometry, geometry.leading_tokens)
    return TokenLayout(geometry.leading_tokens + grid.token_index.size, (grid,), geometry.patch_size)


def _tile_side(image: ImageSettings) -> int:
    """The tile side ``LlavaNextImageProcessor._preprocess`` cuts the anyres canvas into."""
    if image.crop_size is not None and image.crop_size.height:
        return image.crop_size.height
    if image.size is not None and image.size.height:
        return image.size.height
    return image.size.shortest_edge


def _anyres_layout(width: int, height: int, geometry: Geometry) -> TokenLayout:
    """LLaVA-NeXT: base image features, then the unpadded tile grid with a newline token after each row."""
    image, n = geometry.image, geometry.patches_per_side
    size = image.size
    if size is None:
        raise VisheadsError("the LLaVA-NeXT image processor has no size")
    base = Trace(height, width)
    if size is not None and size.height and size.width:  # the base image is stretched, not cropped
        base.resize(size.height, size.width)
    else:
        base.resize(size.shortest_edge, size.shortest_edge)
    _resize_and_crop(base, image)
    _check_fits(base, geometry, "a base image")
    base_grid = _single_grid(base, geometry, 0)

    best_height, best_width = select_best_resolution((height, width), [list(p) for p in image.grid_pinpoints])
    new_height, new_width = get_patch_output_size(
        _shape_only(height, width), (best_height, best_width), ChannelDimension.FIRST
    )
    canvas = Trace(height, width)
    canvas.resize(new_height, new_width)
    canvas.move((best_height - new_height) // 2, (best_width - new_width) // 2, best_height, best_width)

    side = _tile_side(image)
    if side != geometry.vision_size or best_height % side or best_width % side:
        raise VisheadsError(
            f"anyres tiles of {side} px on the {best_height}x{best_width} pinpoint do not match the vision "
            f"tower's {geometry.vision_size} px input; pinpoints must be multiples of the tile size"
        )
    tile = Trace(side, side)
    _resize_and_crop(tile, image)
    _check_fits(tile, geometry, "anyres tiles")
    rows, cols = best_height // side, best_width // side

    def segments(axis: str, count: int) -> tuple[Segment, ...]:
        prefix, inner = getattr(canvas, axis), getattr(tile, axis)
        return tuple(
            Segment((*prefix, Step(Fraction(1), Fraction(-i * side), side), *inner), n) for i in range(count)
        )

    # The model's own unpadding, applied to a map of cell numbers, tells which cells survive and in what order.
    cells = torch.arange(rows * n * cols * n).reshape(1, rows * n, cols * n)
    kept = unpad_image(cells, (height, width))[0].numpy()  # (kept_rows, kept_cols) cell numbers
    kept_rows, kept_cols = kept.shape
    token_index = np.full(rows * n * cols * n, -1, dtype=np.int64)
    row_starts = base_grid.token_index.size + np.arange(kept_rows) * (kept_cols + 1)  # + 1: newline token
    token_index[kept] = row_starts[:, None] + np.arange(kept_cols)[None, :]
    tiles = Grid(segments("y", rows), segments("x", cols), token_index.reshape(rows * n, cols * n))
    n_tokens = base_grid.token_index.size + kept_rows * (kept_cols + 1)
    return TokenLayout(n_tokens, (base_grid, tiles), geometry.patch_size)


def token_layout(width: int, height: int, geometry: Geometry) -> TokenLayout:
    """The token layout of an original image of ``width`` x ``height`` pixels."""
    if geometry.image.kind == "llava_next":
        return _anyres_layout(width, height, geometry)
    return _plain_layout(width, height, geometry)
