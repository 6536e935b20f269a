"""A mask's drop as a paired comparison with the unmasked run, over the documents both answered.

Masking heads *caused* a drop only if both runs answered the same documents: the drop is computed over
the documents both runs' samples logs hold (paired by task and doc id; each samples log is one task's one
split), with a 95% confidence interval from a paired bootstrap over those documents (scipy, percentile
method, ``BOOTSTRAP_RESAMPLES`` resamples, seeded: the seed goes into the table) and the exact McNemar
test of the two runs' per-document correctness (a two-sided binomial test on the discordant documents,
scipy). Without samples logs the documents cannot be paired: the drop is the difference of the two
aggregates when both runs answered the same number of documents, and refused otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class PairedDrop:
    """The drop of a masked run from the unmasked one, in accuracy points."""

    n_docs: int  # documents both runs answered
    drop: float
    ci_low: float  # 95% paired bootstrap interval of the drop
    ci_high: float
    p_mcnemar: float  # exact McNemar test: masked and unmasked correct equally often


def paired_interval(base: np.ndarray, ablated: np.ndarray, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% paired bootstrap interval, in points, of ``mean(base) - mean(ablated)``: per-document scores in 0..1
    (correctness, or a correctness averaged over several masked runs), one entry per document in both."""
    if np.array_equal(base, ablated):
        return 0.0, 0.0
    interval = stats.bootstrap(
        (base, ablated),
        lambda b, a, axis: 100.0 * (b.mean(axis=axis) - a.mean(axis=axis)),
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


def paired_drop(unmasked: Mapping[int, bool], masked: Mapping[int, bool], seed: int = BOOTSTRAP_SEED) -> PairedDrop | None:
    """The drop over the documents in both ``{doc_id: correct}`` maps; ``None`` when they share none."""
    docs = sorted(unmasked.keys() & masked.keys())
    if not docs:
        return None
    base = np.array([unmasked[doc] for doc in docs], dtype=float)
    ablated = np.array([masked[doc] for doc in docs], dtype=float)
    drop = 100.0 * (base.mean() - ablated.mean())
    low, high = paired_interval(base, ablated, seed)
    only_unmasked = int(((base == 1) & (ablated == 0)).sum())
    only_masked = int(((base == 0) & (ablated == 1)).sum())
    discordant = only_unmasked + only_masked
    p_value = stats.binomtest(only_unmasked, discordant, 0.5).pvalue if discordant else 1.0
    return PairedDrop(n_docs=len(docs), drop=float(drop), ci_low=low, ci_high=high, p_mcnemar=float(p_value))
