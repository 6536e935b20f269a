"""The ``llava_visheads`` model for lmms-eval: lmms-eval's ``llava_hf`` adapters, instrumented.

Both classes subclass lmms-eval's own adapters (the simple one and the chat one) and change three
things, in the style of lm-eval's ``hf_steered``: their own model_args are checked and popped before the
parent loads anything; every ``generate`` call runs inside a context installed for that call and removed
in ``finally``; and a generation error, which ``llava_hf`` would turn into an empty answer, fails the run.
Both also batch: with ``--batch_size N`` they generate N documents at once (left-padded prompts, one
``generate``), where ``llava_hf`` runs one at a time; the answers, records and results are those of batch
size 1, in lmms-eval's order and format. The batching, the documents of a batch and the failure of a batch
are shared with the ``visheads`` model (:mod:`visheads_eval.lmms.batching`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.models.chat.llava_hf import LlavaHf as LlavaHfChat
from lmms_eval.models.simple import llava_hf as llava_hf_module
from lmms_eval.models.simple.llava_hf import LlavaHf as LlavaHfSimple
from lmms_eval.protocol import ChatMessages
from lmms_eval.utils import simple_parse_args_string
from PIL import Image

from visheads_eval.errors import VisheadsError
from visheads_eval.families import FAMILIES
from visheads_eval.instrumentation import DocContext, Instrumentation, generate_through
from visheads_eval.lmms import run_blocks, shims
from visheads_eval.lmms.batching import GenerationFailed, PromptedDoc, answer_lengths, generate_batch, images_in, in_batches, request_key
from visheads_eval.lmms.model_args import check_model_args
from visheads_eval.model_args import DEFAULT_PRETRAINED, LLAVA_FAMILY, CheckedArgs
from visheads_eval.sharing import Shareable, is_shared, shared_or_loaded

if TYPE_CHECKING:
    # The llava_hf adapter these classes are mixed into (lmms-eval ships no type information: to the type
    # checker its classes are Any, so the mixins may use the adapter's attributes and methods).
    _LlavaHfAdapter = Any
else:
    _LlavaHfAdapter = object


class VisheadsAdapter(Shareable, _LlavaHfAdapter):
    """What ``llava_visheads`` adds to a ``llava_hf`` adapter; mixed in before the parent class."""

    # Position, in a request's arguments, of the callable that reads the doc (doc_to_visual or doc_to_messages).
    _doc_reader_index: ClassVar[int]
    _rank: int  # llava_hf's: this process's rank and the number of processes
    _world_size: int

    def __init__(self, pretrained: str = DEFAULT_PRETRAINED, **kwargs: Any) -> None:
        checked = check_model_args({"pretrained": pretrained, **kwargs})
        instrumentation = Instrumentation(checked)
        self._current_doc: DocContext | None = None
        self._failure: GenerationFailed | None = None
        with shims.llava_family_known_to_llava_hf({name: FAMILIES[name].model_class_object() for name in LLAVA_FAMILY}):
            super().__init__(pretrained=checked.pretrained, **checked.parent)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and self._world_size == 1:
            # lmms-eval's evaluator splits the documents over the launched processes by RANK and WORLD_SIZE;
            # llava_hf takes them from accelerate only when it places the model itself (cuda:<rank>), so with a
            # device_map (cpu, or auto over several GPUs) every process would call itself rank 0.
            self._rank, self._world_size = int(os.environ.get("RANK", "0")), world_size
        self.instrument(instrumentation)

    @classmethod
    def check_args(cls, model_args: dict[str, Any]) -> CheckedArgs:
        return check_model_args(model_args)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> VisheadsAdapter:
        """lmms-eval's constructor from ``--model_args``; a model loaded earlier in a sweep is reused."""
        args = {**simple_parse_args_string(arg_string), **{k: v for k, v in (additional_config or {}).items() if v is not None}}
        model = shared_or_loaded(cls, args, lambda: super(VisheadsAdapter, cls).create_from_arg_string(arg_string, additional_config))
        run_blocks.report(model.instrumentation)
        return model

    def clean(self) -> None:
        """lmms-eval frees the model after each evaluation; a model shared by a sweep stays for the next one."""
        if not is_shared(self):
            super().clean()

    def instrument(self, instrumentation: Instrumentation) -> None:
        """Bind a run's masks, recording and means to the loaded model."""
        self.instrumentation = instrumentation
        instrumentation.attach(self.model, self._image_processor, rank=self.rank)

    def describe(self) -> dict[str, Any]:
        """What this run did to the model, for the ``visheads`` block of lmms-eval's results file."""
        return self.instrumentation.describe()

    def generate_until(self, requests: list[Instance]) -> list[Any]:
        try:
            with generate_through(self.model, self._generate_one):
                results = super().generate_until([self._tracking_doc(request) for request in requests])
        finally:
            self.instrumentation.finish()
        self._raise_pending_failure()
        return results

    def _tracking_doc(self, request: Instance) -> Instance:
        """A copy of ``request`` whose doc reader first notes which doc is being generated for."""
        args = list(request.args)
        key = request_key(args)
        read_doc = args[self._doc_reader_index]

        @functools.wraps(read_doc)
        def reading(doc: dict, *a: Any, **kw: Any) -> Any:
            self._raise_pending_failure()
            read = read_doc(doc, *a, **kw)
            self._current_doc = DocContext(key=key, doc=doc, images=images_in(read))
            return read

        args[self._doc_reader_index] = reading
        return dataclasses.replace(request, arguments=tuple(args))

    def _generate_one(self, generate: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return self.instrumentation.generate(generate, [self._current_doc], args, kwargs)
        except Exception as error:
            where = self._current_doc.key if self._current_doc is not None else None
            self._failure = GenerationFailed(
                f"generation failed on task '{where.task}' ({where.split}) doc {where.doc_id}: {type(error).__name__}: {error}"
                if where
                else f"generation failed: {type(error).__name__}: {error}"
            )
            self._failure.__cause__ = error
            raise

    def _raise_pending_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


class BatchingAdapter(VisheadsAdapter):
    """Batches of ``--batch_size`` documents: one left-padded ``generate`` each, answers as one at a time."""

    _gen_kwargs_index: ClassVar[int]  # position of the generation kwargs in a request's arguments

    def generate_until(self, requests: list[Instance]) -> list[Any]:
        if self.batch_size_per_gpu == 1:
            return super().generate_until(requests)
        try:
            return in_batches(requests, self._gen_kwargs_index, self.batch_size, self.rank, self._generate_batch)
        finally:
            self.instrumentation.finish()

    def _prompts(self, chunk: list[tuple]) -> list[PromptedDoc]:
        """Each document of ``chunk`` (requests' arguments, ending in doc_id, task, split), prompted."""
        prompts = []
        for args in chunk:
            key = request_key(args)
            doc = self.task_dict[key.task][key.split][args[-3]]
            text, visuals, cache_key = self._prompt(args, doc)
            if not all(isinstance(visual, Image.Image) for visual in visuals):
                raise VisheadsError(f"task '{key.task}' has videos; llava_visheads batches image tasks: run it with --batch_size 1")
            prompts.append(PromptedDoc(text, list(visuals), DocContext(key=key, doc=doc, images=list(visuals)), cache_key))
        return prompts

    def _prompt(self, args: tuple, doc: dict) -> tuple[str, list[Any], tuple]:
        """One document's prompt as the parent adapter builds it, its visuals, and its cache key."""
        raise NotImplementedError

    def _result(self, answer: str, n_tokens: int) -> Any:
        """What the parent adapter returns for one document."""
        raise NotImplementedError

    def _generate_batch(self, chunk: list[tuple]) -> list[Any]:
        """One ``generate`` over the documents of ``chunk``, with llava_hf's generation settings."""
        prompts = self._prompts(chunk)
        images = [image for prompt in prompts for image in prompt.images]
        inputs = self._image_processor(images=images or None, text=[prompt.text for prompt in prompts], padding=True, return_tensors="pt")
        inputs = inputs.to(self._device, self.model.dtype)
        gen_kwargs = chunk[0][self._gen_kwargs_index]
        gen = {"max_new_tokens": 1024, "temperature": 0, "top_p": None, "num_beams": 1, **gen_kwargs}  # llava_hf's defaults
        do_sample = gen["temperature"] > 0
        kwargs = {
            **inputs,
            "do_sample": do_sample,
            "temperature": gen["temperature"] if do_sample else None,
            "top_p": gen["top_p"],
            "num_beams": gen["num_beams"],
            "max_new_tokens": gen["max_new_tokens"],
            "use_cache": self.use_cache,
            "pad_token_id": self.eot_token_id,
            "eos_token_id": self.eot_token_id,
        }
        output = generate_batch(self.instrumentation, self.model.generate, prompts, kwargs)
        generated = output[:, inputs["input_ids"].shape[1] :]
        answers = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        results = []
        for answer, n_tokens, prompt in zip(answers, answer_lengths(generated, [self.eot_token_id]), prompts, strict=True):
            results.append(self._result(answer, n_tokens))
            self.cache_hook.add_partial("generate_until", prompt.cache_key, answer)
        return results


class LlavaVisheads(BatchingAdapter, LlavaHfSimple):
    """``llava_visheads`` on lmms-eval's simple ``llava_hf`` adapter (``--force_simple``); it also batches."""

    _doc_reader_index = 2  # (context, gen_kwargs, doc_to_visual, doc_id, task, split)
    _gen_kwargs_index = 1

    def _prompt(self, args: tuple, doc: dict) -> tuple[str, list[Any], tuple]:
        context, gen_kwargs, doc_to_visual = args[:3]
        visuals = self.flatten([doc_to_visual(doc)])
        text = context
        if visuals and llava_hf_module.DEFAULT_IMAGE_TOKEN not in text:  # as llava_hf: image tokens first when the prompt has none
            text = " ".join([llava_hf_module.DEFAULT_IMAGE_TOKEN] * len(visuals)) + "\n" + text
        if self.chat_template is not None:
            self.tokenizer.chat_template = self.chat_template
        elif self.tokenizer.chat_template is None:
            self.tokenizer.chat_template = llava_hf_module.VICUNA_CHAT_TEMPLATE
        prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        return prompt, visuals, (text, gen_kwargs)

    def _result(self, answer: str, n_tokens: int) -> str:
        return answer


class LlavaVisheadsChat(BatchingAdapter, LlavaHfChat):
    """``llava_visheads`` on lmms-eval's chat ``llava_hf`` adapter (the default); it also batches."""

    _doc_reader_index = 1  # (context, doc_to_messages, gen_kwargs, doc_id, task, split)
    _gen_kwargs_index = 2

    def _prompt(self, args: tuple, doc: dict) -> tuple[str, list[Any], tuple]:
        _, read_messages, gen_kwargs = args[:3]
        messages = ChatMessages(messages=read_messages(doc))
        visuals, videos, _ = messages.extract_media()
        text = self._image_processor.apply_chat_template(messages.model_dump()["messages"], tokenize=False, add_generation_prompt=True)
        return text, [*visuals, *videos], (text, gen_kwargs)

    def _result(self, answer: str, n_tokens: int) -> GenerationResult:
        return GenerationResult(text=answer, token_counts=TokenCounts(output_tokens=n_tokens))
