"""Which token layout a model uses: a table from the layout name of its family to the function that lays it out.

A model's family is data (:func:`visheads_eval.families.family_of`); its ``layout`` names an entry of
:data:`LAYOUTS`. Every entry takes the original image's ``width`` and ``height``, the model's processor and
config, and returns the :class:`~visheads_eval.geometry.layout.TokenLayout` of that image's tokens.
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import PretrainedConfig, ProcessorMixin

from visheads_eval.errors import VisheadsError
from visheads_eval.families import family_of
from visheads_eval.geometry.layout import TokenLayout, token_layout
from visheads_eval.geometry.modern import (
    gemma3_layout,
    idefics3_layout,
    internvl_layout,
    onevision_layout,
    qwen_vl_layout,
)
from visheads_eval.geometry.settings import read_geometry

Layout = Callable[[int, int, ProcessorMixin, PretrainedConfig], TokenLayout]


def llava_layout(width: int, height: int, processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    """LLaVA-1.5, ViP-LLaVA and LLaVA-NeXT, read and cross-checked by :func:`read_geometry`."""
    return token_layout(width, height, read_geometry(processor, config))


LAYOUTS: dict[str, Layout] = {
    "llava": llava_layout,
    "llava_next": llava_layout,
    "llava_onevision": onevision_layout,
    "qwen_vl": qwen_vl_layout,
    "gemma3": gemma3_layout,
    "internvl": internvl_layout,
    "idefics3": idefics3_layout,
}


def layout_of(width: int, height: int, processor: ProcessorMixin, config: PretrainedConfig) -> TokenLayout:
    """The token layout of a ``width`` x ``height`` image for the model of ``config`` and its ``processor``."""
    try:
        family = family_of(config)
    except VisheadsError as error:
        raise VisheadsError(f"unsupported model type {getattr(config, 'model_type', None)!r} for region geometry: {error}") from None
    if family.layout not in LAYOUTS:
        raise VisheadsError(f"no region geometry for the '{family.layout}' layout of {family.label}")
    return LAYOUTS[family.layout](width, height, processor, config)
