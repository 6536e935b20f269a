"""The paper's pipeline end to end on one model, offline: what ``make demo`` runs.

1. record the six PointQA settings through ``lmms_eval --model llava_visheads`` (``record=``);
2. rank every head by the paper's score (``visheads rank``);
3. evaluate the mask grid: early / mid / late / all layers x top / random (three seeds), and early
   "others", each removing ``k`` heads (a tenth of the model's heads by default);
4. write the leaderboard (Markdown, CSV, LaTeX) and the figures, and print the leaderboard.

Every lmms-eval run's output goes to its own log under ``<out>/logs``; the terminal gets one line per
step. A second run reuses what exists: a recording whose records and results are there, a ranking, and
every masked run whose results file has the same model_args.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from visheads_eval.errors import VisheadsError

POINTQA_TASKS = tuple(f"pointqa_{rendering}_{question}" for rendering in ("plain", "visual") for question in ("general", "object", "super"))
STAGES = ("early", "mid", "late", "all")
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class MaskRun:
    """One point of the mask grid: a spec name under the demo's mask folder, and the seed it draws with."""

    spec: str
    seed: int | None = None

    @property
    def label(self) -> str:
        return self.spec if self.seed is None else f"{self.spec} seed={self.seed}"


def mask_grid() -> list[MaskRun]:
    """The grid the demo evaluates, in the order it reports."""
    grid = [MaskRun(f"{stage}_top") for stage in STAGES]
    grid += [MaskRun(f"{stage}_random", seed) for stage in STAGES for seed in SEEDS]
    grid += [MaskRun("early_others", seed) for seed in SEEDS]
    return grid


def write_mask_specs(folder: Path, k: str) -> None:
    """The demo's specs: k heads per point of the grid (``k`` a count or a percentage of all heads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        for order in ("top", "random"):
            (folder / f"{stage}_{order}.yaml").write_text(
                f"description: {order} {k} heads of the {stage} layers\nselect: {{stage: {stage}, order: {order}, k: '{k}'}}\nmode: zero\n"
            )
    (folder / "early_others.yaml").write_text(
        f"description: {k} random heads of the early layers outside its top {k}\n"
        f"select: {{stage: early, order: others, k: '{k}', exclude_top: '{k}'}}\nmode: zero\n"
    )


class Demo:
    """Runs the steps into ``out``, each lmms-eval run in this process with its output in a log file."""

    def __init__(self, out: Path, pretrained: str, tasks: tuple[str, ...], k: str, limit: int | None, include_path: Path | None = None) -> None:
        self.out = out
        self.include_path = include_path
        self.pretrained = pretrained
        self.tasks = tasks
        self.k = k
        self.limit = limit
        self.records = out / "records"
        self.results = out / "lmms_eval"
        self.logs = out / "logs"
        self.masks = out / "masks"
        self.ranking: Path | None = None

    def run(self) -> int:
        start = time.perf_counter()
        self.logs.mkdir(parents=True, exist_ok=True)
        write_mask_specs(self.masks, self.k)
        grid = mask_grid()
        self._say(f"visheads demo: {self.pretrained} on {len(self.tasks)} PointQA settings, {len(grid)} masked runs, out {self.out}")
        self._evaluate("[1/4] record the unmasked run", "none", record=str(self.records), position="answer")
        self.ranking = self._rank()
        for index, point in enumerate(grid, 1):
            own = {"mask": point.spec, "mask_dir": str(self.masks), "ranking": str(self.ranking)}
            if point.seed is not None:
                own["mask_seed"] = str(point.seed)
            self._evaluate(f"[3/4] mask {index:2d}/{len(grid)} {point.label}", point.label.replace(" seed=", "_seed"), **own)
        self._report()
        self._say(f"visheads demo: done in {time.perf_counter() - start:.0f} s; everything is in {self.out}")
        print((self.out / "leaderboard.md").read_text())
        return 0

    def _say(self, line: str) -> None:
        print(line, flush=True)

    def _model_args(self, own: dict[str, str]) -> str:
        return ",".join([f"pretrained={self.pretrained}", *(f"{key}={value}" for key, value in own.items())])

    def _existing(self, model_args: str) -> Path | None:
        for path in sorted(self.results.rglob("*_results.json")):
            if json.loads(path.read_text()).get("config", {}).get("model_args") == model_args:
                return path
        return None

    def _evaluate(self, step: str, name: str, **own: str) -> None:
        from visheads_eval.lmms import runner

        model_args = self._model_args(own)
        if self._existing(model_args) is not None:
            self._say(f"{step}: reused")
            return
        argv = ["--model", "llava_visheads", "--model_args", model_args, "--tasks", ",".join(self.tasks),
                "--output_path", str(self.results), "--log_samples", "--verbosity", "WARNING"]
        if self.limit is not None:
            argv += ["--limit", str(self.limit)]
        if self.include_path is not None:
            argv += ["--include_path", str(self.include_path)]
        started = time.perf_counter()
        log = self.logs / f"{name}.log"
        with log.open("w") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            code = runner.run(argv)
        if code != 0:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise VisheadsError(f"{step} failed (exit {code}); its log is {log}:\n{tail}")
        results = json.loads(self._existing(model_args).read_text())["results"]
        accuracy = [results[task]["pointqa_acc,none"] for task in self.tasks if task in results]
        self._say(f"{step}: {time.perf_counter() - started:5.1f} s, mean accuracy {100 * sum(accuracy) / len(accuracy):5.1f}%")

    def _visheads(self, *argv: str) -> None:
        """Run a ``visheads`` subcommand in this process, its output into ``logs/<subcommand>.log``."""
        from visheads_eval.cli import main

        log = self.logs / f"{argv[0]}.log"
        with log.open("w") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                main(list(argv))
            except SystemExit as stop:
                code = stop.code
        if code:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise VisheadsError(f"visheads {argv[0]} failed (exit {code}); its log is {log}:\n{tail}")

    def _rank(self) -> Path:
        rankings = self.out / "rankings"
        if not rankings.is_dir() or not list(rankings.glob("*.csv")):
            self._say("[2/4] rank every head by the paper's score")
            self._visheads("rank", str(self.records), "--out", str(rankings))
        else:
            self._say("[2/4] rank every head: reused")
        (ranking,) = rankings.glob("*.csv")
        shutil.copyfile(ranking, self.out / "ranking.csv")
        return self.out / "ranking.csv"

    def _report(self) -> None:
        self._say("[4/4] leaderboard and figures")
        self._visheads("leaderboard", str(self.results), "--out", str(self.out))
        self._visheads("plot", str(self.records), "--results", str(self.results), "--out", str(self.out / "figures"))
