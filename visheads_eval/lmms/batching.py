"""What this project's lmms-eval models share: batches of lmms-eval requests, their documents, and failures.

Both ``llava_visheads``'s batching adapters (:mod:`visheads_eval.lmms.model`) and ``visheads``
(:mod:`visheads_eval.lmms.visheads`) batch as lmms-eval's own adapters do: the requests are grouped by
generation kwargs with lmms-eval's ``utils.Collator``, cut into batches of ``--batch_size`` documents and
their results put back in lmms-eval's order (:func:`in_batches`). Each document of a batch becomes a
:class:`PromptedDoc` whose :class:`~visheads_eval.instrumentation.DocContext` tells the run's
instrumentation which document a row answers; a ``generate`` that raises fails the run with a
:class:`GenerationFailed` naming the batch's documents (:func:`generate_batch`), where lmms-eval's adapters
would record an empty answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from PIL import Image
from tqdm import tqdm

from visheads_eval.instrumentation import DocContext, Instrumentation
from visheads_eval.records import RecordKey


class GenerationFailed(RuntimeError):
    """``generate`` raised on a document; lmms-eval's adapters would have recorded an empty answer instead."""


@dataclass(frozen=True)
class PromptedDoc:
    """One document of a batch, prompted as the model prompts it alone."""

    text: str  # the prompt after the chat template
    images: list[Image.Image]
    context: DocContext
    cache_key: tuple  # what lmms-eval's cache hook gets for this document


def images_in(value: Any) -> list[Image.Image]:
    """The images in what a doc reader returned: a list of visuals, or chat messages holding them."""
    if isinstance(value, Image.Image):
        return [value]
    if isinstance(value, dict):
        return [image for item in value.values() for image in images_in(item)]
    if isinstance(value, (list, tuple)):
        return [image for item in value for image in images_in(item)]
    return []


def request_key(args: Sequence[Any]) -> RecordKey:
    """The record key of a request whose arguments end in ``doc_id, task, split``, as lmms-eval's all do."""
    doc_id, task, split = args[-3:]
    return RecordKey(task=task, split=split, doc_id=int(doc_id))


def in_batches(
    requests: list[Instance], gen_kwargs_index: int, batch_size: int, rank: int, run_batch: Callable[[list[tuple]], list[Any]]
) -> list[Any]:
    """``run_batch`` over batches of at most ``batch_size`` requests' arguments, grouped by their generation
    kwargs (at ``gen_kwargs_index``) and kept in lmms-eval's order within a group, as lmms-eval's adapters group
    them; the results in the order of ``requests``."""
    at = gen_kwargs_index
    collator = lmms_utils.Collator(
        [request.args for request in requests], lambda args: (args[at], args[at]), group_fn=lambda args: args[at], grouping=True
    )
    results: list[Any] = []
    progress = tqdm(total=math.ceil(len(requests) / batch_size), disable=rank != 0, desc="Model Responding")
    try:
        for chunk in collator.get_batched(n=batch_size, batch_fn=None):
            results += run_batch(chunk)
            progress.update(1)
    finally:
        progress.close()
    return collator.get_original(results)


def generate_batch(
    instrumentation: Instrumentation, generate: Callable[..., Any], prompts: list[PromptedDoc], kwargs: dict[str, Any]
) -> torch.Tensor:
    """One ``generate(**kwargs)`` over the rows of ``prompts``, through the run's instrumentation; a
    :class:`GenerationFailed` naming the batch's documents if it raises."""
    try:
        return instrumentation.generate(generate, [prompt.context for prompt in prompts], (), kwargs)
    except Exception as error:
        where = ", ".join(f"task '{p.context.key.task}' ({p.context.key.split}) doc {p.context.key.doc_id}" for p in prompts)
        raise GenerationFailed(f"generation failed on the batch of {where}: {type(error).__name__}: {error}") from error


def answer_lengths(generated: torch.Tensor, end_ids: Collection[int]) -> list[int]:
    """Each row's generated tokens through its first end token (all of them if none): what one document
    generated alone, without the padding that fills a finished row of a batch."""
    ends = torch.isin(generated, torch.tensor(sorted(end_ids), dtype=generated.dtype, device=generated.device))
    lengths = []
    for row in range(generated.shape[0]):
        found = ends[row].nonzero()
        lengths.append(int(found[0]) + 1 if len(found) else generated.shape[1])
    return lengths
