"""Read what a LLaVA-family processor and model do to an image from their settings, and check they agree.

The processor decides the pixels and how many ``<image>`` tokens the prompt gets; the model decides which
vision feature lands on which of those tokens. Both backends of each image processor (the PIL one used
on machines without torchvision, the torchvision one) are read the same way, through their attributes,
overlaid with the processor's own ``images_kwargs`` defaults exactly as ``ProcessorMixin`` merges them
when it calls the image processor. Anything this module cannot map faithfully raises
:class:`~visheads_eval.errors.VisheadsError` rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
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
# Model types and the vision-feature selection their modeling code applies.
_MODEL_TYPES = ("llava", "llava_next", "vipllava")


@dataclass(frozen=True)
class ImageSettings:
    """The image processor's effective settings for one call without extra keyword arguments."""

    kind: str  # "generic" | "llava" | "llava_next"
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


def read_image_settings(processor: ProcessorMixin) -> ImageSettings:
    """The settings the processor's image processor will use when the processor is called plainly."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        raise VisheadsError(f"{type(processor).__name__} has no image_processor; pass the model's loaded processor")
    kind = _image_kind(image_processor)
    backend = getattr(image_processor, "backend", None)
    if backend not in ("pil", "torchvision"):
        raise VisheadsError(f"image processor {type(image_processor).__name__} has unknown backend {backend!r}")
    defaults = getattr(processor, "images_kwargs", None)
    defaults = defaults if isinstance(defaults, dict) else {}

    def setting(name: str) -> Any:
        return defaults[name] if name in defaults else getattr(image_processor, name, None)

    default_to_square = bool(setting("default_to_square"))
    pinpoints = setting("image_grid_pinpoints") if kind == "llava_next" else None
    if kind == "llava_next" and not pinpoints:
        raise VisheadsError("the LLaVA-NeXT image processor has no image_grid_pinpoints")
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
        raise VisheadsError(
            f"unsupported model type {model_type!r} for region geometry; supported: {', '.join(_MODEL_TYPES)}"
        )
    if model_type == "vipllava":
        return "default"  # VipLlavaModel always drops the first (CLS) vision token
    strategy = getattr(config, "vision_feature_select_strategy", None)
    if strategy not in ("default", "full"):
        raise VisheadsError(f"unknown vision_feature_select_strategy {strategy!r} in the model config")
    return strategy


def read_geometry(processor: ProcessorMixin, config: PretrainedConfig) -> Geometry:
    """Read and cross-check the processor and the model config.

    Raises :class:`VisheadsError` when they disagree in a way that would make the model reject the
    processor's output (patch size, feature selection, grid pinpoints), so that a mask is never built
    for a layout the model does not use.
    """
    image = read_image_settings(processor)
    expected = _PROCESSOR_FOR[image.kind]
    if expected not in _class_names(processor):
        raise VisheadsError(
            f"unsupported processor {type(processor).__name__} with {type(processor.image_processor).__name__}; "
            f"expected a {expected}"
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
        raise VisheadsError(
            f"the processor's patch_size ({processor.patch_size}) differs from the vision tower's ({patch_size})"
        )
    processor_strategy = processor.vision_feature_select_strategy or "full"
    if processor_strategy != strategy:
        raise VisheadsError(
            f"the processor counts image tokens with vision_feature_select_strategy={processor_strategy!r} "
            f"but the model uses {strategy!r}"
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
