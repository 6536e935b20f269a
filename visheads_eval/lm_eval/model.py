"""The ``llava_visheads`` and ``visheads`` models for lm-evaluation-harness: lm-eval's ``hf-multimodal``, instrumented.

``LlavaVisheadsLM`` subclasses lm-eval's ``HFMultimodalLM`` and changes what lm-eval's own
``hf_steered`` changes, in its style: this project's model_args are checked and popped before the parent
loads anything (the same checks and one-line errors as the lmms-eval model: a mask, ranking or record folder
that does not fit, a family the model does not take, a key one typo away from this project's own;
``hf-multimodal``'s own arguments stay lm-eval's to check, and other keys reach ``from_pretrained`` as they do
in ``hf-multimodal``), and every batch's
``generate`` runs inside the run's :class:`~visheads_eval.instrumentation.Instrumentation` (masks,
recorder, records), installed for that call and removed in ``finally``. Which document each row of a
batch answers is read from the requests lm-eval hands ``generate_until``: the images of a row are the very
image objects of its request.

``VisheadsLM`` (``visheads``) is the same for every family of :mod:`visheads_eval.families`: it loads the
family's transformers class (``AUTO_MODEL_CLASS``, which ``HFLM`` loads from) and its processor through
:func:`~visheads_eval.processors.load_processor` (overriding ``_create_tokenizer``, where ``hf-multimodal``
calls ``AutoProcessor``, which cannot build the Qwen-VL, OneVision, InternVL or SmolVLM processors without
torchvision). Prompts are hf-multimodal's, as for any model: lm-eval's chat template handling, the processor's
own image settings (``min_pixels``/``max_pixels`` reach the processor as they do in hf-multimodal).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.hf_vlms import HFMultimodalLM
from lm_eval.utils import simple_parse_args_string

from visheads_eval.errors import VisheadsError, did_you_mean
from visheads_eval.instrumentation import DocContext, Instrumentation, generate_through
from visheads_eval.model_args import DEFAULT_PRETRAINED, LLAVA_FAMILY, OWN_ARGS, CheckedArgs, check_model, flag
from visheads_eval.processors import load_processor
from visheads_eval.records import RecordKey
from visheads_eval.sharing import Shareable, shared_or_loaded

# lm-eval evaluates one split per task and does not name it in its requests; records carry this one.
SPLIT = "test"
# hf-multimodal's resizing would move a question's box (given in the image's own pixels) off its tokens.
_RESIZING = ("image_width", "image_height", "image_max_side", "min_pixels", "max_pixels")


def parent_arg_names() -> tuple[str, ...]:
    """The model_args ``hf-multimodal`` (and ``HFLM`` under it) takes by name."""
    from lm_eval.models.huggingface import HFLM

    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parents = {p.name for cls in (HFMultimodalLM, HFLM) for p in inspect.signature(cls.__init__).parameters.values() if p.kind in named}
    return tuple(sorted(parents - {"self"}))


def _check_near_misses(model_args: dict[str, Any], model_id: str) -> None:
    """Refuse a key that neither hf-multimodal nor this project takes and that is one typo away from this project's
    own (``mask_dri``): hf-multimodal would hand it to ``from_pretrained``, which fails with a TypeError after
    loading the weights. Other unknown keys (``device_map``, ``attn_implementation``) are from_pretrained's own."""
    known = {*parent_arg_names(), *OWN_ARGS}
    for key in model_args:
        suggestion = did_you_mean(key, OWN_ARGS) if key not in known else ""
        if suggestion:
            raise VisheadsError(
                f"unknown model_args key '{key}' for {model_id}{suggestion}; hf-multimodal would pass it to from_pretrained"
            )


@register_model("llava_visheads")
class LlavaVisheadsLM(Shareable, HFMultimodalLM):
    """``llava_visheads`` in lm-eval: ``hf-multimodal`` with this project's masks and records."""

    model_id: ClassVar[str] = "llava_visheads"
    model_types: ClassVar[tuple[str, ...] | None] = LLAVA_FAMILY  # the families it takes (None: all)
    resizing_args: ClassVar[tuple[str, ...]] = _RESIZING  # hf-multimodal arguments that would move a box off its tokens

    def __init__(self, pretrained: str = DEFAULT_PRETRAINED, **kwargs: Any) -> None:
        checked = self.check_args({"pretrained": pretrained, **kwargs})
        self._checked(checked)
        instrumentation = Instrumentation(checked)
        self._requests: dict[int, Instance] = {}  # id of a request's first image -> the request
        self._rows: list[DocContext | None] = []  # the docs of the batch being encoded
        super().__init__(checked.pretrained, **{key: value for key, value in kwargs.items() if key not in OWN_ARGS})
        self.instrument(instrumentation)

    @classmethod
    def check_args(cls, model_args: dict[str, Any]) -> CheckedArgs:
        """This project's model_args checked, and the images kept as the task gives them, before anything loads."""
        kwargs = dict(model_args)
        resizing = [key for key in cls.resizing_args if kwargs.get(key) is not None]
        if resizing:
            raise VisheadsError(
                f"{cls.model_id} keeps images as the task gives them (boxes and records are in their pixels); drop {', '.join(resizing)}"
            )
        _check_near_misses(kwargs, cls.model_id)
        own = {key: kwargs.pop(key) for key in list(kwargs) if key in OWN_ARGS}
        return check_model(
            str(kwargs.get("pretrained", DEFAULT_PRETRAINED)),
            own,
            revision=str(kwargs.get("revision") or "main"),
            dtype=kwargs.get("dtype", "auto"),
            trust_remote_code=flag(kwargs, "trust_remote_code"),
            model_types=cls.model_types,
            model_id=cls.model_id,
        )

    def instrument(self, instrumentation: Instrumentation) -> None:
        self.instrumentation = instrumentation
        instrumentation.attach(self.model, self.processor, rank=self.rank)

    def _checked(self, checked: CheckedArgs) -> None:
        """What the checked model_args decide before the parent loads anything (nothing here)."""

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> LlavaVisheadsLM:
        """lm-eval's constructor from a model_args string; a model loaded earlier in a sweep is reused."""
        args = {**simple_parse_args_string(arg_string), **{k: v for k, v in (additional_config or {}).items() if v is not None}}
        return shared_or_loaded(cls, args, lambda: super(LlavaVisheadsLM, cls).create_from_arg_string(arg_string, additional_config))

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None) -> LlavaVisheadsLM:
        """lm-eval's constructor from model_args as a dict (its command line's); a model loaded earlier in a sweep is reused."""
        args = {**arg_dict, **{k: v for k, v in (additional_config or {}).items() if v is not None}}
        return shared_or_loaded(cls, args, lambda: super(LlavaVisheadsLM, cls).create_from_arg_obj(arg_dict, additional_config))

    def describe(self) -> dict[str, Any]:
        """What this run did to the model: the ``visheads`` block of the results."""
        return self.instrumentation.describe()

    def get_model_info(self) -> dict[str, Any]:
        """lm-eval's model information, which it merges into its results' ``config``: the parent's, and this run's
        ``visheads`` block (so any lm-eval entry point, its CLI or ``simple_evaluate``, records it)."""
        return {**super().get_model_info(), "visheads": self.describe()}

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        self._requests = {id(request.args[2]["visual"][0]): request for request in requests if _visuals(request)}
        try:
            with generate_through(self.model, self._generate_rows):
                return super().generate_until(requests, disable_tqdm=disable_tqdm)
        finally:
            self._requests, self._rows = {}, []
            self.instrumentation.finish()

    def tok_batch_multimodal_encode(self, strings: list[str], images: list[list], *args: Any, **kwargs: Any) -> Any:
        self._rows = [self._context(row_images) for row_images in images]
        return super().tok_batch_multimodal_encode(strings, images, *args, **kwargs)

    def _context(self, images: list) -> DocContext | None:
        """The document whose request holds ``images`` (a row without images is not recorded)."""
        if not images:
            return None
        request = self._requests.get(id(images[0]))
        if request is None:
            raise VisheadsError(f"{self.model_id} cannot tell which document a batch row answers: its images are not its request's")
        key = RecordKey(task=str(request.task_name), split=SPLIT, doc_id=int(request.doc_id))
        return DocContext(key=key, doc=request.doc, images=list(images))

    def _generate_rows(self, generate: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return self.instrumentation.generate(generate, self._rows, args, kwargs)
        except Exception as error:
            where = ", ".join(f"task '{c.key.task}' doc {c.key.doc_id}" for c in self._rows if c is not None) or "a batch without images"
            raise RuntimeError(f"generation failed on {where}: {type(error).__name__}: {error}") from error


@register_model("visheads")
class VisheadsLM(LlavaVisheadsLM):
    """``visheads`` in lm-eval: ``llava_visheads`` for every family, each loaded by its own transformers class and
    its processor loaded through :func:`~visheads_eval.processors.load_processor`."""

    model_id = "visheads"
    model_types = None
    # min_pixels and max_pixels go to the processor (its geometry then knows them), not to an image resize.
    resizing_args = ("image_width", "image_height", "image_max_side")

    def _checked(self, checked: CheckedArgs) -> None:
        # HFLM loads the model with this class (hf-multimodal's AutoModelForImageTextToText otherwise).
        self.AUTO_MODEL_CLASS = checked.family.model_class_object()

    def _create_tokenizer(
        self,
        pretrained: str | Any,
        tokenizer: str | Any | None,
        revision: str | None = "main",
        trust_remote_code: bool | None = False,
        **kwargs: Any,
    ) -> None:
        """hf-multimodal's processor and tokenizer, the processor loaded through ``load_processor``."""
        if tokenizer and not isinstance(tokenizer, str):
            self.processor = tokenizer  # a processor object, which hf-multimodal also takes
        else:
            source = tokenizer or (pretrained if isinstance(pretrained, str) else self.model.name_or_path)
            self.processor = load_processor(source, revision=revision or "main", trust_remote_code=bool(trust_remote_code), **self.pixels)
        self.tokenizer = self.processor.tokenizer


def _visuals(request: Instance) -> list:
    args = request.args
    return list(args[2].get("visual") or []) if len(args) > 2 and isinstance(args[2], dict) else []
