"""Reading what lmms-eval and lm-eval wrote: which run a results file is, its metrics, and per-sample correctness.

The two hosts lay their output out alike but name it differently (:data:`HOSTS`): lmms-eval writes
``<output>/<model>/<date>_results.json`` and, with ``--log_samples``, ``<date>_samples_<task>.jsonl``
beside it; lm-eval (``visheads lm-eval``) writes ``<output>/<model>/results_<date>.json`` and
``samples_<task>_<date>.jsonl``. Both results files hold ``results`` (``"metric,filter"`` keys),
``config.model_args``, ``n-samples`` and, for runs of this project's models, the ``visheads`` block (at
the top of lmms-eval's, in lm-eval's ``config``); both samples files hold one document a line with its
``doc_id`` and each metric under its name (lm-eval writes one line per document and filter; the ``none`` filter is read, or the only one).

A masked and an unmasked run of one model share that folder, so a run is identified from the file's
content, never from folder names: the model is the ``pretrained`` of the ``visheads`` block or of
``config.model_args``; the mask is the ``visheads`` block's ``mask`` (name, mode, heads, seed, ranking),
or the ``mask=`` of ``config.model_args`` when the block is missing (then the heads are unknown), or
``none``; the host is the one whose file names it has.

Each benchmark has a primary metric (:data:`PRIMARY_METRICS`, the names lmms-eval's task YAMLs give);
any task can be given another with ``metrics={task: metric}``. Values are reported in accuracy points
(percent): lmms-eval reports most accuracies as fractions and MMBench's ``gpt_eval_score`` in percent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visheads_eval.errors import VisheadsError, did_you_mean

NO_MASK = "none"

# Task-name prefix -> primary metric, first match wins. MMBench's static variant scores by regex (no
# API key); its metric keeps the name gpt_eval_score.
PRIMARY_METRICS: tuple[tuple[str, str], ...] = (
    ("pope", "pope_accuracy"),
    ("mmbench", "gpt_eval_score"),
    ("seedbench", "seed_image"),
    ("qbench", "qbench_acc"),
)
# Metric names that are accuracies when a task has no entry above (PointQA tasks, local tasks).
ACCURACY_NAMES = ("accuracy", "acc", "exact_match")
# Metrics that lmms-eval reports in percent rather than as a fraction.
PERCENT_METRICS = frozenset({"gpt_eval_score"})


@dataclass(frozen=True)
class Host:
    """How one evaluation harness names its results and samples files."""

    name: str
    results_name: re.Pattern  # a results file's name, capturing its date
    results_glob: str
    samples_name: str  # a samples file's name, from the results file's date and a task


HOSTS = (
    Host("lmms-eval", re.compile(r"^(?P<date>.+)_results\.json$"), "*_results.json", "{date}_samples_{task}.jsonl"),
    Host("lm-eval", re.compile(r"^results_(?P<date>.+)\.json$"), "results_*.json", "samples_{task}_{date}.jsonl"),
)
RESULTS_FILES = " or ".join(f"{host.name}'s ({host.results_glob})" for host in HOSTS)


@dataclass(frozen=True)
class Run:
    """One results file of lmms-eval or lm-eval: the host, the model, the mask and the per-task metrics."""

    path: Path
    host: str  # "lmms-eval" or "lm-eval"
    date: str
    model: str
    model_args: str
    mask: str
    mask_mode: str | None
    heads: tuple[str, ...] | None  # None: the file does not say which heads the mask removed
    mask_seed: int | None
    ranking: str | None
    record_dir: str | None
    results: Mapping[str, Mapping[str, Any]] = field(repr=False)
    n_samples: Mapping[str, int] = field(default_factory=dict, repr=False)  # task -> documents evaluated

    def samples_path(self, task: str) -> Path:
        """The samples file the host wrote beside this results file for ``task``."""
        host = next(host for host in HOSTS if host.name == self.host)
        return self.path.with_name(host.samples_name.format(date=self.date, task=task))


def read_run(path: Path) -> Run:
    """Read one results file of lmms-eval (``<date>_results.json``) or lm-eval (``results_<date>.json``); a clear
    error for files that neither wrote."""
    path = Path(path)
    matches = [(host, host.results_name.match(path.name)) for host in HOSTS]
    host, match = next(((host, match) for host, match in matches if match is not None), (None, None))
    if host is None or match is None:
        raise VisheadsError(f"{path} is not a results file: its name is not {RESULTS_FILES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VisheadsError(f"cannot read results file {path}: {error}") from error
    config = data.get("config") if isinstance(data, dict) else None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(config, dict) or "model_args" not in config or not isinstance(results, dict):
        raise VisheadsError(f"{path} is not an {host.name} results file: it lacks 'results' or 'config.model_args'")
    model_args = _parse_model_args(config["model_args"], path)
    block = data.get("visheads", config.get("visheads"))  # lmms_eval writes it at the top, lm-eval into its config
    if block is not None and not isinstance(block, dict):
        raise VisheadsError(f"{path}: its 'visheads' entry is not the block that lmms_eval and visheads lm-eval write")
    block = block or {}
    model = _same_spelling(block.get("pretrained") or model_args.get("pretrained") or config.get("model"))
    if not model:
        raise VisheadsError(f"cannot tell which model {path} evaluated: neither its visheads block nor config.model_args names pretrained=")
    mask = block.get("mask") if block else None
    if mask:
        name, mode, seed, ranking = mask.get("name"), mask.get("mode"), mask.get("seed"), mask.get("ranking")
        heads: tuple[str, ...] | None = tuple(mask.get("heads") or ())
    elif not block and model_args.get("mask"):  # a masked run made without the lmms_eval command
        name, mode, seed, ranking, heads = model_args["mask"], None, None, None, None
    else:
        name, mode, seed, ranking, heads = None, None, None, None, ()
    record = block.get("record") or {}
    return Run(
        path=path,
        host=host.name,
        date=match.group("date"),
        model=str(model),
        model_args=config["model_args"] if isinstance(config["model_args"], str) else json.dumps(config["model_args"], sort_keys=True),
        mask=str(name) if name else NO_MASK,
        mask_mode=mode,
        heads=heads,
        mask_seed=seed,
        ranking=ranking,
        record_dir=record.get("dir"),
        results=results,
        n_samples={
            task: int(n["effective"]) for task, n in (data.get("n-samples") or {}).items() if isinstance(n, dict) and "effective" in n
        },
    )


def _same_spelling(model: str | None) -> str | None:
    """One model under one name: a local folder, given relative or with a trailing slash (as lmms-eval's own
    command records it), is named by its absolute path, as ``llava_visheads`` names it; hub ids stay as they are."""
    if not model:
        return model
    path = Path(str(model)).expanduser()
    return str(path.resolve()) if path.is_dir() else str(model)


def _parse_model_args(model_args: str | dict | None, path: Path) -> dict[str, Any]:
    if isinstance(model_args, dict):
        return model_args
    from lmms_eval.utils import simple_parse_args_string

    try:
        return simple_parse_args_string(model_args or "")
    except ValueError as error:
        raise VisheadsError(f"{path}: config.model_args {model_args!r} is not key=value,key=value") from error


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """Every results file among ``paths`` (files, or folders searched recursively), of either host, oldest first
    (by the date in the file name, which orders one host's files)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted({found for host in HOSTS for found in path.rglob(host.results_glob)})
            if not found:
                raise VisheadsError(f"no results file, {RESULTS_FILES}, under {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise VisheadsError(f"{path} does not exist")
    runs = [read_run(path) for path in dict.fromkeys(p.resolve() for p in files)]
    return sorted(runs, key=lambda run: (run.date, str(run.path)))


def primary_metric(task: str, metrics: Iterable[str], overrides: Mapping[str, str] | None = None) -> str:
    """The metric reported for ``task`` among the names it has (``metrics``); ``overrides`` win."""
    available = list(dict.fromkeys(metrics))
    wanted = (overrides or {}).get(task)
    if wanted is None:
        wanted = next((metric for prefix, metric in PRIMARY_METRICS if task.startswith(prefix) and metric in available), None)
    if wanted is None:
        named = [m for m in available if m in ACCURACY_NAMES or m.endswith(("_accuracy", "_acc"))]
        candidates = named if named else available
        if len(candidates) == 1:
            wanted = candidates[0]
        else:
            raise VisheadsError(f"task {task} reports {', '.join(available) or 'no metrics'}; pick one with --metric {task}=METRIC")
    if wanted not in available:
        raise VisheadsError(f"task {task} has no metric '{wanted}'{did_you_mean(wanted, available)}; it reports {', '.join(available)}")
    return wanted


def task_metrics(run: Run, task: str) -> dict[str, float]:
    """The metrics of ``task`` in ``run``, by name (the ``none`` filter, else the only filter)."""
    if task not in run.results:
        raise VisheadsError(f"{run.path} has no results for task {task}{did_you_mean(task, run.results)}")
    by_metric: dict[str, dict[str, Any]] = {}
    for key, value in run.results[task].items():
        metric, sep, filter_name = key.partition(",")
        if sep and not metric.endswith("_stderr") and isinstance(value, (int, float)) and not isinstance(value, bool):
            by_metric.setdefault(metric, {})[filter_name] = value
    chosen = {}
    for metric, by_filter in by_metric.items():
        if "none" in by_filter:
            chosen[metric] = float(by_filter["none"])
        elif len(by_filter) == 1:
            chosen[metric] = float(next(iter(by_filter.values())))
    return chosen


def metric_points(run: Run, task: str, metric: str, percent_metrics: Iterable[str] = ()) -> float:
    """The value of ``metric`` for ``task`` in ``run``, in accuracy points (0..100)."""
    metrics = task_metrics(run, task)
    if metric not in metrics:
        raise VisheadsError(
            f"{run.path}: task {task} has no metric '{metric}'{did_you_mean(metric, metrics)}; it reports {', '.join(metrics)}"
        )
    value = metrics[metric]
    if metric in PERCENT_METRICS or metric in set(percent_metrics):
        return value
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise VisheadsError(
            f"{run.path}: {metric} of {task} is {value}, not a fraction in 0..1; if it is already in percent, pass "
            f"--percent-metric {metric}"
        )
    return 100.0 * value


def read_samples(run: Run, task: str) -> list[dict[str, Any]]:
    """The per-doc rows of ``task``'s samples file beside ``run`` (``--log_samples``); of lm-eval's rows, one per
    document and filter, those of the ``none`` filter (or of the only one)."""
    path = run.samples_path(task)
    if not path.is_file():
        raise VisheadsError(f"{path} does not exist: rerun {run.host} with --log_samples to get per-sample correctness of {task}")
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise VisheadsError(f"{path} line {number} is not JSON (truncated file?): {error}") from error
            if not isinstance(row, dict) or "doc_id" not in row:
                raise VisheadsError(f"{path} line {number} is not a sample of {run.host}: it has no doc_id")
            rows.append(row)
    filters = list(dict.fromkeys(row["filter"] for row in rows if "filter" in row))
    if len(filters) > 1:
        if "none" not in filters:
            raise VisheadsError(f"{path} logs the filters {', '.join(filters)}; per-sample correctness is read from the 'none' filter")
        rows = [row for row in rows if row.get("filter") == "none"]
    return rows


def is_correct(metric: str, value: Any) -> bool:
    """Whether one sample's ``metric`` field (as lmms-eval or lm-eval logged it) is a correct answer.

    A number (or a dict with a ``score``, as POPE logs) is correct at full marks, 1. SEED-Bench and
    Q-Bench log the prediction and the answer; they are judged by lmms-eval's own aggregation applied
    to the one sample. Other per-sample fields (MMBench's circular evaluation groups several samples
    per question) have no per-sample correctness and raise an error.
    """
    if isinstance(value, dict) and "score" in value:
        value = value["score"]
    if isinstance(value, (bool, int, float)):
        return float(value) == 1.0
    if isinstance(value, dict) and {"pred", "answer"} <= value.keys():
        from lmms_eval.tasks.seedbench.utils import seed_aggregation_result

        return seed_aggregation_result([value]) == 1.0
    if isinstance(value, dict) and {"parsed_pred", "answer"} <= value.keys():
        from lmms_eval.tasks.qbench.utils import evaluate_q_bench

        return evaluate_q_bench([{"id": 0, **value}])[1]["acc"] == 1.0
    raise VisheadsError(
        f"per-sample correctness cannot be read from the '{metric}' field of the samples file; choose another --metric or use all samples"
    )


def correct_docs(run: Run, task: str, metric: str) -> dict[int, bool]:
    """Each doc's correctness under ``metric``, from the samples file of ``task`` beside ``run``."""
    correct = {}
    for row in read_samples(run, task):
        if metric not in row:
            raise VisheadsError(f"{run.samples_path(task)}: doc {row['doc_id']} has no '{metric}' field{did_you_mean(metric, row)}")
        correct[int(row["doc_id"])] = is_correct(metric, row[metric])
    return correct
