"""The organism: a tiny LLaVA trained on synthetic PointQA, shipped with the package (``visheads-tiny``).

It is small enough to run in tests, and it answers synthetic PointQA well enough that its attention heads
can be studied: it has visual heads to find. Only its weights, processor and run record ship here; the
code that trains it lives in the repository's ``tools/organism`` (not in the wheel). A re-trained run
installed with ``python -m tools.organism RUN --install`` goes to the user's cache
(:mod:`visheads_eval.user_cache`) and is what ``pretrained=visheads-tiny`` loads while it is there.
"""

from __future__ import annotations

from pathlib import Path

from visheads_eval.user_cache import model_dir

NAME = "visheads-tiny"
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def installed_dir() -> Path:
    """Where a re-trained organism is installed for this user (it may not exist)."""
    return model_dir(NAME)


def weights_dir() -> Path:
    """The folder ``pretrained=visheads-tiny`` loads: an organism installed in the user's cache if there is
    one, else the shipped one (config.json, model.safetensors, tokenizer and processor files)."""
    if (installed_dir() / "config.json").is_file():
        return installed_dir()
    if not (SHIPPED_DIR / "config.json").is_file():
        raise FileNotFoundError(f"the organism's weights are missing from {SHIPPED_DIR}; reinstall visheads_eval")
    return SHIPPED_DIR
