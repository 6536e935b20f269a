"""Checks on the recorded values themselves: what the statistics must satisfy by their definitions.

Reading a record folder already checks its files (format, run, shape, checksums); these checks catch a
recorder that wrote wrong numbers, e.g. NaN from a half-precision overflow or attention that does not
sum to one. See docs/architecture.md, "Statistics per head".
"""

from __future__ import annotations

import numpy as np

from visheads_eval.records.reader import Records

# Attention computed in half precision sums to one only this closely.
SUM_TOLERANCE = 1e-2
# Log-probabilities, entropies and KL from float32 log-softmax are exact to about this.
LENS_TOLERANCE = 1e-3


def value_problems(records: Records) -> list[str]:
    """One line per violated property, with how many samples violate it; empty if the values are sound."""
    problems = []

    def report(violating: np.ndarray, what: str) -> None:
        """``violating``: (n_samples, n_layers, n_heads) booleans."""
        per_sample = violating.any(axis=(1, 2))
        if per_sample.any():
            first = records.meta.iloc[int(np.argmax(per_sample))]
            problems.append(
                f"{int(per_sample.sum())} of {len(records)} samples have {what} (first: {first['task']}/{first['split']}/{first['doc_id']})"
            )

    image = records.stat("image_attn")  # (sample, layer, head)
    text = records.stat("text_attn")
    for name, values in (("image_attn", image), ("text_attn", text), ("concentration", records.stat("concentration"))):
        # sums of float32 (or half) probabilities exceed 1 by rounding: 1.0000002 is sound
        report(~((values >= 0) & (values <= 1 + SUM_TOLERANCE)), f"{name} outside [0, 1] or NaN")
    report(~(np.abs(image + text - 1) <= SUM_TOLERANCE), f"image_attn + text_attn differing from 1 by more than {SUM_TOLERANCE}")
    region = records.stat("region_attn")
    with_region = ~np.isnan(region).all(axis=(1, 2))
    report(with_region[:, None, None] & ~((region >= 0) & (region <= image + SUM_TOLERANCE)), "region_attn outside [0, image_attn] or NaN")
    argmax = records.stat("image_argmax")
    n_image_tokens = records.meta["n_image_tokens"].to_numpy()[:, None, None]
    report((argmax < 0) | (argmax >= np.maximum(n_image_tokens, 1)), "image_argmax outside the image tokens")
    if records.has_lens:
        problems += _lens_problems(records)
    return problems


def _lens_problems(records: Records) -> list[str]:
    """The logit lens's own properties: log-probabilities <= 0, ranks >= 0, entropy and KL >= 0, and the
    last reading is the model's output, whose top-1 is the answer token (rank 0, KL 0)."""
    problems = []

    def report(violating: np.ndarray, what: str) -> None:
        """``violating``: (n_samples, n_layers + 1) booleans."""
        per_sample = violating.any(axis=1)
        if per_sample.any():
            first = records.meta.iloc[int(np.argmax(per_sample))]
            problems.append(
                f"{int(per_sample.sum())} of {len(records)} samples have {what} (first: {first['task']}/{first['split']}/{first['doc_id']})"
            )

    logprob, rank, top1 = records.lens("answer_logprob"), records.lens("answer_rank"), records.lens("top1")
    report(~(logprob <= LENS_TOLERANCE), "a lens answer_logprob above 0 or NaN")
    report(rank < 0, "a negative lens answer_rank")
    for name in ("entropy", "kl_to_final"):
        report(~(records.lens(name) >= -LENS_TOLERANCE), f"a lens {name} below 0 or NaN")
    final = np.zeros_like(rank, dtype=bool)
    final[:, -1] = True
    token = records.meta["lens_answer_token"].to_numpy()[:, None]
    report(
        final & ((rank != 0) | (top1 != token) | ~(np.abs(records.lens("kl_to_final")) <= LENS_TOLERANCE)),
        "a last lens reading that is not the model's answer (rank 0, top-1 = answer token, KL 0)",
    )
    return problems
