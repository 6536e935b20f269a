"""What ``llava_visheads`` and ``visheads`` do around each ``generate`` call, in either host: mask heads, record
attention, keep records. Host-agnostic: the lmms-eval and lm-eval adapters (``visheads_eval.lmms``,
``visheads_eval.lm_eval``) hand it the loaded model, each batch's documents and their ``generate``.

What it does follows this project's own model_args (parsed once, before the model loads, into
:class:`~visheads_eval.model_args.OwnOptions`):

- ``mask=NAME|FILE|L2H5+L10H3`` with ``mask_dir=``, ``ranking=``, ``mask_mode=``, ``mask_seed=``:
  the heads to remove (:mod:`visheads_eval.masking.specs`), resolved and validated before loading;
- ``record=DIR`` with ``position=answer|last_prompt``: per-head statistics of every sample, written as
  sidecar records (:mod:`visheads_eval.records`), with the question's region when the doc has a ``bbox``;
  ``logit_lens=true`` adds the logit lens at the same query (:mod:`visheads_eval.capture.lens`);
- ``head_means=FILE``: every head's mean output over the run, the reference that ``mode: mean`` needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedModel

import visheads_eval
from visheads_eval.capture import HeadRecorder
from visheads_eval.errors import VisheadsError
from visheads_eval.geometry import region_token_mask
from visheads_eval.heads import HeadShape
from visheads_eval.masking.ablation import HeadMask
from visheads_eval.masking.means import HeadMeans, load_means, save_means
from visheads_eval.masking.specs import ResolvedMask, load_mask, resolve_spec
from visheads_eval.model_args import CheckedArgs, OwnOptions
from visheads_eval.records import RecordKey, RecordWriter
from visheads_eval.records.format import identity_difference, read_run, run_identity


@contextlib.contextmanager
def generate_through(model: PreTrainedModel, route: Callable[..., Any]) -> Iterator[None]:
    """While the block runs, ``model.generate(*args, **kwargs)`` is ``route(generate, *args, **kwargs)``, with
    ``generate`` the model's own: how a host hands its parent adapter's ``generate`` calls to the run's
    instrumentation. The instance attribute is removed in ``finally``; the class's method is back."""
    setattr(model, "generate", functools.partial(route, model.generate))  # noqa: B010  (an instance attribute over a method)
    try:
        yield
    finally:
        del model.generate


@dataclass(frozen=True)
class DocContext:
    """The document a generate call answers, as the adapter saw it."""

    key: RecordKey
    doc: dict
    images: list[Image.Image]


def _has_region(context: DocContext) -> bool:
    """A region is recorded for a doc with a box and exactly one image."""
    return context.doc.get("bbox") is not None and len(context.images) == 1


class Instrumentation:
    """The masks, recorder, records and means of one run of ``llava_visheads`` or ``visheads``."""

    def __init__(self, checked: CheckedArgs) -> None:
        options = checked.own
        self.shape = HeadShape.from_config(checked.config)
        self.family = checked.family
        self.pretrained = checked.name
        self.weights = checked.weights
        self.position = options.position
        self.record_dir = options.record
        self.means_path = options.head_means
        self.logit_lens = options.logit_lens
        self.mask = self._resolve_mask(options)
        # A mask of mode mean names its reference means file.
        self._means = load_means(self.mask.means_path, self.shape) if self.mask is not None and self.mask.means_path is not None else None
        self.run: dict[str, Any] = {
            "model": self.pretrained,
            "family": self.family.model_type,
            "weights": self.weights,
            "n_layers": self.shape.n_layers,
            "n_heads": self.shape.n_heads,
            "position": self.position,
            "logit_lens": self.logit_lens,
            "mask": self.mask.to_json() if self.mask is not None else None,
            "model_args": dict(options.given),
            "visheads_eval_version": visheads_eval.__version__,
        }
        if self.record_dir is not None and (self.record_dir / "run.json").is_file():
            self._check_resumable(self.record_dir)
        self._writer: RecordWriter | None = None
        self._accumulator: HeadMeans | None = None
        self._block: dict[str, Any] = {}
        self._model: Any = None  # the loaded model and its processor, from attach()
        self._processor: Any = None

    def _resolve_mask(self, options: OwnOptions) -> ResolvedMask | None:
        """The heads ``mask=`` removes, with the spec's mode and seed overridden as asked."""
        if options.mask is None:
            return None
        spec = load_mask(options.mask, options.mask_dir)
        if options.mask_mode is not None:
            spec = dataclasses.replace(spec, mode=options.mask_mode)
        if options.mask_seed is not None:
            if spec.select is None or spec.select.order == "top":
                raise VisheadsError(f"mask_seed applies to random and others specs; mask '{spec.name}' draws nothing at random")
            spec = dataclasses.replace(spec, select=dataclasses.replace(spec.select, seed=options.mask_seed))
        return resolve_spec(spec, self.shape, model=self.pretrained, ranking=options.ranking, weights=self.weights)

    def _check_resumable(self, record_dir: Path) -> None:
        """Refuse, before the model loads, a record folder that holds a different run."""
        found = read_run(record_dir)
        difference = identity_difference(run_identity(json.loads(json.dumps(self.run))), run_identity(found))
        if difference:
            raise VisheadsError(
                f"{record_dir} holds the records of a different run (this run vs the folder's: {difference}); "
                "record this run into a new folder"
            )

    def attach(self, model: PreTrainedModel, processor: Any, rank: int) -> None:
        """Bind to the loaded model; open the record folder."""
        self._model = model
        self._block = self._results_block(model)
        self._processor = processor
        if self.record_dir is not None:
            self._writer = RecordWriter(self.record_dir, run=self.run, n_layers=self.shape.n_layers, n_heads=self.shape.n_heads, rank=rank)
        if self.means_path is not None:
            self._accumulator = HeadMeans(model)

    def describe(self) -> dict[str, Any]:
        """What this run did to the model: the ``visheads`` block of the host's results file. Filled in by
        :meth:`attach`, so that it stays valid after the host releases the model."""
        return dict(self._block)

    def _results_block(self, model: PreTrainedModel) -> dict[str, Any]:
        return {
            "visheads_eval_version": visheads_eval.__version__,
            "pretrained": self.pretrained,
            "family": self.family.model_type,
            "model_class": type(model).__name__,
            "attn_implementation": model.config._attn_implementation,
            "n_layers": self.shape.n_layers,
            "n_heads": self.shape.n_heads,
            "args": dict(self.run["model_args"]),
            "mask": self.mask.to_json() if self.mask is not None else None,
            "record": {"dir": str(self.record_dir), "position": self.position, "logit_lens": self.logit_lens} if self.record_dir else None,
            "head_means": str(self.means_path) if self.means_path else None,
            "weights": self.weights,
        }

    def generate(self, generate: Any, contexts: list[DocContext | None], args: tuple, kwargs: dict) -> Any:
        """Run one ``generate`` call over a batch (one doc context per row, left-padded prompts) with the
        run's masks, and record each row's doc."""
        # The means accumulate over the model's own generate only: the recorder's fallback forward (prompt and
        # first token again, when generation stopped after one token) would count the prompt twice.
        accumulating = self._accumulator if self._accumulator is not None else contextlib.nullcontext()
        with contextlib.ExitStack() as stack:
            if self.mask is not None and self.mask.heads:
                stack.enter_context(HeadMask(self._model, self.mask.heads, mode=self.mask.mode, means=self._means))
            writer = self._writer
            if writer is None or all(context is None or context.key in writer for context in contexts):
                with accumulating:
                    return generate(*args, **kwargs)
            input_ids = kwargs["input_ids"]
            region = self._region(contexts, input_ids)
            with (
                HeadRecorder(self._model, position=self.position, region_mask=region, logit_lens=self.logit_lens) as recorder,
                accumulating,
            ):
                output = generate(*args, **kwargs)
            recorder = self._complete(recorder, output, kwargs, region)
            self._write(writer, contexts, recorder, output, input_ids)
            return output

    def _region(self, contexts: list[DocContext | None], input_ids: torch.Tensor) -> torch.Tensor | None:
        """``(batch, prompt_len)``: the image tokens inside each row's box (none for a row without one)."""
        boxed = [(row, context) for row, context in enumerate(contexts) if context is not None and _has_region(context)]
        if not boxed:
            return None
        region = torch.zeros_like(input_ids, dtype=torch.bool)
        image_token = self._model.config.image_token_id
        for row, context in boxed:
            positions = (input_ids[row] == image_token).nonzero().squeeze(-1)
            in_region = region_token_mask(
                list(map(float, context.doc["bbox"])), context.images[0].size, self._processor, self._model.config
            )
            if len(in_region) != len(positions):
                raise VisheadsError(
                    f"region geometry gives {len(in_region)} image tokens but the prompt has {len(positions)} "
                    f"(task {context.key.task}, doc {context.key.doc_id}); please report this processor setup"
                )
            region[row, positions[torch.from_numpy(in_region).to(positions.device)]] = True
        return region

    def _complete(self, recorder: HeadRecorder, output: torch.Tensor, kwargs: dict, region: torch.Tensor | None) -> HeadRecorder:
        """For ``position=answer`` when generation stopped after one token: one forward over the prompt
        plus that token gives the same row (its keys are the prompt and the token itself)."""
        if self.position != "answer" or recorder.complete:
            return recorder
        if region is not None:
            region = torch.cat([region, torch.zeros_like(region[:, :1])], 1)
        with (
            torch.inference_mode(),
            HeadRecorder(self._model, position="last_prompt", region_mask=region, logit_lens=self.logit_lens) as fallback,
        ):
            self._model(**self._answer_inputs(kwargs, output))
        return fallback

    def _answer_inputs(self, kwargs: dict, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's inputs (the tensors among ``generate``'s keyword arguments, no generation settings) for
        the prompt plus the first generated token: per-token inputs grow by one position, the family's side
        inputs (``mm_token_type_ids``, ``token_type_ids``) marking it as text (0), the attention mask as seen."""
        prompt = kwargs["input_ids"]
        inputs = {name: value for name, value in kwargs.items() if isinstance(value, torch.Tensor)}
        inputs["input_ids"] = output[:, : prompt.shape[1] + 1]
        for name, value in inputs.items():
            if name == "input_ids" or value.shape[:2] != prompt.shape:
                continue
            if name == "attention_mask":
                inputs[name] = torch.cat([value, torch.ones_like(value[:, :1])], 1)
            elif name in self.family.side_inputs:
                inputs[name] = torch.cat([value, torch.zeros_like(value[:, :1])], 1)
            else:
                raise VisheadsError(
                    f"{self.family.label} got a per-token input '{name}' that visheads_eval does not know how to extend "
                    "by the answer token; record with position=last_prompt, or report this input"
                )
        return inputs

    def _write(
        self, writer: RecordWriter, contexts: list[DocContext | None], recorder: HeadRecorder, output: torch.Tensor, input_ids: torch.Tensor
    ) -> None:
        stats, counts = recorder.stats, recorder.token_counts
        lens = recorder.lens if self.logit_lens else None
        answers = self._processor.tokenizer.batch_decode(output[:, input_ids.shape[1] :], skip_special_tokens=True)
        for row, context in enumerate(contexts):
            if context is None or context.key in writer:
                continue
            has_region = _has_region(context)
            writer.add(
                context.key,
                {name: value[row] for name, value in stats.items() if name != "region_attn" or has_region},
                n_keys=int(counts["n_keys"][row]),
                n_image_tokens=int(counts["n_image_tokens"][row]),
                n_region_tokens=int(counts["n_region_tokens"][row]),
                bbox=list(map(float, context.doc["bbox"])) if has_region else None,
                image_size=context.images[0].size if len(context.images) == 1 else None,
                answer=answers[row],
                lens={name: value[row] for name, value in lens.items()} if lens is not None else None,
            )

    def finish(self) -> None:
        """Make everything so far durable: flush records, save the means."""
        if self._writer is not None:
            self._writer.flush()
        if self._accumulator is not None and self.means_path is not None and self._accumulator.positions:
            save_means(self.means_path, self._accumulator.means, {"model": self.pretrained, "positions": self._accumulator.positions})
