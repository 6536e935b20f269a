"""Read what a processor and a model do to an image from their settings, and check they agree.

The processor decides the pixels and how many image tokens the prompt gets; the model decides which
vision feature lands on which of those tokens. Both backends of each image processor (the PIL one used
on machines without torchvision, the torchvision one) are read the same way, through their attributes,
overlaid with the processor's own ``images_kwargs`` defaults exactly as ``ProcessorMixin`` merges them
when it calls the image processor (:func:`effective_setting`). Anything this module cannot map faithfully
raises :class:`~visheads_eval.errors.VisheadsError` rather than guessing.

One reader per layout of :mod:`visheads_eval.geometry.layouts`: :func:`read_geometry` for LLaVA-1.5,
ViP-LLaVA and LLaVA-NeXT, :func:`read_onevision_geometry`, :func:`read_qwen_vl`, :func:`read_gemma3`,
:func:`read_internvl` and :func:`read_idefics3`. Each checks the processor against the model config where
a disagreement would make the model reject the processor's output or pair features with the wrong tokens.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from transformers import PretrainedConfig, ProcessorMixin
from transformers.image_processing_backends import PilBackend, TorchvisionBackend
from transformers.image_processing_utils import get_size_dict
from transformers.image_utils import SizeDict

from visheads_eval.errors import VisheadsError

# Image-processor classes (either backend; "Pil" suffix dropped) -> how they process one image.
#   "generic":   resize, centre crop, then pad bottom/right to pad_size (the backends' own _preprocess)
#   "llava":     pad to a centred square first (do_pad), then resize and centre crop (LLaVA-1.5 recipe)
#   "llava_next": anyres tiling (base image stretched to size, plus tiles of the best grid pinpoint)
_KNOWN_IMAGE_PROCESSORS = {"LlavaImageProcessor": "llava", "LlavaNextImageProcessor": "llava_next"}
_PROCESSOR_FOR = {"llava": "LlavaProcessor", "generic": "LlavaProcessor", "llava_next": "LlavaNextProcessor"}
ANYRES_LABELS = {"llava_next": "LLaVA-NeXT", "llava_onevision": "LLaVA-OneVision"}  # anyres kinds, as named
# Model types and the vision-feature selection their modeling code applies.
_MODEL_TYPES = ("llava", "llava_next", "vipllava")


@dataclass(frozen=True)
class ImageSettings:
    """The image processor's effective settings for one call without extra keyword arguments."""

    kind: str  # "generic" | "llava" | "llava_next" | "llava_onevision"
    backend: str  # "pil" | "torchvision"
    do_resize: bool
    size: SizeDict | None
    do_center_crop: bool
    crop_size: SizeDict | None
    do_pad: bool
    pad_size: SizeDict | None
    grid_pinpoints: tuple[tuple[int, int], ...]  # (height, width) each; empty unless kind == "llava_next"


@dataclass(frozen=True)
class Geometry:
    """Everything needed to lay out one image's tokens: processor steps and the model's feature layout."""

    image: ImageSettings
    vision_size: int  # side of the square the vision tower takes (vision_config.image_size)
    patch_size: int  # vision_config.patch_size
    leading_tokens: int  # non-patch vision tokens the model keeps before the patches (CLS under "full")
    anyres_max: int | None = None  # LLaVA-OneVision's N in vision_aspect_ratio="anyres_max_N"; None otherwise

    @property
    def patches_per_side(self) -> int:
        return self.vision_size // self.patch_size


def _class_names(obj: Any) -> set[str]:
    return {cls.__name__.removesuffix("Pil") for cls in type(obj).__mro__}


def _image_kind(image_processor: Any) -> str:
    names = _class_names(image_processor)
    for name, kind in _KNOWN_IMAGE_PROCESSORS.items():
        if name in names:
            return kind
    generic = (PilBackend._preprocess, TorchvisionBackend._preprocess)
    if getattr(type(image_processor), "_preprocess", None) in generic:
        return "generic"
    raise VisheadsError(
        f"unsupported image processor {type(image_processor).__name__}: region geometry knows "
        "CLIPImageProcessor-style (resize + centre crop), LlavaImageProcessor and LlavaNextImageProcessor"
    )


def _size_dict(value: Any, name: str, default_to_square: bool) -> SizeDict | None:
    if value is None or isinstance(value, SizeDict):
        return value
    if name == "size":
        return SizeDict(**get_size_dict(value, default_to_square=default_to_square))
    return SizeDict(**get_size_dict(value, param_name=name))


def _image_processor(processor: ProcessorMixin) -> Any:
    """The processor's image processor; one line if it has none."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        raise VisheadsError(f"{type(processor).__name__} has no image_processor; pass the model's loaded processor")
    return image_processor


def effective_setting(processor: ProcessorMixin, name: str) -> Any:
    """The value of image setting ``name`` when ``processor`` is called plainly: the processor's own
    ``images_kwargs`` default if it has one (it overrides the image processor), else the image processor's."""
    defaults = getattr(processor, "images_kwargs", None)
    defaults = defaults if isinstance(defaults, dict) else {}
    return defaults[name] if name in defaults else getattr(_image_processor(processor), name, None)


def read_image_settings(processor: ProcessorMixin) -> ImageSettings:
    """The settings the processor's image processor will use when the processor is called plainly."""
    return _read_image_settings(processor, _image_kind(_image_processor(processor)))


def _read_image_settings(processor: ProcessorMixin, kind: str) -> ImageSettings:
    """:func:`read_image_settings` for an image processor already known to be of ``kind``."""
    image_processor = _image_processor(processor)
    backend = getattr(image_processor, "backend", None)
    if backend not in ("pil", "torchvision"):
        raise VisheadsError(f"image processor {type(image_processor).__name__} has unknown backend {backend!r}")

    def setting(name: str) -> Any:
        return effective_setting(processor, name)

    default_to_square = bool(setting("default_to_square"))
    anyres = kind in ("llava_next", "llava_onevision")
    pinpoints = setting("image_grid_pinpoints") if anyres else None
    if anyres and not pinpoints:
        raise VisheadsError(f"the {ANYRES_LABELS[kind]} image processor has no image_grid_pinpoints")
    return ImageSettings(
        kind=kind,
        backend=backend,
        do_resize=bool(setting("do_resize")),
        size=_size_dict(setting("size"), "size", default_to_square),
        do_center_crop=bool(setting("do_center_crop")),
        crop_size=_size_dict(setting("crop_size"), "crop_size", default_to_square),
        do_pad=bool(setting("do_pad")),
        pad_size=_size_dict(setting("pad_size"), "pad_size", default_to_square),
        grid_pinpoints=tuple((int(h), int(w)) for h, w in pinpoints or ()),
    )


def _model_strategy(config: PretrainedConfig) -> str:
    """The vision_feature_select_strategy the model's modeling code applies."""
    model_type = getattr(config, "model_type", None)
    if model_type not in _MODEL_TYPES:
        raise VisheadsError(f"unsupported model type {model_type!r} for region geometry; supported: {', '.join(_MODEL_TYPES)}")
    if model_type == "vipllava":
        return "default"  # VipLlavaModel always drops the first (CLS) vision token
    strategy = getattr(config, "vision_feature_select_strategy", None)
    if strategy not in ("default", "full"):
        raise VisheadsError(f"unknown vision_feature_select_strategy {strategy!r} in the model config")
    return strategy


def read_geometry(processor: Any, config: PretrainedConfig) -> Geometry:
    """Read and cross-check the processor (a LLaVA, LLaVA-NeXT or ViP-LLaVA one: ``patch_size``,
    ``vision_feature_select_strategy`` and ``num_additional_image_tokens`` are theirs) and the model config.

    Raises :class:`VisheadsError` when they disagree in a way that would make the model reject the
    processor's output (patch size, feature selection, grid pinpoints), so that a mask is never built
    for a layout the model does not use.
    """
    image = read_image_settings(processor)
    expected = _PROCESSOR_FOR[image.kind]
    if expected not in _class_names(processor):
        raise VisheadsError(
            f"unsupported processor {type(processor).__name__} with {type(processor.image_processor).__name__}; expected a {expected}"
        )
    model_type = getattr(config, "model_type", None)
    if (model_type == "llava_next") != (image.kind == "llava_next"):
        raise VisheadsError(
            f"processor {type(processor).__name__} does not belong to a model of type {model_type!r}; "
            "load the processor saved with the model"
        )
    strategy = _model_strategy(config)
    vision = config.vision_config
    vision_size, patch_size = int(vision.image_size), int(vision.patch_size)
    if processor.patch_size != patch_size:
        raise VisheadsError(f"the processor's patch_size ({processor.patch_size}) differs from the vision tower's ({patch_size})")
    processor_strategy = processor.vision_feature_select_strategy or "full"
    if processor_strategy != strategy:
        raise VisheadsError(
            f"the processor counts image tokens with vision_feature_select_strategy={processor_strategy!r} but the model uses {strategy!r}"
        )
    extra = int(processor.num_additional_image_tokens or 0)
    leading = extra - (1 if strategy == "default" else 0)
    if leading < 0:
        raise VisheadsError(
            "the model drops the first vision token ('default' strategy) but the processor says the vision "
            "tower adds none (num_additional_image_tokens=0): a patch would be dropped"
        )
    if image.kind == "llava_next":
        if leading != 0:
            raise VisheadsError(
                "LLaVA-NeXT with a kept CLS token ('full' strategy) cannot pack its tiles into a grid; "
                "use vision_feature_select_strategy='default'"
            )
        model_pinpoints = tuple((int(h), int(w)) for h, w in getattr(config, "image_grid_pinpoints", None) or ())
        if model_pinpoints != image.grid_pinpoints:
            raise VisheadsError(
                f"the processor tiles on image_grid_pinpoints {list(map(list, image.grid_pinpoints))} but the "
                f"model packs features for {list(map(list, model_pinpoints))}"
            )
    return Geometry(image=image, vision_size=vision_size, patch_size=patch_size, leading_tokens=leading)


# ----------------------------------------------------------------------------------------------------
# The families beyond LLaVA: each reader checks the processor is the family's own, reads its effective
# settings and cross-checks them against the model config.
# ----------------------------------------------------------------------------------------------------


def _family_image_processor(processor: ProcessorMixin, names: tuple[str, ...], family: str) -> Any:
    """The processor's image processor, if it is one of ``names`` (either backend); one line otherwise."""
    image_processor = _image_processor(processor)
    if not _class_names(image_processor) & set(names):
        raise VisheadsError(
            f"a {family} model needs its own image processor ({' or '.join(names)}), got "
            f"{type(image_processor).__name__}; load the processor saved with the model"
        )
    if getattr(image_processor, "backend", None) not in ("pil", "torchvision"):
        raise VisheadsError(
            f"image processor {type(image_processor).__name__} has unknown backend {getattr(image_processor, 'backend', None)!r}"
        )
    return image_processor


def _vision_side(config: PretrainedConfig, name: str) -> int:
    """``config.vision_config.<name>`` as one side in pixels (an int, or a square ``[side, side]`` pair)."""
    value = getattr(getattr(config, "vision_config", None), name, None)
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise VisheadsError(f"vision_config.{name}={list(value)} is not square; region geometry needs square patches")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise VisheadsError(f"the model config has no usable vision_config.{name} (got {value!r})")
    return value


def _whole(value: Any, name: str) -> int:
    """A setting that must be a positive whole number."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise VisheadsError(f"{name} must be a positive whole number, got {value!r}")
    return value


def _merge_factor(patches: int, factor: Any, name: str) -> int:
    """How many patches per side one token merges (``factor``), checked to tile a side of ``patches`` patches."""
    if isinstance(factor, float) and factor.is_integer():
        factor = int(factor)
    factor = _whole(factor, name)
    if patches % factor:
        raise VisheadsError(f"{name}={factor} does not divide the vision tower's {patches} patches per side")
    return factor


def _check_seq_length(processor_value: Any, model_value: int, what: str) -> None:
    """One line when the processor writes a different number of image tokens per ``what`` than the model fills."""
    if processor_value != model_value:
        raise VisheadsError(
            f"the processor writes {processor_value} image tokens per {what} but the model makes {model_value} "
            "features; load the processor saved with the model"
        )


@dataclass(frozen=True)
class QwenSettings:
    """Qwen2-VL, Qwen2.5-VL, Qwen3-VL: one image stretched by ``smart_resize``, one token per merged cell."""

    do_resize: bool
    min_pixels: int  # size["shortest_edge"]
    max_pixels: int  # size["longest_edge"]
    cell: int  # patch_size * merge_size: the side, in processed pixels, of the square one token comes from


def read_qwen_vl(processor: ProcessorMixin, config: PretrainedConfig) -> QwenSettings:
    """Read a ``Qwen2VLImageProcessor`` and check its patch and merge sizes against the vision tower's."""
    _family_image_processor(processor, ("Qwen2VLImageProcessor",), "Qwen-VL")
    patch = _whole(effective_setting(processor, "patch_size"), "the image processor's patch_size")
    merge = _whole(effective_setting(processor, "merge_size"), "the image processor's merge_size")
    model_patch = _vision_side(config, "patch_size")
    model_merge = _whole(getattr(config.vision_config, "spatial_merge_size", None), "vision_config.spatial_merge_size")
    if (patch, merge) != (model_patch, model_merge):
        raise VisheadsError(
            f"the processor cuts {patch} px patches merged {merge}x{merge} but the vision tower takes {model_patch} px "
            f"patches merged {model_merge}x{model_merge}; load the processor saved with the model"
        )
    do_resize = bool(effective_setting(processor, "do_resize"))
    size = _size_dict(effective_setting(processor, "size"), "size", default_to_square=False)
    min_pixels = max_pixels = 0
    if do_resize:
        if size is None or not (size.shortest_edge and size.longest_edge):
            raise VisheadsError(
                f"the Qwen-VL image processor's size must have shortest_edge and longest_edge (min and "
                f"max pixels), got {dict(size) if size is not None else None}"
            )
        min_pixels, max_pixels = int(size.shortest_edge), int(size.longest_edge)
    return QwenSettings(
        do_resize=do_resize,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        cell=patch * merge,
    )


@dataclass(frozen=True)
class PanAndScan:
    """Gemma 3's pan-and-scan settings (``Gemma3ImageProcessor.pan_and_scan``)."""

    min_crop_size: int
    max_num_crops: int
    min_ratio_to_activate: float


@dataclass(frozen=True)
class Gemma3Settings:
    """Gemma 3: the image (and any pan-and-scan crops) stretched to ``size``, patches average-pooled k x k."""

    do_resize: bool
    height: int  # size["height"]
    width: int  # size["width"]
    vision_size: int  # the square the vision tower takes
    tokens_per_side: int  # sqrt(mm_tokens_per_image)
    cell: int  # pooling kernel * patch size: the side, in processed pixels, of the square one token comes from
    pan_and_scan: PanAndScan | None  # None when pan-and-scan is off
    image_processor: Any = field(compare=False, repr=False)  # its own pan_and_scan decides the crops


def read_gemma3(processor: ProcessorMixin, config: PretrainedConfig) -> Gemma3Settings:
    """Read a ``Gemma3ImageProcessor`` and check it against the vision tower and ``mm_tokens_per_image``."""
    image_processor = _family_image_processor(processor, ("Gemma3ImageProcessor",), "Gemma 3")
    vision_size, patch = _vision_side(config, "image_size"), _vision_side(config, "patch_size")
    n_tokens = _whole(getattr(config, "mm_tokens_per_image", None), "the model's mm_tokens_per_image")
    per_side = math.isqrt(n_tokens)
    if per_side * per_side != n_tokens:
        raise VisheadsError(f"mm_tokens_per_image={n_tokens} is not a square; Gemma 3 pools a square grid")
    kernel = _merge_factor(vision_size // patch, (vision_size // patch) // per_side, "the pooling kernel")
    if kernel * per_side != vision_size // patch:
        raise VisheadsError(
            f"{per_side} x {per_side} tokens do not evenly pool the vision tower's {vision_size // patch} x {vision_size // patch} patches"
        )
    _check_seq_length(getattr(processor, "image_seq_length", None), n_tokens, "image")
    size = _size_dict(effective_setting(processor, "size"), "size", default_to_square=True)
    if size is None or not (size.height and size.width):
        raise VisheadsError(f"the Gemma 3 image processor's size must have height and width, got {size}")
    pan_and_scan = None
    if effective_setting(processor, "do_pan_and_scan"):
        values = [
            effective_setting(processor, f"pan_and_scan_{name}") for name in ("min_crop_size", "max_num_crops", "min_ratio_to_activate")
        ]
        if any(v is None for v in values):
            raise VisheadsError("Gemma 3 pan-and-scan is on but its min_crop_size, max_num_crops or min_ratio_to_activate is unset")
        pan_and_scan = PanAndScan(int(values[0]), int(values[1]), float(values[2]))
    return Gemma3Settings(
        do_resize=bool(effective_setting(processor, "do_resize")),
        height=int(size.height),
        width=int(size.width),
        vision_size=vision_size,
        tokens_per_side=per_side,
        cell=kernel * patch,
        pan_and_scan=pan_and_scan,
        image_processor=image_processor,
    )


@dataclass(frozen=True)
class InternVLSettings:
    """InternVL: GotOcr2 tiles (plus a thumbnail), each pixel-shuffled into k x k tokens."""

    do_resize: bool
    tile: int  # size["height"] == size["width"] == the vision tower's image size
    crop_to_patches: bool
    min_patches: int
    max_patches: int
    tokens_per_side: int  # k = patches per side * downsample_ratio
    cell: int  # patch size / downsample_ratio: the side, in processed pixels, of the square one token comes from


def read_internvl(processor: ProcessorMixin, config: PretrainedConfig) -> InternVLSettings:
    """Read a ``GotOcr2ImageProcessor`` and check it against InternVL's vision tower and pixel shuffle."""
    _family_image_processor(processor, ("GotOcr2ImageProcessor",), "InternVL")
    vision_size, patch = _vision_side(config, "image_size"), _vision_side(config, "patch_size")
    strategy = getattr(config, "vision_feature_select_strategy", None)
    if strategy != "default":
        raise VisheadsError(
            f"InternVL with vision_feature_select_strategy={strategy!r}: only 'default' (CLS dropped) leaves the "
            "square patch grid its pixel shuffle needs"
        )
    ratio = getattr(config, "downsample_ratio", None)
    if not isinstance(ratio, (int, float)) or ratio <= 0:
        raise VisheadsError(f"the InternVL config has no usable downsample_ratio (got {ratio!r})")
    merge = _merge_factor(vision_size // patch, 1 / ratio, "1 / downsample_ratio")
    per_side = vision_size // patch // merge
    _check_seq_length(getattr(processor, "image_seq_length", None), per_side * per_side, "tile")
    size = _size_dict(effective_setting(processor, "size"), "size", default_to_square=True)
    if size is None or not (size.height and size.width) or size.height != size.width:
        raise VisheadsError(f"the GotOcr2 image processor's size must be a square height x width, got {size}")
    if size.height != vision_size:
        raise VisheadsError(
            f"the processor makes tiles of {size.height} px but the vision tower takes "
            f"{vision_size} px; load the processor saved with the model"
        )
    return InternVLSettings(
        do_resize=bool(effective_setting(processor, "do_resize")),
        tile=int(size.height),
        crop_to_patches=bool(effective_setting(processor, "crop_to_patches")),
        min_patches=_whole(effective_setting(processor, "min_patches"), "min_patches"),
        max_patches=_whole(effective_setting(processor, "max_patches"), "max_patches"),
        tokens_per_side=per_side,
        cell=patch * merge,
    )


@dataclass(frozen=True)
class Idefics3Settings:
    """Idefics3 and SmolVLM: longest edge resized, cut into square tiles plus a global image, pixel-shuffled."""

    do_resize: bool
    size: SizeDict | None  # the first resize: longest_edge, or height and width
    do_image_splitting: bool
    tile: int  # max_image_size["longest_edge"] == the vision tower's image size
    tokens_per_side: int  # patches per side / scale_factor
    cell: int  # patch size * scale_factor: the side, in processed pixels, of the square one token comes from
    image_processor: Any = field(compare=False, repr=False)  # its own resize_for_vision_encoder sizes the canvas


def read_idefics3(processor: ProcessorMixin, config: PretrainedConfig) -> Idefics3Settings:
    """Read an ``Idefics3ImageProcessor`` / ``SmolVLMImageProcessor`` and check it against the vision tower."""
    image_processor = _family_image_processor(processor, ("Idefics3ImageProcessor", "SmolVLMImageProcessor"), "Idefics3 / SmolVLM")
    vision_size, patch = _vision_side(config, "image_size"), _vision_side(config, "patch_size")
    scale = _merge_factor(vision_size // patch, getattr(config, "scale_factor", None), "the model's scale_factor")
    per_side = vision_size // patch // scale
    _check_seq_length(getattr(processor, "image_seq_len", None), per_side * per_side, "tile")
    max_image_size = effective_setting(processor, "max_image_size")
    tile = max_image_size.get("longest_edge") if isinstance(max_image_size, dict) else getattr(max_image_size, "longest_edge", None)
    if tile != vision_size:
        raise VisheadsError(
            f"the processor makes tiles of max_image_size={tile} px but the vision tower takes "
            f"{vision_size} px; load the processor saved with the model"
        )
    do_resize = bool(effective_setting(processor, "do_resize"))
    size = _size_dict(effective_setting(processor, "size"), "size", default_to_square=False)
    if do_resize and (size is None or not (size.longest_edge or (size.height and size.width))):
        raise VisheadsError(f"the Idefics3 image processor's size must have longest_edge or height and width, got {size}")
    return Idefics3Settings(
        do_resize=do_resize,
        size=size,
        do_image_splitting=bool(effective_setting(processor, "do_image_splitting")),
        tile=int(tile),
        tokens_per_side=per_side,
        cell=patch * scale,
        image_processor=image_processor,
    )


def read_onevision_geometry(processor: ProcessorMixin, config: PretrainedConfig) -> Geometry:
    """Read a ``LlavaOnevisionImageProcessor`` (anyres like LLaVA-NeXT) and check it against the model.

    The vision tower is SigLIP (no CLS), so the model must keep every feature ('full'); the processor and the
    model must agree on the tile pinpoints, the tokens per tile and ``vision_aspect_ratio="anyres_max_N"``.
    """
    _family_image_processor(processor, ("LlavaOnevisionImageProcessor",), "LLaVA-OneVision")
    image = _read_image_settings(processor, "llava_onevision")
    vision_size, patch = _vision_side(config, "image_size"), _vision_side(config, "patch_size")
    for source, strategy in (
        ("model", getattr(config, "vision_feature_select_strategy", None)),
        ("processor", getattr(processor, "vision_feature_select_strategy", None) or "full"),
    ):
        if strategy != "full":
            raise VisheadsError(
                f"LLaVA-OneVision's {source} uses vision_feature_select_strategy={strategy!r}; its SigLIP tower has "
                "no CLS token, so only 'full' keeps the patch grid whole"
            )
    n = vision_size // patch
    _check_seq_length(getattr(processor, "num_image_tokens", None), n * n, "tile")
    model_pinpoints = tuple((int(h), int(w)) for h, w in getattr(config, "image_grid_pinpoints", None) or ())
    if model_pinpoints != image.grid_pinpoints:
        raise VisheadsError(
            f"the processor tiles on image_grid_pinpoints {list(map(list, image.grid_pinpoints))} but the "
            f"model packs features for {list(map(list, model_pinpoints))}"
        )
    aspect = getattr(config, "vision_aspect_ratio", None)
    if getattr(processor, "vision_aspect_ratio", None) != aspect:
        raise VisheadsError(
            f"the processor counts tokens for vision_aspect_ratio={getattr(processor, 'vision_aspect_ratio', None)!r} "
            f"but the model packs them for {aspect!r}"
        )
    match = re.fullmatch(r"anyres_max_(\d+)", str(aspect))
    if match is None or int(match.group(1)) < 1:
        raise VisheadsError(f"unsupported vision_aspect_ratio {aspect!r}; region geometry knows 'anyres_max_N'")
    return Geometry(image=image, vision_size=vision_size, patch_size=patch, leading_tokens=0, anyres_max=int(match.group(1)))
