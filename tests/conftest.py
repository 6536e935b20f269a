"""Shared fixtures: offline environment, tiny models of every family, a local lmms-eval task."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from fixtures.local_task import write_count_task  # noqa: E402
from fixtures.tiny_models import ALL_FAMILIES, build_family  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _isolated_hf_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Datasets' and visheads' caches in temporary folders, so tests never read or pollute the user's."""
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("hf_datasets_cache"))
    os.environ["VISHEADS_CACHE"] = str(tmp_path_factory.mktemp("visheads_cache"))  # no user-installed organism


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved tiny random models, one per family (the paper's LLaVA family and today's), by family name."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_family(family, root / family) for family in ALL_FAMILIES}


@pytest.fixture(scope="session")
def count_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a local generate_until task ``visheads_count_test`` and its data."""
    return write_count_task(tmp_path_factory.mktemp("local_task"))


@pytest.fixture(scope="session")
def deep_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA (Llama) with 6 layers x 8 heads: stages of 16 heads, enough for the paper's k=10 specs."""
    return build_family("llava_llama", tmp_path_factory.mktemp("deep_model") / "llava_llama_6x8", n_layers=6, n_heads=8)
