"""Loading a model's processor, also where transformers cannot build its video part.

transformers 5.24 and 5.25 construct every processor that has a ``video_processor`` (Qwen2/2.5/3-VL,
LLaVA-OneVision, InternVL, SmolVLM) only when torchvision imports: ``ProcessorMixin`` checks the video
processor's class through ``VIDEO_PROCESSOR_MAPPING``, which is a dummy without torchvision
(huggingface/transformers issues 43986, 48556, 48558). This project evaluates images only, so where that
check cannot run, :func:`load_processor` loads the same processor class without its video part: a
subclass, made here and used by nobody else, whose attributes leave out ``video_processor`` (its
``__name__`` is the original class's, so what it saves loads as that class, though without a video
processor config). Nothing in transformers is changed. Where transformers can build video processors
(torchvision present, or a release that fixed it), :func:`video_processors_available` is true and the
stock ``AutoProcessor`` loads everything.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import transformers
from transformers import AutoProcessor, ProcessorMixin
from transformers.models.auto.processing_auto import processor_class_from_name

from visheads_eval.errors import VisheadsError

VIDEO = "video_processor"


def video_processors_available() -> bool:
    """Whether this transformers can check (and so construct) a processor's video part."""
    mapping = transformers.VIDEO_PROCESSOR_MAPPING
    try:
        mapping._extra_content  # noqa: B018 - the attribute ProcessorMixin reads; missing on the torchvision-less dummy
    except AttributeError:
        return False
    return True


class NoVideos:
    """Where an images-only processor's video processor would be: the defaults some processors read while
    formatting a chat (SmolVLM reads ``num_frames`` and ``fps``) are unset, and anything else says why."""

    num_frames = None
    fps = None

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"this processor was loaded without its video part (no torchvision): it has no video {name}")


@functools.cache
def images_only(processor_class: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """``processor_class`` without its video processor: same behaviour on text and images, no videos."""
    attributes = processor_class.get_attributes()
    if VIDEO not in attributes:
        return processor_class
    if attributes[-1] != VIDEO:
        # Positional sub-processors are matched to attributes in order; dropping a middle one would shift them.
        raise VisheadsError(
            f"{processor_class.__name__} lists its video processor before {attributes[-1]}; "
            "visheads_eval cannot load it without torchvision"
        )
    kept = attributes[:-1]

    def arguments_from_pretrained(cls: type, *args: Any, **kwargs: Any) -> list[Any]:
        # The sub-processors read from the folder, then None in the video processor's place (its __init__ takes it
        # positionally, and SmolVLM's requires it).
        parent = inspect.getattr_static(processor_class, "_get_arguments_from_pretrained").__func__  # called for cls, not the parent
        return [*parent(cls, *args, **kwargs), None]

    return type(
        processor_class.__name__,
        (processor_class,),
        {
            "__module__": processor_class.__module__,
            "__doc__": f"{processor_class.__name__} for images and text only (loaded by visheads_eval without torchvision).",
            "_get_arguments_from_pretrained": classmethod(arguments_from_pretrained),
            VIDEO: NoVideos(),
            "get_attributes": classmethod(lambda cls: list(kept)),
        },
    )


def processor_class_of(pretrained: str, **kwargs: Any) -> type[ProcessorMixin]:
    """The processor class that ``AutoProcessor`` would load for ``pretrained``, read from its files."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, AutoConfig
    from transformers.processing_utils import ProcessorMixin as Mixin

    name = None
    try:
        name = Mixin.get_processor_dict(pretrained, **kwargs)[0].get("processor_class")
    except (OSError, ValueError):
        name = None
    if name:
        found = processor_class_from_name(name)
        if found is not None:
            return found
    config = AutoConfig.from_pretrained(pretrained, **kwargs)
    mapped = PROCESSOR_MAPPING[type(config)] if type(config) in PROCESSOR_MAPPING else None
    if isinstance(mapped, type) and issubclass(mapped, Mixin):
        return mapped
    raise VisheadsError(f"cannot tell which processor '{pretrained}' uses (no processor_class in its files)")


def load_processor(pretrained: str, **kwargs: Any) -> ProcessorMixin:
    """The model's processor, as ``AutoProcessor.from_pretrained(pretrained, **kwargs)`` loads it; without its
    video part where this transformers cannot construct one."""
    if video_processors_available():
        return AutoProcessor.from_pretrained(pretrained, **kwargs)
    processor_class = processor_class_of(pretrained, **kwargs)
    return images_only(processor_class).from_pretrained(pretrained, **kwargs)  # type: ignore[arg-type]  # classes hash; mypy reads ProcessorMixin.__hash__ as an instance method
