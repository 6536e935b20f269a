"""Seeded random per-head statistics shaped like real recordings, to size and time what handles records.

Not a model: the draws only have the structure that matters for storage and analysis at scale. Each
head has its own typical image attention (most heads low, a few "visual" heads high) and samples vary
around it (Beta draws, full float32 precision, so nothing compresses better than real values would);
``text_attn`` is ``1 - image_attn``; ``region_attn`` is a share of ``image_attn``; visual heads are more
concentrated; each head's ``image_argmax`` mostly falls near a token of its own. Benchmarks
(``benchmarks/record_size.py``) and tests of readers use it; the seed goes into the folder's run.json.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visheads_eval.records.format import RecordKey
from visheads_eval.records.writer import DEFAULT_FLUSH_EVERY, RecordWriter

VISUAL_HEAD_SHARE = 0.03  # share of heads drawn as visual heads


def synthetic_stats(
    rng: np.random.Generator, n_samples: int, n_layers: int, n_heads: int, n_image_tokens: int = 576, region_share: float = 1.0
) -> dict[str, np.ndarray]:
    """Statistics of ``n_samples`` samples, each ``(n_samples, n_layers, n_heads)``.

    ``region_attn`` is NaN for the samples drawn without a region (a share ``1 - region_share``).
    """
    shape = (n_samples, n_layers, n_heads)
    visual = rng.random((n_layers, n_heads)) < VISUAL_HEAD_SHARE  # (layer, head)
    typical = np.where(visual, rng.beta(6.0, 3.0, visual.shape), rng.beta(1.2, 8.0, visual.shape))  # (layer, head)
    spread = 20.0
    image_attn = rng.beta(typical * spread + 0.05, (1 - typical) * spread + 0.05, shape)
    region_attn = image_attn * rng.beta(np.where(visual, 4.0, 1.5), 4.0, shape)
    region_attn[rng.random(n_samples) >= region_share] = np.nan
    focus = np.where(visual, 0.6, 0.25)  # (layer, head) typical concentration
    concentration = rng.beta(focus * spread, (1 - focus) * spread, shape)
    favourite = rng.integers(0, n_image_tokens, (n_layers, n_heads))  # (layer, head) each head's usual token
    near = favourite + rng.integers(-3, 4, shape)
    image_argmax = np.where(rng.random(shape) < 0.6, near, rng.integers(0, n_image_tokens, shape)).clip(0, n_image_tokens - 1)
    return {
        "image_attn": image_attn.astype(np.float32),
        "text_attn": (1 - image_attn).astype(np.float32),
        "region_attn": region_attn.astype(np.float32),
        "concentration": concentration.astype(np.float32),
        "image_argmax": image_argmax.astype(np.int32),
    }


def write_synthetic_records(
    directory: str | os.PathLike[str],
    *,
    model: str,
    n_layers: int,
    n_heads: int,
    n_samples: int,
    tasks: Sequence[str] = ("pointqa_visual_general",),
    seed: int = 0,
    n_image_tokens: int = 576,
    region_share: float = 1.0,
    flush_every: int = DEFAULT_FLUSH_EVERY,
) -> Path:
    """Record ``n_samples`` synthetic samples per task into ``directory`` with :class:`RecordWriter`."""
    rng = np.random.default_rng(seed)
    run = {"model": model, "model_args": "synthetic", "position": "last_prompt", "mask": None, "seeds": {"synthetic": seed}}
    with RecordWriter(directory, run=run, n_layers=n_layers, n_heads=n_heads, flush_every=flush_every) as writer:
        for task in tasks:
            stats = synthetic_stats(rng, n_samples, n_layers, n_heads, n_image_tokens, region_share)
            n_region_tokens = rng.integers(1, n_image_tokens // 4 + 1, n_samples)
            answers = rng.integers(1, 8, n_samples)
            for i in range(n_samples):
                has_region = not np.isnan(stats["region_attn"][i, 0, 0])
                sample = {name: values[i] for name, values in stats.items() if name != "region_attn" or has_region}
                writer.add(
                    RecordKey(task, "test", i),
                    sample,
                    n_keys=n_image_tokens + 60,
                    n_image_tokens=n_image_tokens,
                    n_region_tokens=int(n_region_tokens[i]) if has_region else 0,
                    bbox=[10.0, 20.0, 50.0, 40.0] if has_region else None,
                    image_size=(640, 480),
                    answer=str(answers[i]),
                )
    return Path(directory)
