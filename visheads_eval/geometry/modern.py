"""Token layouts of the families beyond LLaVA: Qwen-VL, Gemma 3, InternVL, Idefics3 / SmolVLM, LLaVA-OneVision.

Each layout function takes the original ``width`` and ``height``, the model's processor and config, reads
and cross-checks them (:mod:`visheads_eval.geometry.settings`) and returns a
:class:`~visheads_eval.geometry.layout.TokenLayout` whose cells are token footprints: the square of
processed pixels one token's feature is merged or pooled from.

- Qwen2-VL / Qwen2.5-VL / Qwen3-VL: the image is stretched to ``smart_resize``'s size (multiples of
  patch_size * merge_size, within min/max pixels); one token per merged cell of patch * merge pixels,
  row-major (the processor flattens patches merged-cell by merged-cell and the merger joins each run of
  merge**2 patches; Qwen2.5-VL's window attention permutes cells and puts them back before the merger's
  output is used).
- Gemma 3: the image is stretched to ``size``; the projector average-pools the patch grid into k x k tokens,
  row-major, each from a square of patch * (patches per side / k) pixels. With pan-and-scan on, the crops
  the image processor's own ``pan_and_scan`` cuts follow the whole image, k * k tokens each, in its order.
- InternVL: GotOcr2's best tile grid (``get_optimal_tiled_canvas``), the image stretched to
  (cols * tile, rows * tile) and cut into tiles taken row-major, then a thumbnail (the whole image stretched
  to one tile) when there is more than one tile; pixel shuffle makes each tile k x k tokens, row-major, each
  from a square of patch / downsample_ratio pixels.
- Idefics3 / SmolVLM: longest edge resized (the image processor's module's ``get_resize_output_image_size``),
  the canvas grown to multiples of the tile (the image processor's own ``resize_for_vision_encoder``), cut
  into tiles row-major, then the global image (the canvas stretched to one tile); pixel shuffle makes each
  k x k tokens row-major, each from a square of patch * scale_factor pixels. The row/column tags between
  tiles are text tokens.
- LLaVA-OneVision: LLaVA-NeXT's anyres (base image, then the unpadded tile grid with a newline token per
  row); when the unpadded grid is more than 1.1 times the linear size of ``anyres_max_N`` tiles, the model
  bilinearly downsamples it (``nn.functional.interpolate``, ``align_corners=False``). A downsampled token's
  footprint is the union of the source patches with a non-zero bilinear weight in it, always a rectangle of
  1-2 x 1-2 patches; the weights are read from ``interpolate`` itself, so they are torch's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import PretrainedConfig, ProcessorMixin
from transformers.image_utils import SizeDict
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
from transformers.models.idefics3.image_processing_pil_idefics3 import (
    get_resize_output_image_size as idefics3_resize_output_size,
)
from transformers.models.llava_onevision.modeling_llava_onevision import unpad_image as onevision_unpad_image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
from transformers.models.smolvlm.image_processing_pil_smolvlm import (
    get_resize_output_image_size as smolvlm_resize_output_size,
)

from visheads_eval.errors import VisheadsError
from visheads_eval.geometry.layout import (
    Grid,
    TokenLayout,
    Trace,
    anyres_parts,
    row_major_grid,
    shape_only,
    tiles_grid,
    unpadded_tiles,
)
from visheads_eval.geometry.settings import (
    Gemma3Settings,
    read_gemma3,
    read_idefics3,
    read_internvl,
    read_onevision_geometry,
    read_qwen_vl,
)


def _fits(trace: Trace, height: int, width: int, what: str) -> None:
    """One line when the processor's ``what`` is not the ``height`` x ``width`` the vision tower takes."""
    if (trace.height, trace.width) != (height, width):
        raise VisheadsError(
            f"the processor makes {what} of {trace.height}x{trace.width} pixels but the vision tower takes "
            f"{height}x{width}; the model cannot run this processor's output (check size and do_resize)"
        )


# ----------------------------------------------------------------------------------------------------
# Qwen2-VL, Qwen2.5-VL, Qwen3-VL
# ----------------------------------------------------------------------------------------------------


def qwen_vl_layout(width: int, height: int, processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    """One image stretched by ``smart_resize``; a token per merged cell, row-major."""
    settings = read_qwen_vl(processor, config)
    cell = settings.cell
    trace = Trace(height, width)
    if settings.do_resize:
        try:
            new_height, new_width = smart_resize(height, width, factor=cell, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
        except ValueError as error:
            raise VisheadsError(f"the Qwen-VL processor refuses a {width}x{height} image: {error}") from None
        trace.resize(new_height, new_width)
    elif height % cell or width % cell:
        raise VisheadsError(
            f"with do_resize=False a {width}x{height} image is not a multiple of the {cell} px "
            "merged cell, which the Qwen-VL processor cannot patchify"
        )
    grid = row_major_grid(trace, trace.height // cell, trace.width // cell, 0)
    return TokenLayout(grid.token_index.size, (grid,), cell)


# ----------------------------------------------------------------------------------------------------
# Gemma 3
# ----------------------------------------------------------------------------------------------------


def pan_and_scan_crops(settings: Gemma3Settings, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """The crops Gemma 3's pan-and-scan cuts from a ``height`` x ``width`` image: ``(top, left, height, width)``.

    Runs the image processor's own ``pan_and_scan`` (``pan_and_scan_batched`` on the torchvision backend) on
    two images that cost no memory, one whose pixels hold their row number and one their column number, so
    each crop's first pixel says where it was cut and its shape how big it is.
    """
    options = settings.pan_and_scan
    if options is None:
        return []
    image_processor = settings.image_processor
    kwargs = {
        "pan_and_scan_min_crop_size": options.min_crop_size,
        "pan_and_scan_max_num_crops": options.max_num_crops,
        "pan_and_scan_min_ratio_to_activate": options.min_ratio_to_activate,
    }

    def crops(image: np.ndarray) -> list[np.ndarray]:
        """The image processor's crops of ``image`` (1, height, width)."""
        if hasattr(image_processor, "pan_and_scan"):
            return list(image_processor.pan_and_scan(image=image, **kwargs))
        return [crop[0] for crop in image_processor.pan_and_scan_batched(images=image[None], **kwargs)]

    rows = crops(np.broadcast_to(np.arange(height)[None, :, None], (1, height, width)))
    cols = crops(np.broadcast_to(np.arange(width)[None, None, :], (1, height, width)))
    return [(int(r[0, 0, 0]), int(c[0, 0, 0]), int(r.shape[-2]), int(r.shape[-1])) for r, c in zip(rows, cols, strict=False)]


def gemma3_layout(width: int, height: int, processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    """The image stretched to ``size`` (then any pan-and-scan crops, each stretched); k x k pooled tokens each."""
    settings = read_gemma3(processor, config)
    per_side = settings.tokens_per_side
    views = [(0, 0, height, width), *pan_and_scan_crops(settings, height, width)]
    grids = []
    for i, (top, left, crop_height, crop_width) in enumerate(views):
        trace = Trace(height, width)
        if i:
            trace.move(-top, -left, crop_height, crop_width)
        if settings.do_resize:
            trace.resize(settings.height, settings.width)
        _fits(trace, settings.vision_size, settings.vision_size, "an image" if i == 0 else "a pan-and-scan crop")
        grids.append(row_major_grid(trace, per_side, per_side, i * per_side * per_side))
    return TokenLayout(len(grids) * per_side * per_side, tuple(grids), settings.cell)


# ----------------------------------------------------------------------------------------------------
# InternVL
# ----------------------------------------------------------------------------------------------------


def internvl_layout(width: int, height: int, processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    """GotOcr2 tiles row-major, then the thumbnail when there is more than one tile; k x k tokens per tile."""
    settings = read_internvl(processor, config)
    tile, per_side = settings.tile, settings.tokens_per_side
    per_tile = per_side * per_side
    if settings.crop_to_patches and settings.max_patches > 1:  # GotOcr2ImageProcessor.crop_image_to_patches
        cols, rows = get_optimal_tiled_canvas((height, width), (tile, tile), settings.min_patches, settings.max_patches)
        canvas = Trace(height, width)
        canvas.resize(rows * tile, cols * tile)  # always, whatever do_resize says
        grids = [tiles_grid(canvas, rows, cols, tile, per_side, 0)]
        if rows * cols > 1:
            thumbnail = Trace(height, width)
            thumbnail.resize(tile, tile)
            grids.append(row_major_grid(thumbnail, per_side, per_side, rows * cols * per_tile))
        return TokenLayout(per_tile * (rows * cols + len(grids) - 1), tuple(grids), settings.cell)
    trace = Trace(height, width)
    if settings.do_resize:
        trace.resize(tile, tile)
    _fits(trace, tile, tile, "an image")
    return TokenLayout(per_tile, (row_major_grid(trace, per_side, per_side, 0),), settings.cell)


# ----------------------------------------------------------------------------------------------------
# Idefics3, SmolVLM
# ----------------------------------------------------------------------------------------------------


class _SizeRecorder:
    """Stands in for an image processor whose methods compute a size and then call ``self.resize``: the
    resize only makes an empty image of that size, so running the method tells the size it chose."""

    def resize(self, image: Any, size: SizeDict, resample: Any = None, **kwargs: Any) -> torch.Tensor:
        """An image of ``size`` that costs no memory."""
        if size.height is None or size.width is None:
            raise VisheadsError(f"the image processor resized to {dict(size)}, which has no height and width")
        return torch.empty(()).expand(1, size.height, size.width)


def _vision_encoder_size(image_processor: Any, height: int, width: int, tile: int) -> tuple[int, int]:
    """The canvas ``resize_for_vision_encoder`` (the image processor's own method) grows an image to."""
    image = torch.empty(()).expand(1, height, width)
    resized = type(image_processor).resize_for_vision_encoder(_SizeRecorder(), image, tile)
    new_height, new_width = resized.shape[-2:]
    return int(new_height), int(new_width)


_LONGEST_EDGE_SIZE: dict[str, Callable[..., tuple[int, int]]] = {
    "Idefics3ImageProcessor": idefics3_resize_output_size,
    "SmolVLMImageProcessor": smolvlm_resize_output_size,
}


def _longest_edge_size(image_processor: Any, height: int, width: int, longest_edge: int) -> tuple[int, int]:
    """The size the image processor's ``resize`` gives for ``size={"longest_edge": ...}``, by its module's helper."""
    for cls in type(image_processor).__mro__:
        helper = _LONGEST_EDGE_SIZE.get(cls.__name__.removesuffix("Pil"))
        if helper is not None:
            new_height, new_width = helper(shape_only(height, width), resolution_max_side=longest_edge)
            return int(new_height), int(new_width)
    raise VisheadsError(f"unsupported image processor {type(image_processor).__name__} for Idefics3 / SmolVLM")


def idefics3_layout(width: int, height: int, processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    """Tiles of the resized canvas row-major, then the global image; k x k tokens each (Idefics3, SmolVLM)."""
    settings = read_idefics3(processor, config)
    tile, per_side = settings.tile, settings.tokens_per_side
    per_tile = per_side * per_side
    trace = Trace(height, width)
    size = settings.size
    if settings.do_resize and size is not None:  # read_idefics3 checked that resizing has a size
        if size.longest_edge:
            trace.resize(*_longest_edge_size(settings.image_processor, height, width, size.longest_edge))
        elif size.height and size.width:
            trace.resize(size.height, size.width)
    if not settings.do_image_splitting:
        trace.resize(tile, tile)
        return TokenLayout(per_tile, (row_major_grid(trace, per_side, per_side, 0),), settings.cell)
    trace.resize(*_vision_encoder_size(settings.image_processor, trace.height, trace.width, tile))
    if trace.height <= tile and trace.width <= tile:  # split_images keeps it whole, no global image
        _fits(trace, tile, tile, "an image")
        return TokenLayout(per_tile, (row_major_grid(trace, per_side, per_side, 0),), settings.cell)
    if trace.height % tile or trace.width % tile:
        raise VisheadsError(f"the {trace.width}x{trace.height} canvas is not a multiple of the {tile} px tile")
    rows, cols = trace.height // tile, trace.width // tile
    whole = trace.copy()
    whole.resize(tile, tile)
    grids = (
        tiles_grid(trace, rows, cols, tile, per_side, 0),
        row_major_grid(whole, per_side, per_side, rows * cols * per_tile),
    )
    return TokenLayout((rows * cols + 1) * per_tile, grids, settings.cell)


# ----------------------------------------------------------------------------------------------------
# LLaVA-OneVision
# ----------------------------------------------------------------------------------------------------


def bilinear_sources(n_in: int, n_out: int) -> np.ndarray:
    """For each of ``n_out`` outputs of a 1-D bilinear resize from ``n_in``, the run ``[first, end)`` of inputs
    with a non-zero weight in it: ``(n_out, 2)`` int64.

    Read off ``nn.functional.interpolate(mode="bilinear")`` itself (as ``LlavaOnevisionModel.pack_image_features``
    calls it) applied to one-hot rows, so the weights are torch's own; a 2-D bilinear weight is the product of
    the two axes' weights, so a 2-D footprint is the product of the two runs.
    """
    one_hot = torch.eye(n_in, dtype=torch.float32).reshape(1, n_in, n_in, 1)  # channel c: 1 at input c
    weights = torch.nn.functional.interpolate(one_hot, [n_out, 1], mode="bilinear")[0, :, :, 0]  # (n_in, n_out)
    nonzero = (weights != 0).numpy()
    first = nonzero.argmax(axis=0)
    end = n_in - nonzero[::-1].argmax(axis=0)
    if not (nonzero.any(axis=0).all() and (nonzero.sum(axis=0) == end - first).all()):
        raise VisheadsError(f"bilinear resizing {n_in} -> {n_out} does not take each output from a run of inputs")
    return np.stack([first, end], axis=1).astype(np.int64)


def onevision_layout(width: int, height: int, processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    """LLaVA-NeXT's anyres, with the tile grid bilinearly downsampled when it exceeds ``anyres_max_N`` tiles."""
    geometry = read_onevision_geometry(processor, config)
    parts = anyres_parts(width, height, geometry, onevision_unpad_image)
    first = parts.base.token_index.size
    n = geometry.patches_per_side
    kept_rows, kept_cols = parts.kept.shape
    # LlavaOnevisionModel.pack_image_features, to the letter:
    if geometry.anyres_max is None:
        raise VisheadsError("LLaVA-OneVision's geometry needs vision_aspect_ratio anyres_max_N")
    ratio = math.sqrt(kept_rows * kept_cols / (geometry.anyres_max * n**2))
    if not ratio > 1.1:
        tiles, n_tile_tokens = unpadded_tiles(parts, first)
        return TokenLayout(first + n_tile_tokens, (parts.base, tiles), geometry.patch_size)
    out_rows, out_cols = int(kept_rows // ratio), int(kept_cols // ratio)
    if out_rows < 1 or out_cols < 1:
        raise VisheadsError(
            f"LLaVA-OneVision would downsample the {width}x{height} image's tile grid to "
            f"{out_rows}x{out_cols} features, which the model cannot do"
        )
    top, left = divmod(int(parts.kept[0, 0]), parts.grid_cols)  # where the unpadded block starts in the grid
    token_index = first + np.arange(out_rows)[:, None] * (out_cols + 1) + np.arange(out_cols)[None, :]  # + newline
    tiles = Grid(
        parts.y,
        parts.x,
        token_index.astype(np.int64),
        row_cells=bilinear_sources(kept_rows, out_rows) + top,
        col_cells=bilinear_sources(kept_cols, out_cols) + left,
    )
    return TokenLayout(first + out_rows * (out_cols + 1), (parts.base, tiles), geometry.patch_size)
