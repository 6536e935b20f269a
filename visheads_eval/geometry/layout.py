"""Where each image token of one image comes from: the processor's pixel steps and the model's feature order.

A :class:`TokenLayout` holds one or more grids. Each grid cell is one footprint (a vision patch for the
LLaVA layouts; the block of patches one token is merged or pooled from for the other families); per axis,
the grid is a run of segments (one per tile row or column), each with the steps that carry an
original-image coordinate onto that segment's pixels. ``token_index`` tells which image token (0-based,
in the order the model writes features into the image-token positions) each cell becomes, ``-1`` for
cells the model drops (LLaVA-NeXT unpadding); a pooled grid maps each token to a rectangle of cells.

This module owns those structures, the helpers every layout builds them with (:func:`row_major_grid`,
:func:`tiles_grid`, :func:`anyres_parts`) and the LLaVA-1.5 / ViP-LLaVA and LLaVA-NeXT layouts
(:func:`token_layout`); the other families' layouts are in :mod:`visheads_eval.geometry.modern`.

Sizes come from transformers' own helpers (``get_resize_output_image_size``, ``select_best_resolution``,
``get_patch_output_size``, the model's ``unpad_image``), so the integer rounding is the installed
version's; the per-image steps mirror ``LlavaImageProcessor(Pil)._preprocess``, the backends' generic
``_preprocess`` and ``LlavaNextImageProcessor(Pil)._preprocess``/``get_image_patches``, and the grid
order mirrors ``LlavaNextModel.pack_image_features``.
"""

from __future__ import annotations

from collections.abc import Callable
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
from visheads_eval.geometry.settings import ANYRES_LABELS, Geometry, ImageSettings


def shape_only(height: int, width: int) -> np.ndarray:
    """A (1, height, width) array that costs no memory, for transformers helpers that read only the shape."""
    return np.broadcast_to(np.zeros((), dtype=np.uint8), (1, height, width))


def resized_size(height: int, width: int, size: SizeDict) -> tuple[int, int]:
    """The (height, width) the backends' ``resize`` produces for ``size`` (same rules in PIL and torchvision)."""
    if size.shortest_edge and size.longest_edge:
        return get_size_with_aspect_ratio((height, width), size.shortest_edge, size.longest_edge)
    if size.shortest_edge:
        return get_resize_output_image_size(
            shape_only(height, width),
            size.shortest_edge,
            default_to_square=False,
            input_data_format=ChannelDimension.FIRST,
        )
    if size.max_height and size.max_width:
        return get_image_size_for_max_height_width((height, width), size.max_height, size.max_width)
    if size.height and size.width:
        return size.height, size.width
    raise VisheadsError(
        f"unsupported image processor size {dict(size)}; region geometry knows shortest_edge, "
        "shortest_edge+longest_edge, max_height+max_width and height+width"
    )


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
    """Cells ``(rows, cols)``: the y segments give the rows, the x segments the columns.

    Usually each cell is one token's footprint and ``token_index`` is ``(rows, cols)``. A pooled grid
    (LLaVA-OneVision's bilinear downsampling) has ``token_index`` of ``(token_rows, token_cols)`` and
    ``row_cells``/``col_cells`` giving, per token row/column, the run ``[first, end)`` of cell rows/columns
    its footprint spans; a token's footprint is the rectangle of those cells.
    """

    y: tuple[Segment, ...]
    x: tuple[Segment, ...]
    token_index: np.ndarray  # (rows, cols) int64, -1 where the cell becomes no token
    row_cells: np.ndarray | None = None  # (token_rows, 2) int64 [first, end) cell rows; None: one row each
    col_cells: np.ndarray | None = None  # (token_cols, 2) int64 [first, end) cell columns; None: one column each


@dataclass(frozen=True)
class TokenLayout:
    """All image tokens of one image: ``n_tokens`` positions, of which the grids' cells are footprints.

    ``patch_size`` is the side of one grid cell in processed pixels: a vision patch for the LLaVA
    layouts, the square block of patches one token is merged or pooled from for the other families.
    """

    n_tokens: int
    grids: tuple[Grid, ...]
    patch_size: int


def row_major_grid(trace: Trace, rows: int, cols: int, first_token: int) -> Grid:
    """``rows`` x ``cols`` cells on ``trace``'s canvas, one token each, numbered row-major from ``first_token``."""
    token_index = first_token + np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
    return Grid((Segment(tuple(trace.y), rows),), (Segment(tuple(trace.x), cols),), token_index)


def _single_grid(trace: Trace, geometry: Geometry, first_token: int) -> Grid:
    """The vision tower's square patch grid on ``trace``'s canvas, row-major from ``first_token``."""
    n = geometry.patches_per_side
    return row_major_grid(trace, n, n, first_token)


def tile_segments(prefix: list[Step], tile: list[Step], count: int, side: int, n_cells: int) -> tuple[Segment, ...]:
    """One axis of a canvas cut into ``count`` tiles of ``side`` pixels, ``n_cells`` cells each.

    ``prefix`` carries original pixels onto the canvas, ``tile`` carries a cut-out tile onto what the vision
    tower sees (empty when the tile is used as cut).
    """
    return tuple(Segment((*prefix, Step(Fraction(1), Fraction(-i * side), side), *tile), n_cells) for i in range(count))


def tiles_grid(canvas: Trace, rows: int, cols: int, side: int, per_side: int, first_token: int) -> Grid:
    """A canvas cut into ``rows`` x ``cols`` square tiles of ``side`` pixels, taken row-major, each tile's
    ``per_side`` x ``per_side`` tokens row-major within it (InternVL, Idefics3 / SmolVLM)."""
    y = tile_segments(canvas.y, [], rows, side, per_side)
    x = tile_segments(canvas.x, [], cols, side, per_side)
    r, c = np.arange(rows * per_side), np.arange(cols * per_side)
    tile = (r // per_side)[:, None] * cols + (c // per_side)[None, :]
    inner = (r % per_side)[:, None] * per_side + (c % per_side)[None, :]
    return Grid(y, x, (first_token + tile * per_side * per_side + inner).astype(np.int64))


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
        if not (pad.height and pad.width):
            raise VisheadsError(f"the image processor's pad_size must have height and width, got {dict(pad)}")
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
    if image.size is None or not image.size.shortest_edge:
        raise VisheadsError(f"the anyres image processor has neither crop_size nor size to cut tiles by, got size={image.size}")
    return image.size.shortest_edge


@dataclass(frozen=True)
class AnyresParts:
    """The pieces of an anyres image before the model packs the tile grid (LLaVA-NeXT, LLaVA-OneVision)."""

    base: Grid  # the base image's patches, tokens 0 .. n*n - 1
    y: tuple[Segment, ...]  # the tile grid's rows: one segment per tile row
    x: tuple[Segment, ...]  # the tile grid's columns: one segment per tile column
    kept: np.ndarray  # (kept_rows, kept_cols) cell numbers (row * grid_cols + col) that survive the model's unpadding
    grid_cols: int  # columns of cells in the whole tile grid


def anyres_parts(
    width: int, height: int, geometry: Geometry, unpad: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
) -> AnyresParts:
    """Base image and tile grid of an anyres processor; ``unpad`` is the model's own ``unpad_image``."""
    image, n = geometry.image, geometry.patches_per_side
    size = image.size
    if size is None:
        raise VisheadsError(f"the {ANYRES_LABELS.get(image.kind, 'anyres')} image processor has no size")
    base = Trace(height, width)
    if size.height and size.width:  # the base image is stretched, not cropped
        base.resize(size.height, size.width)
    elif size.shortest_edge:
        base.resize(size.shortest_edge, size.shortest_edge)
    else:
        raise VisheadsError(
            f"the {ANYRES_LABELS.get(image.kind, 'anyres')} image processor's size has neither height and width nor shortest_edge"
        )
    _resize_and_crop(base, image)
    _check_fits(base, geometry, "a base image")
    base_grid = _single_grid(base, geometry, 0)

    best_height, best_width = select_best_resolution((height, width), [list(p) for p in image.grid_pinpoints])
    new_height, new_width = get_patch_output_size(shape_only(height, width), (best_height, best_width), ChannelDimension.FIRST)
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

    # The model's own unpadding, applied to a map of cell numbers, tells which cells survive and in what order.
    cells = torch.arange(rows * n * cols * n).reshape(1, rows * n, cols * n)
    kept = unpad(cells, (height, width))[0].numpy()  # (kept_rows, kept_cols) cell numbers
    return AnyresParts(
        base_grid,
        tile_segments(canvas.y, tile.y, rows, side, n),
        tile_segments(canvas.x, tile.x, cols, side, n),
        kept,
        cols * n,
    )


def unpadded_tiles(parts: AnyresParts, first_token: int) -> tuple[Grid, int]:
    """The kept tile-grid cells, one token each, row by row with a newline token after each row.

    Returns the grid and the number of tokens it spans (newlines included), starting at ``first_token``.
    """
    kept_rows, kept_cols = parts.kept.shape
    rows = sum(segment.n_cells for segment in parts.y)
    token_index = np.full(rows * parts.grid_cols, -1, dtype=np.int64)
    row_starts = first_token + np.arange(kept_rows) * (kept_cols + 1)  # + 1: newline token
    token_index[parts.kept] = row_starts[:, None] + np.arange(kept_cols)[None, :]
    return Grid(parts.y, parts.x, token_index.reshape(rows, parts.grid_cols)), kept_rows * (kept_cols + 1)


def _anyres_layout(width: int, height: int, geometry: Geometry) -> TokenLayout:
    """LLaVA-NeXT: base image features, then the unpadded tile grid with a newline token after each row."""
    parts = anyres_parts(width, height, geometry, unpad_image)
    first = parts.base.token_index.size
    tiles, n_tile_tokens = unpadded_tiles(parts, first)
    return TokenLayout(first + n_tile_tokens, (parts.base, tiles), geometry.patch_size)


def token_layout(width: int, height: int, geometry: Geometry) -> TokenLayout:
    """The token layout of an original image of ``width`` x ``height`` pixels."""
    if geometry.image.kind == "llava_next":
        return _anyres_layout(width, height, geometry)
    return _plain_layout(width, height, geometry)
