"""Top-k heads against random-k heads: do the heads a score ranks first matter more than any k heads?

For one model, a ``top`` mask (one run per task) and a ``random`` mask drawn with several seeds (one run per
seed and task) are compared with the unmasked run over groups of tasks; a group pools its tasks' documents
(keyed by task and doc id) and counts only those every run answered (unmasked, top, each seed):

- **top drop**: unmasked minus top-masked accuracy, in points, with its 95% paired bootstrap interval over
  the documents (:func:`visheads_eval.analysis.paired.paired_interval`);
- **random drop**: the same with each document's masked correctness averaged over the seeds (what k random
  heads cost that document, in expectation over the draws), its interval from the same bootstrap;
- **ratio** top / random (empty when the random drop is not above 0), and **apart**: the top drop's interval
  lies wholly above the random drop's.

The runs are lmms-eval's or lm-eval's results files with samples logs (:mod:`visheads_eval.analysis.results`);
where a mask and task were evaluated more than once, the newest run counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from visheads_eval.analysis.paired import BOOTSTRAP_SEED, paired_interval
from visheads_eval.analysis.results import NO_MASK, Run, correct_docs, primary_metric, task_metrics
from visheads_eval.errors import VisheadsError

COLUMNS = (
    "model",
    "group",
    "tasks",
    "k_mask",
    "n_docs",
    "n_seeds",
    "unmasked",
    "top_drop",
    "top_ci_low",
    "top_ci_high",
    "random_drop",
    "random_ci_low",
    "random_ci_high",
    "ratio",
    "apart",
    "bootstrap_seed",
)


def _newest(runs: Iterable[Run], model: str, mask: str, task: str) -> dict[int | None, Run]:
    """Seed -> the newest run of ``model`` under ``mask`` with ``task`` (runs come sorted by date)."""
    chosen: dict[int | None, Run] = {}
    for run in sorted(runs, key=lambda run: (run.date, str(run.path))):
        if run.model == model and run.mask == mask and task in run.results:
            chosen[run.mask_seed] = run
    return chosen


def _correct(run: Run, task: str) -> dict[int, bool]:
    return correct_docs(run, task, primary_metric(task, task_metrics(run, task)))


def top_vs_random(
    runs: Sequence[Run], top: str, random: str, groups: Mapping[str, Sequence[str]], model: str | None = None, seed: int = BOOTSTRAP_SEED
) -> pd.DataFrame:
    """One row per group of tasks (``{"attributes": [task, ...], ...}``): columns :data:`COLUMNS`, drops in
    points. ``model`` is needed only when the runs hold several models."""
    models = sorted({run.model for run in runs})
    if model is None:
        if len(models) != 1:
            raise VisheadsError(f"the results hold {len(models)} models ({', '.join(models)}); name one")
        model = models[0]
    rows = []
    for group, tasks in groups.items():
        base, top_scores, random_scores = [], [], []
        n_seeds = None
        for task in tasks:
            unmasked = _newest(runs, model, NO_MASK, task).get(None)
            topped = _newest(runs, model, top, task)
            drawn = _newest(runs, model, random, task)
            missing = [label for label, found in ((NO_MASK, unmasked), (top, topped), (random, drawn)) if not found]
            if missing:
                raise VisheadsError(f"{model} has no results of {', '.join(missing)} on {task}; evaluate them (visheads sweep)")
            if None in drawn or len(drawn) < 2:
                raise VisheadsError(f"{random} on {task}: compare against several seeded draws (mask_seed=), found {len(drawn)}")
            if n_seeds not in (None, len(drawn)):
                raise VisheadsError(f"{random} was drawn with {n_seeds} seeds on one task of {group} and {len(drawn)} on {task}")
            if len(topped) != 1:
                raise VisheadsError(f"{top} on {task} was evaluated with {len(topped)} seeds; a top mask draws nothing")
            n_seeds = len(drawn)
            assert unmasked is not None
            correct = [_correct(unmasked, task), *(_correct(run, task) for run in topped.values())]
            correct += [_correct(drawn[s], task) for s in sorted(drawn, key=str)]
            docs = sorted(set.intersection(*(set(c) for c in correct)))
            base += [correct[0][doc] for doc in docs]
            top_scores += [correct[1][doc] for doc in docs]
            random_scores += [np.mean([c[doc] for c in correct[2:]]) for doc in docs]
        if not base:
            raise VisheadsError(f"the runs of {group} share no document; evaluate every mask on the same documents")
        base_arr, top_arr, random_arr = (np.asarray(values, dtype=float) for values in (base, top_scores, random_scores))
        top_drop = 100.0 * (base_arr.mean() - top_arr.mean())
        random_drop = 100.0 * (base_arr.mean() - random_arr.mean())
        top_low, top_high = paired_interval(base_arr, top_arr, seed)
        random_low, random_high = paired_interval(base_arr, random_arr, seed)
        rows.append(
            {
                "model": model,
                "group": group,
                "tasks": " ".join(tasks),
                "k_mask": f"{top} vs {random}",
                "n_docs": len(base_arr),
                "n_seeds": n_seeds,
                "unmasked": round(100.0 * base_arr.mean(), 2),
                "top_drop": round(top_drop, 2),
                "top_ci_low": round(top_low, 2),
                "top_ci_high": round(top_high, 2),
                "random_drop": round(random_drop, 2),
                "random_ci_low": round(random_low, 2),
                "random_ci_high": round(random_high, 2),
                "ratio": round(top_drop / random_drop, 2) if random_drop > 0 else None,
                "apart": bool(top_low > random_high),
                "bootstrap_seed": seed,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def to_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: one line per group and mask pair, drops with their intervals."""
    lines = [
        "| group | masks | docs | unmasked | top-k drop [95% CI] | random-k drop, mean of seeds [95% CI] | ratio | apart |",
        "|---|---|---:|---:|---|---|---:|---|",
    ]
    for row in table.itertuples():
        ratio = "" if row.ratio is None or pd.isna(row.ratio) else f"{row.ratio:.1f}x"
        lines.append(
            f"| {row.group} | {row.k_mask} | {row.n_docs} | {row.unmasked:.1f} | {row.top_drop:.1f} [{row.top_ci_low:.1f}, "
            f"{row.top_ci_high:.1f}] | {row.random_drop:.1f} [{row.random_ci_low:.1f}, {row.random_ci_high:.1f}] "
            f"({row.n_seeds} seeds) | {ratio} | {'yes' if row.apart else 'no'} |"
        )
    return "\n".join(lines) + "\n"
