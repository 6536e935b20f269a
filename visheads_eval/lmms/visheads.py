"""The ``visheads`` model for lmms-eval: every family of :mod:`visheads_eval.families`, one generic loop.

``lmms_eval --model visheads --model_args pretrained=...,mask=...,record=... --batch_size N``. What this module owns:

- choosing the family from the checkpoint's config and checking the model_args before any weights load
  (:func:`~visheads_eval.lmms.model_args.check_visheads_model_args`: unknown keys, missing paths and unsupported
  families fail with one line);
- loading the family's transformers class and its processor through
  :func:`~visheads_eval.processors.load_processor` (which also loads, without torchvision, the processors
  ``AutoProcessor`` cannot build here), with the tokenizer padding on the left;
- how each family is prompted, as data: :data:`PROMPTING` holds, per lmms-eval adapter of a family, what that
  adapter does to the prompt, the images and the answers (system prompt, the processor's image-size limits,
  JPEG re-encoding, generation defaults, stop tokens, stop strings), each entry naming the adapter it follows;
- one batched chat loop for every family (:class:`Visheads`): lmms-eval chat requests (``doc_to_messages``),
  grouped by generation kwargs and cut into batches of ``--batch_size`` -> the processor's chat template ->
  ``processor(images=..., text=..., padding=True)`` -> one left-padded ``generate`` per batch, run through the
  run's :class:`~visheads_eval.instrumentation.Instrumentation` (masks, records with the doc's ``bbox`` region,
  head means) -> decoded answers as lmms-eval ``GenerationResult``s in lmms-eval's order.

It subclasses no family adapter and patches nothing in lmms-eval: lmms-eval's Qwen adapters need
``qwen_vl_utils`` (which needs torchvision) and its InternVL and OneVision ones ``AutoProcessor``, none of
which runs here. The batching, documents and failures it shares with ``llava_visheads`` are in
:mod:`visheads_eval.lmms.batching`.

Where it knowingly differs from lmms-eval's adapters: images go to the processor as the task gives them, so
that a doc's box stays in the image's own pixels. lmms-eval's chat ``qwen2_5_vl`` first rounds each image to
multiples of 28 px with ``qwen_vl_utils`` (limits 4*28*28 .. 16384*28*28) and then lets the processor resize
it again within 256*28*28 .. 1605632; ``visheads`` resizes once, within the processor's limits, which gives
the same token grid unless the rounded image falls outside them. The dtype is the ``dtype`` model_arg
(default: the checkpoint's), where lmms-eval's Qwen, InternVL and Gemma 3 adapters force bfloat16.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.media_encoder import encode_image_to_bytes
from lmms_eval.protocol import ChatMessages
from lmms_eval.utils import simple_parse_args_string
from PIL import Image
from transformers import PreTrainedModel

from visheads_eval.errors import VisheadsError
from visheads_eval.families import Family
from visheads_eval.instrumentation import DocContext, Instrumentation
from visheads_eval.lmms import run_blocks
from visheads_eval.lmms.batching import PromptedDoc, answer_lengths, generate_batch, in_batches, request_key
from visheads_eval.lmms.model_args import check_visheads_model_args
from visheads_eval.model_args import DEFAULT_PRETRAINED, CheckedArgs, flag
from visheads_eval.processors import load_processor
from visheads_eval.sharing import Shareable, is_shared, shared_or_loaded

GEN_KWARGS_INDEX = 2  # chat requests' arguments: (context, doc_to_messages, gen_kwargs, doc_id, task, split)
HELPFUL_ASSISTANT = "You are a helpful assistant."


@dataclass(frozen=True)
class Prompting:
    """What lmms-eval's own adapter for a family does to the prompt, the images and the answers."""

    adapter: str  # the lmms-eval module it follows, under lmms_eval/models/
    system_prompt: str | None = None  # a system turn before the task's messages
    processor_settings: Mapping[str, int] = field(default_factory=dict)  # given to the processor as it loads
    processor_call: Mapping[str, Any] = field(default_factory=dict)  # given to every processor call
    jpeg_quality: int | None = None  # images re-encoded as JPEG first (the adapter sends them as JPEG data URLs)
    text_removed: str | None = None  # a pattern removed from the user's text (image tags the adapter strips)
    max_new_tokens: int = 1024  # when the task sets none
    stop_ids: Literal["tokenizer", "generation_config"] = "tokenizer"  # where generate's eos (and pad) come from
    decode: Mapping[str, Any] = field(default_factory=dict)  # batch_decode's arguments besides skip_special_tokens
    until: Literal["ignored", "all", "but_blank_lines"] = "ignored"  # the task's stop strings cut answers afterwards
    strip_answer: bool = False


NO_CLEANUP = {"clean_up_tokenization_spaces": False}

# One entry per lmms-eval adapter of a family (Family.lmms_adapter); None: families lmms-eval has no adapter for.
PROMPTING: dict[str | None, Prompting] = {
    # chat/llava_hf.py (the LLaVA family and LLaVA-OneVision): the checkpoint's processor, no system turn,
    # max_new_tokens 1024, eos and pad = tokenizer.eos_token_id, tokenizer.batch_decode.
    "llava_hf": Prompting("chat/llava_hf.py"),
    # simple/qwen2_vl.py (lmms-eval has no chat Qwen2-VL adapter): "You are a helpful assistant.",
    # AutoProcessor.from_pretrained(min_pixels=3136, max_pixels=602112) (qwen_vl_utils resizes each image within the
    # same limits first, which the processor's own resize then repeats), images sent as JPEG (quality 85) data
    # URLs, "<image>" removed from the text, max_new_tokens 128, eos = tokenizer eos, pad = tokenizer pad or eos,
    # answers cut at the task's `until` strings and stripped.
    "qwen2_vl": Prompting(
        "simple/qwen2_vl.py",
        system_prompt=HELPFUL_ASSISTANT,
        processor_settings={"min_pixels": 3136, "max_pixels": 602112},
        jpeg_quality=85,
        text_removed=r"<image>",
        max_new_tokens=128,
        decode=NO_CLEANUP,
        until="all",
        strip_answer=True,
    ),
    # chat/qwen2_5_vl.py (the default; its simple parent adds "You are a helpful assistant.", the chat one adds no
    # system turn): AutoProcessor.from_pretrained(min_pixels=256*28*28, max_pixels=1605632), max_new_tokens 128.
    "qwen2_5_vl": Prompting(
        "chat/qwen2_5_vl.py", processor_settings={"min_pixels": 256 * 28 * 28, "max_pixels": 1605632}, max_new_tokens=128, decode=NO_CLEANUP
    ),
    # chat/qwen3_vl.py: a "You are a helpful assistant." system turn; the processor is called with do_resize=False
    # on images qwen_vl_utils resized (image_patch_size=16: multiples of 32 px within its defaults
    # IMAGE_MIN_TOKEN_NUM * 32 * 32 .. IMAGE_MAX_TOKEN_NUM * 32 * 32), so those are the limits that hold, not
    # the min/max_pixels given to AutoProcessor. DEFAULT_GEN_KWARGS: max_new_tokens 128.
    "qwen3_vl": Prompting(
        "chat/qwen3_vl.py",
        system_prompt=HELPFUL_ASSISTANT,
        processor_settings={"min_pixels": 4 * 32 * 32, "max_pixels": 16384 * 32 * 32},
        max_new_tokens=128,
        decode=NO_CLEANUP,
    ),
    # chat/internvl_hf.py: no system turn, processor calls with min_patches=1, max_patches=12 (its __init__
    # defaults), max_new_tokens 1024, eos = tokenizer eos, pad = tokenizer pad.
    "internvl_hf": Prompting("chat/internvl_hf.py", processor_settings={"min_patches": 1, "max_patches": 12}, decode=NO_CLEANUP),
    # simple/gemma3.py: "You are a helpful assistant.", images as JPEG (quality 85) data URLs, "<image>" and
    # "<image N>" removed from the text, apply_chat_template(tokenize=True) with padding to a multiple of 8,
    # max_new_tokens 128, no eos or pad given to generate (the model's generation_config), answers cut at the
    # task's `until` strings but "\n\n". Its min_pixels/max_pixels go to a processor that ignores them.
    "gemma3": Prompting(
        "simple/gemma3.py",
        system_prompt=HELPFUL_ASSISTANT,
        processor_call={"pad_to_multiple_of": 8},
        jpeg_quality=85,
        text_removed=r"<image>|<image \d+>",
        max_new_tokens=128,
        stop_ids="generation_config",
        decode=NO_CLEANUP,
        until="but_blank_lines",
    ),
    # Idefics3 and SmolVLM: lmms-eval's generic chat/huggingface.py (no system turn, max_new_tokens 4096, no
    # tokenization clean-up); stops from the model's generation_config, which names the end-of-utterance token
    # where the tokenizer's eos may not.
    None: Prompting("chat/huggingface.py", max_new_tokens=4096, stop_ids="generation_config", decode=NO_CLEANUP),
}

# The prompting settings a model_arg of the same name overrides (where the family's entry has them).
PROMPTING_KEYS = tuple(dict.fromkeys(key for entry in PROMPTING.values() for key in entry.processor_settings))


def prompting_of(family: Family) -> Prompting:
    """How ``visheads`` prompts ``family``: as lmms-eval's own adapter for it does."""
    return PROMPTING.get(family.lmms_adapter, PROMPTING[None])


def with_overrides(prompting: Prompting, family: Family, settings: Mapping[str, Any]) -> Prompting:
    """``prompting`` with the model_args that override it (``system_prompt``, the processor's image-size limits)."""
    changed: dict[str, Any] = {}
    if "system_prompt" in settings:
        given = settings["system_prompt"]
        changed["system_prompt"] = None if given is None or str(given).strip().lower() in ("", "none") else str(given)
    limits = {key: settings[key] for key in PROMPTING_KEYS if key in settings}
    for key in limits:
        if key not in prompting.processor_settings:
            applies = ", ".join(prompting.processor_settings) or "none"
            raise VisheadsError(f"{key} does not apply to {family.label} models (their processor settings here: {applies})")
    if limits:
        changed["processor_settings"] = {**prompting.processor_settings, **{key: int(value) for key, value in limits.items()}}
    return dataclasses.replace(prompting, **changed)


def sent_image(image: Image.Image, prompting: Prompting) -> Image.Image:
    """The image as the family's adapter hands it to the processor: re-encoded as JPEG where it sends data URLs."""
    if prompting.jpeg_quality is None:
        return image
    encoded = encode_image_to_bytes(image, image_format="JPEG", convert_rgb=True, quality=prompting.jpeg_quality)
    return Image.open(io.BytesIO(encoded)).convert("RGB")


def prompt_messages(messages: list[dict], prompting: Prompting) -> list[dict]:
    """A document's chat messages (lmms-eval's ``ChatMessages`` as dicts) as the family's adapter sends them:
    its system turn first (unless the task gave one), image tags it strips removed from the user's text."""
    messages = [{**message, "content": [dict(part) for part in message["content"]]} for message in messages]
    if prompting.text_removed is not None:
        for message in messages:
            for part in message["content"]:
                if message["role"] == "user" and part.get("type") == "text":
                    part["text"] = re.sub(prompting.text_removed, "", part["text"])
    if prompting.system_prompt is not None and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": prompting.system_prompt}]})
    return messages


def _loaded_image(url: Any) -> Image.Image:
    if isinstance(url, Image.Image):
        return url
    if isinstance(url, str):
        return Image.open(url).convert("RGB")
    raise VisheadsError(f"visheads reads images as PIL images or paths; a chat message holds a {type(url).__name__}")


class Visheads(Shareable, lmms):
    """``visheads``: any supported family, prompted as lmms-eval's adapter for it prompts it, with this project's
    masks and records; chat requests only (lmms-eval builds them from every generate_until task)."""

    is_simple = False

    def __init__(self, pretrained: str = DEFAULT_PRETRAINED, **model_args: Any) -> None:
        super().__init__()
        checked = self.check_args({"pretrained": pretrained, **model_args})
        settings = dict(checked.parent)
        if "system_prompt" in settings and settings["system_prompt"] not in (None, ""):
            settings["system_prompt"] = self._resolve_system_prompt(str(settings["system_prompt"]))
        self.family = checked.family
        self.prompting = with_overrides(prompting_of(checked.family), checked.family, settings)
        instrumentation = Instrumentation(checked)  # masks and the record folder, checked before loading
        self.batch_size_per_gpu = int(settings.get("batch_size", 1))
        self.use_cache = flag({"use_cache": settings.get("use_cache", True)}, "use_cache")
        self._device = torch.device(str(settings["device"]))
        self._rank = int(os.environ.get("RANK", "0"))  # lmms-eval's evaluator splits the documents by these
        self._world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self._model = self._load_model(checked, settings)
        self.processor = load_processor(
            checked.pretrained,
            revision=str(settings.get("revision", "main")),
            trust_remote_code=flag(settings, "trust_remote_code"),
            **self.prompting.processor_settings,
        )
        self.processor.tokenizer.padding_side = "left"
        self.instrument(instrumentation)

    @classmethod
    def check_args(cls, model_args: dict[str, Any]) -> CheckedArgs:
        return check_visheads_model_args(model_args, PROMPTING_KEYS)

    def instrument(self, instrumentation: Instrumentation) -> None:
        self.instrumentation = instrumentation
        instrumentation.attach(self._model, self.processor, rank=self._rank)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> Visheads:
        """lmms-eval's constructor from ``--model_args``; a model loaded earlier in a sweep is reused."""
        args = {**simple_parse_args_string(arg_string), **{k: v for k, v in (additional_config or {}).items() if v is not None}}
        model = shared_or_loaded(cls, args, lambda: super(Visheads, cls).create_from_arg_string(arg_string, additional_config))
        run_blocks.report(model.instrumentation)
        return model

    def clean(self) -> None:
        """lmms-eval frees the model after each evaluation; a model shared by a sweep stays for the next one."""
        if not is_shared(self):
            super().clean()

    @staticmethod
    def _load_model(checked: CheckedArgs, settings: dict[str, Any]) -> PreTrainedModel:
        dtype = settings.get("dtype", "auto")
        if isinstance(dtype, str) and dtype != "auto":
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise VisheadsError(f"dtype={dtype} is not a torch dtype; give auto, float32, bfloat16 or float16")
            dtype = getattr(torch, dtype)
        loading = {"attn_implementation": settings["attn_implementation"]} if settings.get("attn_implementation") else {}
        model = checked.family.model_class_object().from_pretrained(
            checked.pretrained,
            revision=str(settings.get("revision", "main")),
            dtype=dtype,
            device_map=str(settings["device_map"]),
            trust_remote_code=flag(settings, "trust_remote_code"),
            **loading,
        )
        return model.eval()

    @property
    def model(self) -> PreTrainedModel:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    def describe(self) -> dict[str, Any]:
        """What this run did to the model, for the ``visheads`` block of lmms-eval's results file."""
        return self.instrumentation.describe()

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise VisheadsError("visheads generates answers; it does not score loglikelihood (multiple_choice) tasks")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise VisheadsError("visheads answers one round per document; it does not run multi-round tasks")

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        try:
            return in_batches(requests, GEN_KWARGS_INDEX, self.batch_size, self.rank, self._generate_batch)
        finally:
            self.instrumentation.finish()

    def prompt_for(self, args: tuple) -> PromptedDoc:
        """One document of a chat request, prompted as the family's lmms-eval adapter prompts it."""
        _, doc_to_messages, gen_kwargs = args[:3]
        key = request_key(args)
        doc = self.task_dict[key.task][key.split][args[-3]]
        messages = ChatMessages(messages=doc_to_messages(doc))
        images, videos, audios = messages.extract_media()
        if videos or audios:
            raise VisheadsError(f"task '{key.task}' doc {key.doc_id} has videos or audio; visheads evaluates images and text")
        images = [sent_image(_loaded_image(image), self.prompting) for image in images]
        hf_messages = prompt_messages(messages.model_dump()["messages"], self.prompting)
        text = self.processor.apply_chat_template(hf_messages, tokenize=False, add_generation_prompt=True)
        return PromptedDoc(text, images, DocContext(key=key, doc=doc, images=images), (text, gen_kwargs))

    def _inputs(self, prompts: list[PromptedDoc]) -> dict[str, torch.Tensor]:
        """The batch's left-padded model inputs, one row per document."""
        texts = [prompt.text for prompt in prompts]
        images = [prompt.images for prompt in prompts] if any(prompt.images for prompt in prompts) else None
        call = dict(self.prompting.processor_call)
        bos = self.tokenizer.bos_token
        if bos is not None and texts[0].startswith(bos):
            # Chat templates that write the BOS themselves: tokenized as apply_chat_template(tokenize=True) does.
            call["add_special_tokens"] = False
        inputs = self.processor(images=images, text=texts, padding=True, return_tensors="pt", **call)
        return dict(inputs.to(self.device, self.model.dtype))

    def _stop_ids(self) -> tuple[dict[str, int], set[int]]:
        """generate's eos and pad arguments, and the ids that end an answer."""
        if self.prompting.stop_ids == "tokenizer":
            eos = self.tokenizer.eos_token_id
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
            return {"eos_token_id": eos, "pad_token_id": pad}, {eos}
        ends = self.model.generation_config.eos_token_id
        return {}, set(ends if isinstance(ends, list) else [] if ends is None else [ends])

    def _generation(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """generate's settings: the task's, over the adapter's defaults; greedy unless the task sets a temperature."""
        gen = {
            "max_new_tokens": self.prompting.max_new_tokens,
            "temperature": 0,
            "top_p": None,
            "top_k": None,
            "num_beams": 1,
            **gen_kwargs,
        }
        sampling = float(gen["temperature"] or 0) > 0
        settings = {
            "max_new_tokens": int(gen["max_new_tokens"]),
            "do_sample": sampling,
            "num_beams": int(gen["num_beams"] or 1),
            "use_cache": self.use_cache,
        }
        if sampling:
            settings.update({name: gen[name] for name in ("temperature", "top_p", "top_k") if gen[name] is not None})
        return settings

    def _answer(self, answer: str, gen_kwargs: dict[str, Any]) -> str:
        """The answer after the stop strings and stripping the family's adapter applies to it."""
        if self.prompting.until != "ignored":
            until = gen_kwargs["until"] if "until" in gen_kwargs else [self.tokenizer.decode(self.tokenizer.eos_token_id)]
            until = [until] if isinstance(until, str) else list(until or [])
            if self.prompting.until == "but_blank_lines":
                until = [term for term in until if term != "\n\n"]
            for term in until:
                if term:
                    answer = answer.split(term)[0]
        return answer.strip() if self.prompting.strip_answer else answer

    def _generate_batch(self, chunk: list[tuple]) -> list[GenerationResult]:
        """One left-padded ``generate`` over the documents of ``chunk`` (chat requests' arguments)."""
        prompts = [self.prompt_for(args) for args in chunk]
        inputs = self._inputs(prompts)
        gen_kwargs = chunk[0][GEN_KWARGS_INDEX]
        stops, end_ids = self._stop_ids()
        output = generate_batch(
            self.instrumentation,
            cast(Callable[..., Any], self.model.generate),
            prompts,
            {**inputs, **self._generation(gen_kwargs), **stops},
        )
        generated = output[:, inputs["input_ids"].shape[1] :]
        answers = self.tokenizer.batch_decode(generated, skip_special_tokens=True, **self.prompting.decode)
        results = []
        for answer, n_tokens, prompt in zip(answers, answer_lengths(generated, end_ids), prompts, strict=True):
            answer = self._answer(answer, gen_kwargs)
            results.append(GenerationResult(text=answer, token_counts=TokenCounts(output_tokens=n_tokens)))
            self.cache_hook.add_partial("generate_until", prompt.cache_key, answer)
        return results
