"""Top-k against random-k heads (visheads_eval.analysis.top_vs_random): drops pooled over a group's tasks and paired
over the documents every run answered, the random drop averaged over the seeds, checked against numbers worked out
by hand and a paired bootstrap written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.synthetic_results import write_results
from visheads_eval.analysis.results import find_runs
from visheads_eval.analysis.top_vs_random import to_markdown, top_vs_random
from visheads_eval.errors import VisheadsError

MODEL = "org/model-7b"
TASKS = ("pointqa_plain_colour", "pointqa_visual_colour")


def _samples(correct: list[int]) -> list[dict]:
    return [{"attribute_acc": float(c)} for c in correct]


def _run(output: Path, day: int, correct: dict[str, list[int]], mask: str | None = None, seed: int | None = None) -> None:
    metrics = {task: {"attribute_acc": float(np.mean(values))} for task, values in correct.items()}
    samples = {task: _samples(values) for task, values in correct.items()}
    path = write_results(output, f"202501{day:02d}_000000", MODEL, metrics, mask=mask, heads=["L0H0"] if mask else None, samples=samples)
    if mask is not None:
        data = json.loads(path.read_text())
        data["visheads"]["mask"]["seed"] = seed
        path.write_text(json.dumps(data))


UNMASKED = {TASKS[0]: [1, 1, 1, 1, 1, 1, 1, 1, 1, 0], TASKS[1]: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]}
TOP = {TASKS[0]: [0, 0, 0, 1, 1, 1, 0, 1, 1, 0], TASKS[1]: [0, 0, 1, 1, 1, 0, 1, 1, 0, 0]}
RANDOM = [  # three draws
    {TASKS[0]: [1, 1, 1, 1, 1, 1, 1, 1, 1, 0], TASKS[1]: [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]},
    {TASKS[0]: [1, 0, 1, 1, 1, 1, 1, 1, 1, 0], TASKS[1]: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]},
    {TASKS[0]: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], TASKS[1]: [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]},
]


def _write_study(output: Path) -> None:
    _run(output, 1, UNMASKED)
    _run(output, 2, TOP, mask="top5pct")
    for seed, draw in enumerate(RANDOM):
        _run(output, 3 + seed, draw, mask="random5pct", seed=seed)


def test_top_and_random_drops_pooled_over_the_group_with_paired_intervals(tmp_path: Path) -> None:
    _write_study(tmp_path)
    (row,) = top_vs_random(find_runs([tmp_path]), "top5pct", "random5pct", {"attributes": TASKS}).itertuples()
    # By hand over the 20 pooled documents: unmasked 9 + 8 = 17 correct; top 5 + 5 = 10, a drop of 35 points; the
    # three draws 16, 16 and 17 correct, a mean drop of (17 - 49 / 3) / 20 = 3.33 points.
    assert (row.n_docs, row.n_seeds, row.unmasked) == (20, 3, pytest.approx(85.0))
    assert row.top_drop == pytest.approx(35.0)
    assert row.random_drop == pytest.approx(100 * (17 - 49 / 3) / 20, abs=0.01)
    assert row.ratio == pytest.approx(row.top_drop / row.random_drop, abs=0.02)
    # A paired percentile bootstrap written here: resample documents, each keeping its unmasked and masked scores.
    base = np.array(UNMASKED[TASKS[0]] + UNMASKED[TASKS[1]], dtype=float)
    top = np.array(TOP[TASKS[0]] + TOP[TASKS[1]], dtype=float)
    random = np.mean([draw[TASKS[0]] + draw[TASKS[1]] for draw in RANDOM], axis=0)
    rng = np.random.default_rng(7)
    picks = rng.integers(0, 20, size=(20_000, 20))
    for low, high, ablated in ((row.top_ci_low, row.top_ci_high, top), (row.random_ci_low, row.random_ci_high, random)):
        resampled = 100 * (base[picks] - ablated[picks]).mean(axis=1)
        expected = np.percentile(resampled, [2.5, 97.5])
        assert (low, high) == (pytest.approx(expected[0], abs=2.0), pytest.approx(expected[1], abs=2.0))
    assert row.apart == (row.top_ci_low > row.random_ci_high) and row.apart
    table = top_vs_random(find_runs([tmp_path]), "top5pct", "random5pct", {"attributes": TASKS})
    assert "| attributes | top5pct vs random5pct | 20 | 85.0 | 35.0 [" in to_markdown(table)


def test_only_documents_every_run_answered_count(tmp_path: Path) -> None:
    _write_study(tmp_path)
    _run(tmp_path, 9, {task: values[:6] for task, values in TOP.items()}, mask="top5pct")  # newer, first 6 docs only
    (row,) = top_vs_random(find_runs([tmp_path]), "top5pct", "random5pct", {"attributes": TASKS}).itertuples()
    assert row.n_docs == 12
    assert row.top_drop == pytest.approx(100 * ((6 + 6) - (3 + 3)) / 12)


def test_missing_or_undrawn_runs_are_named(tmp_path: Path) -> None:
    _run(tmp_path, 1, UNMASKED)
    _run(tmp_path, 2, TOP, mask="top5pct")
    with pytest.raises(VisheadsError, match="has no results of random5pct on pointqa_plain_colour"):
        top_vs_random(find_runs([tmp_path]), "top5pct", "random5pct", {"attributes": TASKS})
    _run(tmp_path, 3, RANDOM[0], mask="random5pct", seed=0)
    with pytest.raises(VisheadsError, match="compare against several seeded draws"):
        top_vs_random(find_runs([tmp_path]), "top5pct", "random5pct", {"attributes": TASKS})
