"""The ``llava_visheads`` model for lmms-eval: lmms-eval's ``llava_hf`` adapters, instrumented.

Both classes subclass lmms-eval's own adapters (the simple one and the chat one) and change three
things, in the style of lm-eval's ``hf_steered``: their own model_args are checked and popped before the
parent loads anything; every ``generate`` call runs inside a context installed for that call and removed
in ``finally``; and a generation error, which ``llava_hf`` would turn into an empty answer, fails the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from lmms_eval.api.instance import Instance
from lmms_eval.models.chat.llava_hf import LlavaHf as LlavaHfChat
from lmms_eval.models.simple import llava_hf as llava_hf_module
from lmms_eval.models.simple.llava_hf import LlavaHf as LlavaHfSimple
from PIL import Image

import visheads_eval
from visheads_eval.lmms.instrumentation import DocContext, Instrumentation
from visheads_eval.lmms.model_args import DEFAULT_PRETRAINED, LLAVA_FAMILY, check_model_args
from visheads_eval.records import RecordKey

_latest_adapter: weakref.ref[VisheadsAdapter] | None = None


def latest_adapter() -> VisheadsAdapter | None:
    """The most recently built ``llava_visheads`` model, if alive (the ``lmms_eval`` command reads it)."""
    return _latest_adapter() if _latest_adapter is not None else None


class GenerationFailed(RuntimeError):
    """``generate`` raised on a document; llava_hf would have recorded an empty answer instead."""


@contextlib.contextmanager
def _llava_family_known_to_llava_hf() -> Iterator[None]:
    """Let ``llava_hf`` load every LLaVA-family class (it knows llava and llava_next, not vipllava)."""
    added = {name: cls for name, cls in LLAVA_FAMILY.items() if name not in llava_hf_module.model_map}
    llava_hf_module.model_map.update(added)
    try:
        yield
    finally:
        for name in added:
            llava_hf_module.model_map.pop(name, None)


def _images_in(value: Any) -> list[Image.Image]:
    """The images in what a doc reader returned: a list of visuals, or chat messages holding them."""
    if isinstance(value, Image.Image):
        return [value]
    if isinstance(value, dict):
        return [image for item in value.values() for image in _images_in(item)]
    if isinstance(value, (list, tuple)):
        return [image for item in value for image in _images_in(item)]
    return []


class VisheadsAdapter:
    """What ``llava_visheads`` adds to a ``llava_hf`` adapter; mixed in before the parent class."""

    # Position, in a request's arguments, of the callable that reads the doc (doc_to_visual or doc_to_messages).
    _doc_reader_index: ClassVar[int]

    def __init__(self, pretrained: str = DEFAULT_PRETRAINED, **kwargs: Any) -> None:
        global _latest_adapter
        checked = check_model_args({"pretrained": pretrained, **kwargs})
        self.instrumentation = Instrumentation(checked.own, pretrained=checked.name, config=checked.config)
        self._current_doc: DocContext | None = None
        self._failure: GenerationFailed | None = None
        with _llava_family_known_to_llava_hf():
            super().__init__(pretrained=checked.pretrained, **checked.parent)
        self.instrumentation.attach(self.model, self._image_processor, rank=self.rank)
        self._run_info = {
            "visheads_eval_version": visheads_eval.__version__,
            "pretrained": checked.name,
            "weights": checked.pretrained,
            "model_class": type(self.model).__name__,
            "attn_implementation": self.model.config._attn_implementation,
            "n_layers": self.instrumentation.shape.n_layers,
            "n_heads": self.instrumentation.shape.n_heads,
            "args": {key: str(value) for key, value in checked.own.items()},
            **self.instrumentation.describe(),
        }
        _latest_adapter = weakref.ref(self)

    def describe(self) -> dict[str, Any]:
        """What this run did to the model, for the ``visheads`` block of lmms-eval's results file.

        Filled in while the model is loaded, so it stays valid after lmms-eval releases the model.
        """
        return dict(self._run_info)

    def generate_until(self, requests: list[Instance]) -> list[Any]:
        try:
            with self._instrumented_generate():
                results = super().generate_until([self._tracking_doc(request) for request in requests])
        finally:
            self.instrumentation.finish()
        self._raise_pending_failure()
        return results

    def _tracking_doc(self, request: Instance) -> Instance:
        """A copy of ``request`` whose doc reader first notes which doc is being generated for."""
        args = list(request.args)
        key = RecordKey(task=args[-2], split=args[-1], doc_id=int(args[-3]))
        read_doc = args[self._doc_reader_index]

        @functools.wraps(read_doc)
        def reading(doc: dict, *a: Any, **kw: Any) -> Any:
            self._raise_pending_failure()
            read = read_doc(doc, *a, **kw)
            self._current_doc = DocContext(key=key, doc=doc, images=_images_in(read))
            return read

        args[self._doc_reader_index] = reading
        return dataclasses.replace(request, arguments=tuple(args))

    @contextlib.contextmanager
    def _instrumented_generate(self) -> Iterator[None]:
        """Route the parent's ``self.model.generate`` calls through :meth:`_generate_one`."""
        model = self.model
        original = model.generate
        model.generate = functools.partial(self._generate_one, original)
        try:
            yield
        finally:
            del model.generate

    def _generate_one(self, generate: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return self.instrumentation.generate(generate, self._current_doc, args, kwargs)
        except Exception as error:
            where = self._current_doc.key if self._current_doc is not None else None
            self._failure = GenerationFailed(
                f"generation failed on task '{where.task}' ({where.split}) doc {where.doc_id}: "
                f"{type(error).__name__}: {error}"
                if where
                else f"generation failed: {type(error).__name__}: {error}"
            )
            self._failure.__cause__ = error
            raise

    def _raise_pending_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


class LlavaVisheads(VisheadsAdapter, LlavaHfSimple):
    """``llava_visheads`` on lmms-eval's simple ``llava_hf`` adapter (``--force_simple``)."""

    _doc_reader_index = 2  # (context, gen_kwargs, doc_to_visual, doc_id, task, split)


class LlavaVisheadsChat(VisheadsAdapter, LlavaHfChat):
    """``llava_visheads`` on lmms-eval's chat ``llava_hf`` adapter (the default)."""

    _doc_reader_index = 1  # (context, doc_to_messages, gen_kwargs, doc_id, task, split)
