"""Synthetic lmms-eval output, laid out as lmms-eval 0.7.3 writes it, for benchmarks and tests.

``<output>/<model folder>/<date>_results.json`` with ``results`` (``"metric,filter"`` keys beside their
``_stderr`` twins and the task's ``alias``), ``config.model_args``, ``n-samples`` (the documents of each
task: its samples' count, or ``n_docs``) and, for runs made with the
``lmms_eval`` command, a ``visheads`` block; ``<date>_samples_<task>.jsonl`` beside it, one doc a line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(
    output: Path,
    date: str,
    model: str,
    metrics: dict[str, dict[str, float]],
    mask: str | None = None,
    heads: list[str] | None = None,
    block: bool = True,
    samples: dict[str, list[dict[str, Any]]] | None = None,
    record_dir: str | None = None,
    shape: tuple[int, int] = (32, 32),
    n_docs: int = 100,
) -> Path:
    """Write one run's results file (and samples files); returns the results file."""
    folder = output / model.replace("/", "__")
    folder.mkdir(parents=True, exist_ok=True)
    model_args = f"pretrained={model}" + (f",mask={mask}" if mask else "")
    results = {}
    for task, values in metrics.items():
        results[task] = {"alias": task}
        for metric, value in values.items():
            results[task][f"{metric},none"] = value
            results[task][f"{metric}_stderr,none"] = "N/A"
    data: dict[str, Any] = {
        "results": results,
        "configs": {task: {"task": task} for task in metrics},
        "config": {"model": "llava_visheads", "model_args": model_args, "batch_size": "1"},
        "model_name": "llava_visheads",
        "n-samples": {task: {"original": n_docs, "effective": len((samples or {}).get(task, [])) or n_docs} for task in metrics},
    }
    if block:
        data["visheads"] = {
            "pretrained": model,
            "n_layers": shape[0],
            "n_heads": shape[1],
            "mask": None if mask is None else {"name": mask, "mode": "zero", "heads": heads or [], "seed": 0, "ranking": "/rankings/m.csv"},
            "record": None if record_dir is None else {"dir": record_dir, "position": "last_prompt"},
        }
    path = folder / f"{date}_results.json"
    path.write_text(json.dumps(data, indent=2))
    for task, rows in (samples or {}).items():
        lines = [json.dumps({"doc_id": i, "target": "x", "filtered_resps": ["x"], **row}) for i, row in enumerate(rows)]
        (folder / f"{date}_samples_{task}.jsonl").write_text("\n".join(lines) + "\n")
    return path
