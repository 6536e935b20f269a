"""A LLaVA model on PointQA docs asked exactly as the six PointQA lmms-eval tasks ask: accuracy and heads.

Each doc is asked in every setting ``{plain,visual}_{general,object,super}`` through the tasks' own
functions (``visheads_eval.data.pointqa_task``: image, question text, scoring) with the tasks' default
options and the processor's chat template as lmms-eval's chat adapter applies it. ``accuracy_by_setting``
generates greedily; ``pointqa_head_maps`` records every head at the answer position with
``HeadRecorder`` and averages the statistics into the paper's per-head maps and score.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm
from transformers import BatchFeature, LlavaProcessor, PreTrainedModel

from tools.organism.batches import chat_prompt
from visheads_eval.analysis.scores import HeadMaps, ScoreParams, summarize
from visheads_eval.capture import HeadRecorder
from visheads_eval.data.pointqa import DEFAULT_POST_PROMPT, QUESTION_KINDS, VARIANTS
from visheads_eval.data.pointqa_task import METRIC, pointqa_doc_to_text, pointqa_doc_to_visual, pointqa_process_results
from visheads_eval.errors import VisheadsError

SETTINGS = tuple((variant, kind) for variant in VARIANTS for kind in QUESTION_KINDS)
MAX_NEW_TOKENS = 16  # as the tasks' generation_kwargs


def setting_name(variant: str, kind: str) -> str:
    """``plain_general`` ...: the suffix of the lmms-eval task ``pointqa_plain_general``."""
    return f"{variant}_{kind}"


def task_options(variant: str, kind: str) -> dict[str, str]:
    """The ``lmms_eval_specific_kwargs`` of the task ``pointqa_<variant>_<kind>``."""
    return {"question": kind, "rendering": variant, "post_prompt": DEFAULT_POST_PROMPT}


def prompt_batches(processor: LlavaProcessor, docs: Sequence[dict], variant: str, kind: str, batch_size: int) -> Iterator[BatchFeature]:
    """The model inputs of ``docs`` asked ``kind`` in the ``variant`` rendering, left-padded, in batches."""
    options = task_options(variant, kind)
    for start in range(0, len(docs), batch_size):
        chunk = docs[start : start + batch_size]
        prompts = [chat_prompt(processor, pointqa_doc_to_text(doc, options)) for doc in chunk]
        images = [pointqa_doc_to_visual(doc, options)[0] for doc in chunk]
        yield processor(images=images, text=prompts, padding=True, return_tensors="pt")


@torch.inference_mode()
def generate_answers(
    model: PreTrainedModel, processor: LlavaProcessor, docs: Sequence[dict], variant: str, kind: str, batch_size: int = 32
) -> list[str]:
    """The greedy answer text for every doc asked ``kind`` in the ``variant`` rendering."""
    tokenizer = processor.tokenizer
    answers: list[str] = []
    for inputs in prompt_batches(processor, docs, variant, kind, batch_size):
        out = model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        answers += tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return answers


def accuracy_by_setting(
    model: PreTrainedModel, processor: LlavaProcessor, docs: Sequence[dict], batch_size: int = 32, progress: bool = False
) -> dict[str, float]:
    """Accuracy per setting (``plain_general`` ...) and their mean under ``"mean"``."""
    accuracy = {}
    for variant, kind in tqdm(SETTINGS, desc="settings", disable=not progress):
        answers = generate_answers(model, processor, docs, variant, kind, batch_size)
        scores = [pointqa_process_results(doc, [answer])[METRIC] for doc, answer in zip(docs, answers, strict=False)]
        accuracy[setting_name(variant, kind)] = sum(scores) / len(scores)
    accuracy["mean"] = sum(accuracy.values()) / len(SETTINGS)
    return accuracy


@torch.inference_mode()
def pointqa_head_maps(
    model: PreTrainedModel,
    processor: LlavaProcessor,
    docs: Sequence[dict],
    name: str,
    params: ScoreParams = ScoreParams(),
    batch_size: int = 32,
) -> HeadMaps:
    """Every head's mean statistics and detection score over ``docs`` asked in all six settings.

    The query is the last prompt position (the one that predicts the answer); ``name`` labels the model.
    No question region is recorded, so ``params.part`` must be ``image`` (all image tokens).
    """
    if params.part != "image":
        raise VisheadsError(f"pointqa_head_maps scores the image part only (got part={params.part!r})")
    parts: dict[str, list[np.ndarray]] = {"image_attn": [], "concentration": [], "n_image_tokens": []}
    for variant, kind in SETTINGS:
        for inputs in prompt_batches(processor, docs, variant, kind, batch_size):
            with HeadRecorder(model, position="last_prompt") as recorder:
                model(**inputs)
            for stat in ("image_attn", "concentration"):
                parts[stat].append(recorder.stats[stat])
            parts["n_image_tokens"].append(recorder.token_counts["n_image_tokens"])
    arrays = {stat: np.concatenate(values) for stat, values in parts.items()}
    no_region = np.full_like(arrays["image_attn"], np.nan)
    return summarize(name, "pointqa", arrays["image_attn"], no_region, arrays["concentration"], arrays["n_image_tokens"], params)
