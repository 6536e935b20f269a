"""Greedy-generation accuracy of a LLaVA checkpoint on the six PointQA settings and a POPE-style split.

PointQA: the shipped test split (``tasks/pointqa/data/test.parquet``), each doc asked as the lmms-eval
task of each setting asks it: the image and the question come from the task's own functions
(``pointqa_doc_to_visual``, ``pointqa_doc_to_text`` with the setting's YAML kwargs), the prompt is the
processor's chat template (one image part, then the text, generation prompt added), generation is greedy
with ``max_new_tokens`` 16, and ``pointqa_process_results`` scores the answer (first number in it).

POPE-style: ``tools.smol.train.pope_split`` (scenes of split ``pope`` under ``--pope-seed``, disjoint from the
PointQA test split and from the training stream), balanced yes/no; an answer counts when its first word
is the right yes/no.

Attributes (``--attribute-docs``, a diagnostic of the pointer): the colour or shape of the pointed object, box
in the text or on the image (``tools.smol.train.attribute_split``, split ``attribute`` under ``--pope-seed``);
an answer counts when its first word is the right one.

Prompts of equal token length are batched together, so no prompt is padded and every answer is the one
a batch of one would give.

    python -m tools.smol.evaluate --model runs/a [--limit 70] [--pope-docs 200] [--attribute-docs 56] [--json runs/a/eval.json]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from tools.smol.train import Sample, attribute_split, chat_prompt, pope_split
from visheads_eval.data.attribute_task import first_word
from visheads_eval.data.pointqa import QUESTION_KINDS, VARIANTS
from visheads_eval.data.pointqa_task import pointqa_doc_to_text, pointqa_doc_to_visual, pointqa_process_results
from visheads_eval.resources import tasks_dir

SETTINGS = [f"{variant}_{kind}" for variant in VARIANTS for kind in QUESTION_KINDS]
MAX_NEW_TOKENS = 16


def read_pointqa(path: Path, limit: int | None) -> list[dict]:
    """The parquet's docs as the tasks see them (PIL image, plain Python numbers)."""
    frame = pd.read_parquet(path)
    docs = []
    for row in frame.head(limit).to_dict("records") if limit else frame.to_dict("records"):
        row["image"] = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
        row["bbox"] = [float(v) for v in row["bbox"]]
        for key in ("image_width", "image_height", "answer"):
            row[key] = int(row[key])
        docs.append(row)
    return docs


def pointqa_samples(docs: Sequence[dict]) -> list[tuple[Sample, dict]]:
    """Every doc in every setting, built by the task's functions; the doc rides along for scoring."""
    samples = []
    for setting in SETTINGS:
        variant, kind = setting.split("_")
        kwargs = {"question": kind, "rendering": variant, "preset": "visheads"}
        for doc in docs:
            image = pointqa_doc_to_visual(doc, kwargs)[0]
            samples.append((Sample(image, pointqa_doc_to_text(doc, kwargs), str(doc["answer"]), setting), doc))
    return samples


@torch.no_grad()
def generate(model: LlavaForConditionalGeneration, processor: LlavaProcessor, samples: Sequence[Sample], batch: int) -> list[str]:
    """Greedy answers, batching prompts of equal token length (no padding)."""
    encoded = [processor(images=[s.image], text=[chat_prompt(processor, s.text)], return_tensors="pt") for s in samples]
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, item in enumerate(encoded):
        by_length[item["input_ids"].shape[1]].append(index)
    answers: list[str] = [""] * len(samples)
    for indices in by_length.values():
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            inputs = {key: torch.cat([encoded[i][key] for i in chunk]) for key in ("input_ids", "attention_mask", "pixel_values")}
            output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
            texts = processor.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(chunk, texts, strict=False):
                answers[i] = text
    return answers


def evaluate(model_dir: Path, pointqa: Path, limit: int | None, pope_docs: int, attribute_docs: int, pope_seed: int, batch: int) -> dict:
    """Per-setting PointQA accuracy, their mean, POPE accuracy (with the share of "yes" answers) and the
    pointed object's attributes per rendering."""
    torch.set_num_threads(2)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = LlavaProcessor.from_pretrained(model_dir)
    start = time.time()
    pairs = pointqa_samples(read_pointqa(pointqa, limit))
    answers = generate(model, processor, [sample for sample, _ in pairs], batch)
    hits: dict[str, list[float]] = defaultdict(list)
    for (sample, doc), answer in zip(pairs, answers, strict=False):
        hits[sample.task].append(pointqa_process_results(doc, [answer])["pointqa_acc"])
    result: dict = {"pointqa": {setting: sum(values) / len(values) for setting, values in hits.items()}}
    result["pointqa_mean"] = sum(result["pointqa"].values()) / len(SETTINGS)
    result["pointqa_docs_per_setting"] = len(pairs) // len(SETTINGS)
    result["pointqa_examples"] = [
        {"setting": s.task, "answer": s.answer, "generated": a}
        for (s, _), a in list(zip(pairs, answers, strict=False))[:: max(len(pairs) // 12, 1)]
    ]
    pope = pope_split(pope_seed, pope_docs)
    pope_answers = [first_word(answer) for answer in generate(model, processor, pope, batch)]
    result["pope"] = sum(a == s.answer for s, a in zip(pope, pope_answers, strict=False)) / len(pope)
    result["pope_yes_share"] = sum(a == "yes" for a in pope_answers) / len(pope)
    result["pope_docs"] = len(pope)
    attributes = attribute_split(pope_seed, attribute_docs)
    attribute_hits: dict[str, list[bool]] = defaultdict(list)
    for sample, answer in zip(attributes, generate(model, processor, attributes, batch), strict=False):
        attribute_hits[sample.task].append(first_word(answer) == sample.answer)
    result["attribute"] = {task: sum(values) / len(values) for task, values in sorted(attribute_hits.items())}
    result["seconds"] = round(time.time() - start, 1)
    return result


def table(result: dict) -> str:
    lines = ["| setting | accuracy |", "|---|---|"]
    lines += [f"| pointqa_{setting} | {result['pointqa'][setting]:.3f} |" for setting in SETTINGS]
    lines.append(f"| **pointqa mean of six** ({result['pointqa_docs_per_setting']} docs each) | **{result['pointqa_mean']:.3f}** |")
    lines.append(
        f"| **POPE-style yes/no** ({result['pope_docs']} docs, yes share {result['pope_yes_share']:.2f}) | **{result['pope']:.3f}** |"
    )
    lines += [f"| {task} (colour or shape of the pointed object) | {value:.3f} |" for task, value in result["attribute"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--pointqa", type=Path, default=tasks_dir() / "pointqa" / "data" / "test.parquet")
    parser.add_argument("--limit", type=int, default=None, help="first N PointQA docs per setting (default: all 210)")
    parser.add_argument("--pope-docs", type=int, default=200)
    parser.add_argument("--attribute-docs", type=int, default=56)
    parser.add_argument("--pope-seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = evaluate(args.model, args.pointqa, args.limit, args.pope_docs, args.attribute_docs, args.pope_seed, args.batch)
    print(table(result))
    print(f"eval seconds: {result['seconds']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
