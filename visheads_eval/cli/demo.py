"""``visheads demo``: the paper's pipeline end to end on one model, offline: what ``make demo`` runs.

1. record the six PointQA settings through ``lmms_eval --model llava_visheads`` (``record=``), at the
   paper's answer position; and again at the last prompt position with the logit lens
   (``logit_lens=true``), where each layer's reading predicts the answer itself;
2. rank every head by the paper's score (``visheads rank``);
3. evaluate the mask grid with ``visheads sweep``: early / mid / late / all layers x top / random (three
   seeds), and early "others", each removing ``k`` heads (a tenth of the model's heads by default);
4. write the leaderboard (Markdown, CSV, LaTeX) and the figures, and print the leaderboard and where the
   answer settles by the logit lens.

Every evaluation runs in this process on one loaded model, in batches of ``BATCH_SIZE`` documents; lmms-eval's
output goes to logs under ``<out>/logs``, the terminal gets one line per step. A second run reuses what
exists: a recording whose records and results are there, a ranking, and every masked run whose results
file has the same model_args.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from visheads_eval.errors import VisheadsError
from visheads_eval.sweep import SweepPoint

POINTQA_TASKS = tuple(f"pointqa_{rendering}_{question}" for rendering in ("plain", "visual") for question in ("general", "object", "super"))
STAGES = ("early", "mid", "late", "all")
SEEDS = (0, 1, 2)
BATCH_SIZE = 16


def mask_grid() -> list[SweepPoint]:
    """The grid the demo evaluates (spec names under the demo's mask folder), in the order it reports."""
    grid = [SweepPoint(f"{stage}_top") for stage in STAGES]
    grid += [SweepPoint(f"{stage}_random", seed) for stage in STAGES for seed in SEEDS]
    grid += [SweepPoint("early_others", seed) for seed in SEEDS]
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

    def __init__(
        self, out: Path, pretrained: str, tasks: tuple[str, ...], k: str, limit: int | None, include_path: Path | None = None
    ) -> None:
        self.out = out
        self.include_path = include_path
        self.pretrained = pretrained
        self.tasks = tasks
        self.k = k
        self.limit = limit
        self.records = out / "records"
        self.lens = out / "lens"
        self.results = out / "lmms_eval"
        self.logs = out / "logs"
        self.masks = out / "masks"
        self.ranking: Path | None = None

    def run(self) -> int:
        from visheads_eval.sharing import sharing_loaded_models

        start = time.perf_counter()
        self.logs.mkdir(parents=True, exist_ok=True)
        write_mask_specs(self.masks, self.k)
        grid = mask_grid()
        self._say(f"visheads demo: {self.pretrained} on {len(self.tasks)} PointQA settings, {len(grid)} masked runs, out {self.out}")
        with sharing_loaded_models():  # one model load for the recording and the whole grid
            self._record()
            self.ranking = self._rank()
            self._sweep(grid)
        self._report()
        self._say(f"visheads demo: done in {time.perf_counter() - start:.0f} s; everything is in {self.out}")
        print((self.out / "leaderboard.md").read_text())
        print(self._settle_summary())
        return 0

    def _settle_summary(self) -> str:
        """One line per task: where the answer becomes and stays the top-1 of the logit lens."""
        import pandas as pd

        settle = pd.read_csv(self.lens / "logit_lens_settle.csv")
        lines = [
            f"Logit lens ({self.lens / 'logit_lens.png'}): the reading (0 = embeddings, n = after layer n-1) "
            "from which the answer stays top-1, median [quartiles]"
        ]
        lines += [
            f"  {row.task}: {row.settle_median:g} of {row.n_layers} [{row.settle_q25:g}-{row.settle_q75:g}], n={row.n_samples}"
            for row in settle.itertuples()
        ]
        return "\n".join(lines)

    def _say(self, line: str) -> None:
        print(line, flush=True)

    def _lmms_args(self) -> list[str]:
        from visheads_eval.sweep import evaluation_args

        return evaluation_args(",".join(self.tasks), BATCH_SIZE, self.limit, self.include_path)

    @contextlib.contextmanager
    def _logged(self, name: str) -> Iterator[Callable[[str], None]]:
        """lmms-eval's output into ``logs/<name>.log``; yields a ``say`` that still reaches the terminal."""
        terminal = sys.stdout
        log = self.logs / f"{name}.log"
        try:
            with log.open("w") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                yield lambda line: print(line, file=terminal, flush=True)
        except VisheadsError as error:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise VisheadsError(f"{error}; its log is {log}:\n{tail}") from error

    def _record(self) -> None:
        from visheads_eval.sweep import evaluate, existing_results

        recordings = [
            ("[1/4] record the unmasked run", "none", f"record={self.records},position=answer", self.results),
            # its own lmms-eval folder: the leaderboard's unmasked run is the one above
            (
                "[1/4] record the logit lens at the last prompt position",
                "lens",
                f"record={self.lens / 'records'},position=last_prompt,logit_lens=true",
                self.lens / "lmms_eval",
            ),
        ]
        for step, log, own, results in recordings:
            model_args = f"pretrained={self.pretrained},{own}"
            if existing_results(results, model_args) is not None:
                self._say(f"{step}: reused")
                continue
            started = time.perf_counter()
            with self._logged(log):
                code = evaluate("llava_visheads", model_args, results, self._lmms_args())
                if code != 0:
                    raise VisheadsError(f"{step} failed (exit {code})")
            self._say(f"{step}: {time.perf_counter() - started:5.1f} s")

    def _sweep(self, grid: list[SweepPoint]) -> None:
        from visheads_eval.sweep import run_sweep

        base = f"pretrained={self.pretrained},mask_dir={self.masks},ranking={self.ranking}"
        with self._logged("sweep") as say:
            run_sweep(grid, base, self._lmms_args(), self.results, say=lambda line: say(f"[3/4] mask {line}"))

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
        self._visheads("plot", str(self.lens / "records"), "--out", str(self.lens))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole method on one model: record, rank, mask grid, leaderboard, figures",
        description="Record the six PointQA settings, rank the heads, evaluate the mask grid and write the "
        "leaderboard and figures. A second run reuses what is already computed.",
    )
    parser.add_argument("--pretrained", default="visheads-tiny", help="the model (default: the shipped tiny organism)")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--k", default="10%", help="heads removed per mask: a count or a percentage of all heads (default 10%%)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N docs of each task")
    parser.add_argument(
        "--include_path",
        type=Path,
        help="a folder of PointQA tasks to use instead of the shipped ones (e.g. made by `visheads data pointqa`)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return Demo(args.out, args.pretrained, POINTQA_TASKS, args.k, args.limit, args.include_path).run()
