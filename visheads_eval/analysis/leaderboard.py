"""Leaderboards: each benchmark's metric with no mask and its drop under every mask (paper Tables 2, 3).

The table is long: one row per model, mask and task, with the value in accuracy points and the drop
from the unmasked run (positive when masking hurts; 0 for the ``none`` row; empty when the model has no
unmasked run of that task). The drop is paired (:mod:`visheads_eval.analysis.paired`): computed over the
documents both runs answered, read from the samples logs, with its 95% bootstrap interval and the
McNemar p-value; ``n_docs`` says over how many documents. Without samples logs it is ``value(none) -
value(mask)``, refused when the two runs answered different numbers of documents. Every row keeps what
links it to its run: the results file, the mask's mode, seed, ranking and the heads it removed (from the
results file's ``visheads`` block).

Runs of lmms-eval and of lm-eval (``visheads lm-eval``) are read alike (:mod:`visheads_eval.analysis.results`);
the ``host`` column says which wrote a row. A model evaluated through both hosts gets a table per host, each
mask paired with that host's unmasked run (the hosts prompt differently). When a model has several runs of
one mask (and seed) on one task and host, the newest (by the host's date in the file name) is used. Runs of
one mask with different seeds (random heads drawn again) are separate rows, labelled ``<mask>
seed=<seed>``, beside a ``<mask> mean`` row: their mean drop, its standard deviation over the seeds and
how many. :func:`compare_masks` says whether one mask's drop exceeds another's, paired over the documents
both answered. The runs chosen for one mask and seed of one model must agree on the heads removed: a
mask that removed different heads in different runs (e.g. after re-ranking) is an error, not a silent mix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from visheads_eval.analysis.paired import BOOTSTRAP_SEED, PairedDrop, paired_drop
from visheads_eval.analysis.results import NO_MASK, Run, correct_docs, metric_points, primary_metric, task_metrics
from visheads_eval.errors import VisheadsError, did_you_mean

COLUMNS = (
    "model",
    "host",
    "mask",
    "task",
    "metric",
    "value",
    "drop",
    "n_docs",
    "drop_ci_low",
    "drop_ci_high",
    "p_mcnemar",
    "bootstrap_seed",
    "drop_sd",
    "n_seeds",
    "mask_mode",
    "n_masked",
    "heads",
    "mask_seed",
    "ranking",
    "results_file",
)
SEED_LABEL = " seed="  # "<mask> seed=<seed>": one draw of a random or others mask
MEAN_LABEL = " mean"  # "<mask> mean": the draws of one mask over its seeds
MARK_INCLUDES_ZERO = "†"


def mask_order(name: str) -> tuple:
    """Sort key: ``none`` first, then names in natural order (``early_top10`` before ``early_top100``)."""
    return (name != NO_MASK, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)])


def leaderboard(
    runs: Iterable[Run],
    metrics: Mapping[str, str] | None = None,
    percent_metrics: Iterable[str] = (),
    tasks: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The leaderboard of ``runs`` (oldest first, as :func:`~visheads_eval.analysis.results.find_runs`
    returns them), restricted to ``tasks`` when given; columns :data:`COLUMNS`."""
    wanted = None if tasks is None else list(tasks)
    chosen = _choose(runs, wanted)
    metric_of = {task: primary_metric(task, task_metrics(run, task), metrics) for (_, _, _, task), run in chosen.items()}
    rows = []
    for (model, host, mask, task), run in chosen.items():
        metric = metric_of[task]
        value = metric_points(run, task, metric, percent_metrics)
        rows.append(
            {
                "model": model,
                "host": host,
                "mask": mask,
                "task": task,
                "metric": metric,
                "value": value,
                "mask_mode": run.mask_mode,
                "n_masked": None if run.heads is None else len(run.heads),
                "heads": None if run.heads is None else " ".join(run.heads),
                "mask_seed": run.mask_seed,
                "ranking": run.ranking,
                "results_file": str(run.path),
            }
        )
    table = pd.DataFrame(rows)
    baseline = table[table["mask"] == NO_MASK].set_index(["model", "host", "task"])["value"]
    keys = pd.MultiIndex.from_frame(table[["model", "host", "task"]])
    table["drop"] = baseline.reindex(keys).to_numpy() - table["value"].to_numpy()
    table["n_docs"] = [chosen[(row.model, row.host, row.mask, row.task)].n_samples.get(row.task) for row in table.itertuples()]
    for column in ("drop_ci_low", "drop_ci_high", "p_mcnemar"):
        table[column] = np.nan
    table["bootstrap_seed"] = None
    correctness: dict[tuple[Path, str], dict[int, bool]] = {}  # each unmasked run's samples are read once
    for index, row in table.iterrows():
        unmasked = chosen.get((row["model"], row["host"], NO_MASK, row["task"]))
        if row["mask"] == NO_MASK or unmasked is None:
            continue
        pair = _paired(
            unmasked, chosen[(row["model"], row["host"], row["mask"], row["task"])], row["task"], metric_of[row["task"]], correctness
        )
        if pair is not None:
            table.loc[index, ["drop", "n_docs", "drop_ci_low", "drop_ci_high", "p_mcnemar"]] = (
                pair.drop,
                pair.n_docs,
                pair.ci_low,
                pair.ci_high,
                pair.p_mcnemar,
            )
            table.loc[index, "bootstrap_seed"] = BOOTSTRAP_SEED
    for column in ("value", "drop", "drop_ci_low", "drop_ci_high"):
        table[column] = table[column].astype(float).round(4)
    table["n_docs"] = table["n_docs"].astype("Int64")
    table["bootstrap_seed"] = table["bootstrap_seed"].astype("Int64")
    table["drop_sd"] = np.nan
    table["n_seeds"] = pd.array([pd.NA] * len(table), dtype="Int64")
    table = pd.concat([table, _seed_means(table)], ignore_index=True)
    table["n_masked"] = table["n_masked"].astype("Int64")
    table["mask_seed"] = table["mask_seed"].astype("Int64")
    entries = list(dict.fromkeys(zip(table["model"], table["host"], strict=True)))
    task_order = list(dict.fromkeys([*(wanted or []), *table["task"]]))
    order = sorted(
        table.index,
        key=lambda i: (
            entries.index((table.at[i, "model"], table.at[i, "host"])),
            mask_order(table.at[i, "mask"]),
            task_order.index(table.at[i, "task"]),
        ),
    )
    return table.loc[order, list(COLUMNS)].reset_index(drop=True)


def unmasked_values(
    runs: Iterable[Run], tasks: Iterable[str], metrics: Mapping[str, str] | None = None, percent_metrics: Iterable[str] = ()
) -> dict[tuple[str, str], float]:
    """Each (model, task)'s primary metric without a mask, in points, for the ``tasks`` the runs have."""
    tasks = list(tasks)
    unmasked = [run for run in runs if run.mask == NO_MASK and set(run.results) & set(tasks)]
    if not unmasked:
        return {}
    table = leaderboard(unmasked, metrics, percent_metrics, tasks=[t for t in tasks if any(t in run.results for run in unmasked)])
    return {(row.model, row.task): row.value for row in table.itertuples()}


def _choose(runs: Iterable[Run], wanted: list[str] | None) -> dict[tuple[str, str, str, str], Run]:
    """(model, host, mask label, task) -> the newest run; the label is ``<mask> seed=<seed>`` for a mask run with
    several seeds. A model evaluated through both hosts is two entries, each paired with its own unmasked run."""
    runs = list(runs)
    by_seed: dict[tuple[str, str, str, int | None, str], Run] = {}
    for run in runs:
        for task in run.results:
            if wanted is None or task in wanted:
                by_seed[(run.model, run.host, run.mask, run.mask_seed, task)] = run  # newer runs replace older ones
    if not by_seed:
        available = sorted({task for run in runs for task in run.results})
        raise VisheadsError(f"no results for the tasks {', '.join(wanted or [])}; the results files have {', '.join(available)}")
    seeds: dict[tuple[str, str, str], set] = {}
    for model, host, mask, seed, _ in by_seed:
        seeds.setdefault((model, host, mask), set()).add(seed)
    chosen = {
        (model, host, mask if len(seeds[(model, host, mask)]) == 1 else f"{mask}{SEED_LABEL}{seed}", task): run
        for (model, host, mask, seed, task), run in by_seed.items()
    }
    _check_masks_agree(chosen)
    return chosen


COMPARE_COLUMNS = (
    "model",
    "host",
    "task",
    "metric",
    "mask_a",
    "mask_b",
    "n_docs",
    "difference",
    "ci_low",
    "ci_high",
    "p_mcnemar",
    "bootstrap_seed",
)


def compare_masks(
    runs: Iterable[Run], mask_a: str, mask_b: str, metrics: Mapping[str, str] | None = None, tasks: Iterable[str] | None = None
) -> pd.DataFrame:
    """How much more ``mask_a`` drops than ``mask_b`` (labels as in the leaderboard, e.g. ``early_random20
    seed=1``), per model and task: ``drop(a) - drop(b)`` in points over the documents both runs answered, with
    its 95% paired bootstrap interval and the exact McNemar p-value of the two masked runs; columns
    :data:`COMPARE_COLUMNS`. Both runs need samples logs (``--log_samples``); reading a missing one says so."""
    chosen = _choose(runs, None if tasks is None else list(tasks))
    labels = {mask for _, _, mask, _ in chosen}
    for mask in (mask_a, mask_b):
        if mask not in labels:
            raise VisheadsError(
                f"no results of mask '{mask}'{did_you_mean(mask, labels)}; the results have {', '.join(sorted(labels, key=mask_order))}"
            )
    rows = []
    for (model, host, mask, task), run_a in chosen.items():
        run_b = chosen.get((model, host, mask_b, task))
        if mask != mask_a or run_b is None:
            continue
        metric = primary_metric(task, task_metrics(run_a, task), metrics)
        pair = paired_drop(correct_docs(run_b, task, metric), correct_docs(run_a, task, metric))
        if pair is None:
            raise VisheadsError(f"{run_a.path} and {run_b.path} share no document of {task}; evaluate both on the same documents")
        rows.append(
            {
                "model": model,
                "host": host,
                "task": task,
                "metric": metric,
                "mask_a": mask_a,
                "mask_b": mask_b,
                "n_docs": pair.n_docs,
                "difference": round(pair.drop, 4),
                "ci_low": round(pair.ci_low, 4),
                "ci_high": round(pair.ci_high, 4),
                "p_mcnemar": pair.p_mcnemar,
                "bootstrap_seed": BOOTSTRAP_SEED,
            }
        )
    if not rows:
        raise VisheadsError(f"no model has runs of both '{mask_a}' and '{mask_b}' on one task")
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))


def _seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per mask drawn with several seeds, task and model: the mean value and drop over the seeds, the
    drop's standard deviation over them (``drop_sd``) and how many (``n_seeds``)."""
    drawn = table[table["mask"].str.contains(SEED_LABEL, regex=False)]
    groups = drawn.assign(base=drawn["mask"].str.split(SEED_LABEL, regex=False).str[0]).groupby(
        ["model", "host", "base", "task"], sort=False
    )
    rows = []
    for (model, host, base, task), seeds in groups:
        first = seeds.iloc[0]
        rows.append(
            {
                "model": model,
                "host": host,
                "mask": base + MEAN_LABEL,
                "task": task,
                "metric": first["metric"],
                "value": round(seeds["value"].mean(), 4),
                "drop": round(seeds["drop"].mean(), 4),
                "drop_sd": round(seeds["drop"].std(ddof=1), 4),
                "n_seeds": len(seeds),
                "mask_mode": first["mask_mode"],
                "n_masked": first["n_masked"],
                "ranking": first["ranking"],
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"n_seeds": "Int64"})


def _paired(unmasked: Run, masked: Run, task: str, metric: str, correctness: dict[tuple[Path, str], dict[int, bool]]) -> PairedDrop | None:
    """The drop over the documents both runs answered; ``None`` when there are no samples logs to pair
    (or ``metric`` has no per-document correctness) and both runs answered as many documents."""
    if unmasked.samples_path(task).is_file() and masked.samples_path(task).is_file():
        try:
            if (unmasked.path, task) not in correctness:
                correctness[unmasked.path, task] = correct_docs(unmasked, task, metric)
            base, ablated = correctness[unmasked.path, task], correct_docs(masked, task, metric)
        except VisheadsError:
            base = None  # e.g. MMBench's circular score: no per-document correctness, so the aggregates decide
        if base is not None:
            pair = paired_drop(base, ablated)
            if pair is None:
                raise VisheadsError(
                    f"{masked.path} and the unmasked {unmasked.path} share no document of {task}; evaluate both on the same documents"
                )
            return pair
    counts = unmasked.n_samples.get(task), masked.n_samples.get(task)
    if None not in counts and counts[0] != counts[1]:
        raise VisheadsError(
            f"{masked.path} answered {counts[1]} documents of {task} and the unmasked {unmasked.path} {counts[0]}: a drop over "
            "different documents is no drop; rerun both with --log_samples (the drop is then taken over the documents both "
            "answered) or with the same --limit"
        )
    return None


def _check_masks_agree(chosen: Mapping[tuple[str, str, str, str], Run]) -> None:
    def removed(run: Run) -> tuple[str | None, tuple[str, ...] | None]:
        return (run.mask_mode if run.heads else None), run.heads  # no head removed: the mode removed nothing

    seen: dict[tuple[str, str, str], Run] = {}
    for (model, host, mask, _), run in chosen.items():
        first = seen.setdefault((model, host, mask), run)
        if removed(first) != removed(run) and first.heads is not None and run.heads is not None:
            raise VisheadsError(
                f"mask '{mask}' of {model} removed different heads (or used another mode) in {first.path} and {run.path}; "
                "rerun the older one or leave it out"
            )


def _cell(row: pd.Series, arrows: tuple[str, str, str, str], interval: bool) -> str:
    if row["mask"] == NO_MASK:
        return f"{row['value']:.2f}"
    if not pd.isna(row["n_seeds"]):
        return f"{abs(row['drop']):.2f} {arrows[0] if row['drop'] >= 0 else arrows[1]} {arrows[3]} {row['drop_sd']:.2f}"
    if np.isnan(row["drop"]):
        return f"({row['value']:.2f}, no unmasked run)"
    down, up, mark, _ = arrows
    includes_zero = row["drop_ci_low"] <= 0 <= row["drop_ci_high"]  # False when there is no interval (NaN)
    cell = f"{abs(row['drop']):.2f} {down if row['drop'] >= 0 else up}{mark if includes_zero else ''}"
    if interval and not np.isnan(row["drop_ci_low"]):
        cell += f" [{row['drop_ci_low']:.1f}, {row['drop_ci_high']:.1f}]"
    return cell


def _entries(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Each (model, host) of the table in order, with its title: the model, and the host where the table has both."""
    entries = list(dict.fromkeys(zip(table["model"], table["host"], strict=True)))
    both = table["host"].nunique() > 1
    return [(model, host, f"{model} ({host})" if both else model) for model, host in entries]


def _rows_of(table: pd.DataFrame, model: str, host: str) -> pd.DataFrame:
    return table[(table["model"] == model) & (table["host"] == host)]


def _wide(rows: pd.DataFrame, arrows: tuple[str, str, str, str], interval: bool = False) -> pd.DataFrame:
    """One model's rows (of one host) as masks x tasks: the ``none`` row holds values, mask rows hold drops."""
    rows = rows.copy()
    rows["column"] = rows["task"] + " (" + rows["metric"] + ")"
    rows["cell"] = rows.apply(_cell, axis=1, arrows=arrows, interval=interval)
    wide = rows.pivot(index="mask", columns="column", values="cell")
    wide = wide.reindex(index=sorted(wide.index, key=mask_order), columns=list(dict.fromkeys(rows["column"])))
    wide.columns.name = None
    return wide.fillna("")


def to_markdown(table: pd.DataFrame, links_from: Path | None = None) -> str:
    """Markdown: per model, the masks x tasks table (values for ``none``, drops in points below it),
    then which heads every mask removed and the results files it comes from; with ``links_from`` (the
    folder the Markdown is written to), each results file is a link relative to it."""

    def file_cell(files: pd.Series) -> str:
        unique = dict.fromkeys(files)
        if links_from is None:
            return ", ".join(unique)
        return ", ".join(f"[{Path(file).name}]({Path(os.path.relpath(file, links_from)).as_posix()})" for file in unique)

    parts = []
    for model, host, title in _entries(table):
        rows = _rows_of(table, model, host)
        wide = _wide(rows, ("↓", "↑", MARK_INCLUDES_ZERO, "±"))
        parts.append(
            f"## {title}\n\nValues in accuracy points; mask rows give the drop from the unmasked run, over the documents both answered.\n\n"
        )
        parts.append(wide.to_markdown(tablefmt="github") + "\n")
        if (rows["drop_ci_low"] <= 0).mul(rows["drop_ci_high"] >= 0).any():
            parts.append(
                f"\n{MARK_INCLUDES_ZERO} the 95% paired bootstrap interval of the drop includes 0 "
                "(leaderboard.csv has every interval and McNemar p-value).\n"
            )
        if rows["n_seeds"].notna().any():
            parts.append("\n`<mask> mean` rows: the mean drop over the mask's seeds ± its standard deviation over them.\n")
        masks = rows[(rows["mask"] != NO_MASK) & rows["n_seeds"].isna()]
        if len(masks):
            listing = masks.groupby("mask", sort=False).agg(
                mode=("mask_mode", "first"),
                n_masked=("n_masked", "first"),
                heads=("heads", "first"),
                n_docs=("n_docs", _counts),
                results_files=("results_file", file_cell),
            )
            listing = listing.reindex(sorted(listing.index, key=mask_order)).fillna("unknown")
            parts.append(f"\nHeads removed by each mask of {title}:\n\n" + listing.to_markdown(tablefmt="github") + "\n")
        parts.append("\n")
    return "".join(parts)


def _counts(n_docs: pd.Series) -> str:
    """The documents a mask's drops were computed over, once per distinct count."""
    return ", ".join(str(n) for n in dict.fromkeys(n_docs.dropna())) or "unknown"


def to_latex(table: pd.DataFrame) -> str:
    """LaTeX: one ``table`` environment per model, masks x tasks, as in the paper's Tables 2 and 3."""
    parts = []
    for model, host, title in _entries(table):
        wide = _wide(_rows_of(table, model, host), (r"$\downarrow$", r"$\uparrow$", r"\dag{}", r"$\pm$"), interval=True)
        styler = wide.style.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
        caption = (
            f"Accuracy of {title} with no mask and its drop (points) under each mask, over the documents both runs "
            "answered, with its 95% paired bootstrap interval; a dagger marks an interval that includes 0."
        )
        parts.append(styler.to_latex(hrules=True, caption=_latex_escape(caption), position="t") + "\n")
    return "".join(parts)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)
