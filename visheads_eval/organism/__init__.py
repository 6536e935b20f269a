"""The organism: a tiny LLaVA trained on synthetic PointQA, shipped with the package (``visheads-tiny``).

It is small enough to train on one CPU core in half an hour and to run in tests, and it answers
synthetic PointQA well enough that its attention heads can be studied: it has visual heads to find.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def weights_dir() -> Path:
    """The folder of the shipped organism (config.json, model.safetensors, tokenizer and processor files)."""
    if not (WEIGHTS_DIR / "config.json").is_file():
        raise FileNotFoundError(f"the organism's weights are missing from {WEIGHTS_DIR}; reinstall visheads_eval")
    return WEIGHTS_DIR
