"""A small local lmms-eval task for the tests: counting questions over generated images.

Everything is written to a folder the test owns: the task YAML, its ``utils.py`` and a JSON-lines file
of docs that point at PNG images of varied, non-square sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

TASK_NAME = "visheads_count_test"
SIZES = [(80, 50), (50, 80), (64, 64), (120, 40), (40, 100), (90, 70)]

TASK_YAML = f"""\
task: {TASK_NAME}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {{data}}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""

UTILS = """\
from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image_path"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == doc["answer"])}
"""


def write_count_task(folder: Path) -> Path:
    """Write the task into ``folder`` and return ``folder`` (pass it as ``--include_path``)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    docs = []
    for index, (width, height) in enumerate(SIZES):
        image = Image.new("RGB", (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        count = index % 3 + 1
        for k in range(count):
            x = 4 + k * (width // (count + 1))
            draw.ellipse([x, height // 3, x + 10, height // 3 + 10], fill=(220, 30, 30))
        path = images / f"{index}.png"
        image.save(path)
        docs.append(
            {
                "question_id": index,
                "image_path": str(path),
                "question": "how many red circles are there?",
                "answer": str(count),
                "bbox": [4, height // 3, 10, 10],
            }
        )
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    (folder / f"{TASK_NAME}.yaml").write_text(TASK_YAML.format(data=data), encoding="utf-8")
    (folder / "utils.py").write_text(UTILS, encoding="utf-8")
    return folder
