"""``visheads demo``: the paper's pipeline end to end on one model, offline: what ``make demo`` runs.

1. record the plan's tasks through ``lmms_eval --model llava_visheads`` (``record=``), at the paper's answer
   position; and again at the last prompt position with the logit lens (``logit_lens=true``), where each
   layer's reading predicts the answer itself;
2. rank every head by the paper's score (``visheads rank``);
3. evaluate the plan's mask grid with ``visheads sweep``;
4. write the leaderboard (Markdown, CSV, LaTeX) and the figures, and print the leaderboard and where the
   answer settles by the logit lens.

Two plans (:data:`PLANS`):

- ``layers`` (the default; ``make demo`` on visheads-tiny): the six PointQA settings; early / mid / late /
  all layers x top / random (three seeds), and early "others", each removing ``k`` heads (a tenth of the
  model's heads by default); heads are recorded and ranked on the documents evaluated;
- ``top-vs-random`` (the default for visheads-smol; ``make demo-smol``): the four attribute tasks and the
  general PointQA question in both renderings; the top k heads of all layers against k random heads (five
  seeds) at k = 5% and 10% of the heads; heads are recorded and ranked on a synthetic split of their own
  (:data:`RECORD_SEED`), never on the documents the masks are evaluated on; the report adds, per k and group
  of tasks, the top-k and random-k drops with paired intervals (:mod:`visheads_eval.analysis.top_vs_random`),
  where the top heads sit by layer, and whether the same heads lead with the box in the text and drawn
  (Pearson r and EMD of the score maps, :mod:`visheads_eval.analysis.compare`), in ``study.md``.

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
from dataclasses import dataclass, field
from pathlib import Path

from visheads_eval.data.attribute_task import TASKS as ATTRIBUTE_TASKS
from visheads_eval.errors import VisheadsError
from visheads_eval.sweep import SweepPoint

POINTQA_TASKS = tuple(f"pointqa_{rendering}_{question}" for rendering in ("plain", "visual") for question in ("general", "object", "super"))
STAGES = ("early", "mid", "late", "all")
SEEDS = (0, 1, 2)
BATCH_SIZE = 16
RECORD_SEED = 3  # the synthetic split heads are recorded and ranked on, in the top-vs-random plan
RECORD_DOCS = 60


@dataclass(frozen=True)
class DemoMask:
    """One mask spec of a plan, written to the demo's mask folder, evaluated once per seed (once if none)."""

    name: str
    description: str
    select: dict[str, str]
    seeds: tuple[int, ...] = ()

    def spec_text(self) -> str:
        select = ", ".join(f"{key}: {value!r}" if key in ("k", "exclude_top") else f"{key}: {value}" for key, value in self.select.items())
        return f"description: {self.description}\nselect: {{{select}}}\nmode: zero\n"

    def points(self) -> list[SweepPoint]:
        return [SweepPoint(self.name, seed) for seed in self.seeds] if self.seeds else [SweepPoint(self.name)]


@dataclass(frozen=True)
class Plan:
    """What a demo evaluates, where it ranks heads, and what its report compares."""

    name: str
    tasks: tuple[str, ...]
    masks: tuple[DemoMask, ...]
    record_seed: int | None = None  # None: record on the evaluated documents; else on this synthetic split
    record_docs: int = RECORD_DOCS
    limit: int | None = None  # documents per task evaluated unless --limit says otherwise
    comparisons: tuple[tuple[str, str], ...] = ()  # (top mask, random mask) pairs for the top-vs-random table
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # task groups the comparisons pool
    rendering_pairs: tuple[tuple[str, str], ...] = ()  # (box in the text, box drawn) tasks compared head by head

    def grid(self) -> list[SweepPoint]:
        return [point for mask in self.masks for point in mask.points()]


def layer_plan(k: str = "10%", tasks: tuple[str, ...] = POINTQA_TASKS) -> Plan:
    """The layer grid: k heads per point (``k`` a count or a percentage of all heads)."""
    masks = [DemoMask(f"{stage}_top", f"top {k} heads of the {stage} layers", {"stage": stage, "order": "top", "k": k}) for stage in STAGES]
    masks += [
        DemoMask(f"{stage}_random", f"random {k} heads of the {stage} layers", {"stage": stage, "order": "random", "k": k}, SEEDS)
        for stage in STAGES
    ]
    masks.append(
        DemoMask(
            "early_others",
            f"{k} random heads of the early layers outside its top {k}",
            {"stage": "early", "order": "others", "k": k, "exclude_top": k},
            SEEDS,
        )
    )
    return Plan("layers", tasks, tuple(masks))


def top_vs_random_plan(ks: tuple[str, ...] = ("5%", "10%"), seeds: tuple[int, ...] = (0, 1, 2, 3, 4), limit: int | None = 40) -> Plan:
    """Top-k against random-k heads of all layers at each k, ranked on a split of their own."""
    masks, comparisons = [], []
    for k in ks:
        label = k.replace("%", "pct")
        masks.append(DemoMask(f"top{label}", f"the top {k} heads by the paper's score", {"stage": "all", "order": "top", "k": k}))
        masks.append(DemoMask(f"random{label}", f"{k} random heads", {"stage": "all", "order": "random", "k": k}, seeds))
        comparisons.append((f"top{label}", f"random{label}"))
    general = ("pointqa_plain_general", "pointqa_visual_general")
    return Plan(
        "top-vs-random",
        ATTRIBUTE_TASKS + general,
        tuple(masks),
        record_seed=RECORD_SEED,
        limit=limit,
        comparisons=tuple(comparisons),
        groups={"attributes": ATTRIBUTE_TASKS, "pointqa": general},
        rendering_pairs=(
            ("pointqa_plain_colour", "pointqa_visual_colour"),
            ("pointqa_plain_shape", "pointqa_visual_shape"),
            ("pointqa_plain_general", "pointqa_visual_general"),
        ),
    )


PLANS: dict[str, Callable[[str | None], Plan]] = {
    "layers": lambda k: layer_plan(k or "10%"),
    "top-vs-random": lambda k: top_vs_random_plan(tuple(k.split(",")) if k else ("5%", "10%")),
}
DEFAULT_PLANS = {"visheads-smol": "top-vs-random"}  # every other model: layers


class Demo:
    """Runs the steps into ``out``, each lmms-eval run in this process with its output in a log file."""

    def __init__(self, out: Path, pretrained: str, plan: Plan, limit: int | None = None, include_path: Path | None = None) -> None:
        self.out = out
        self.include_path = include_path
        self.pretrained = pretrained
        self.plan = plan
        self.tasks = plan.tasks
        self.limit = limit if limit is not None else plan.limit
        self.record_tasks = out / "record_tasks" if plan.record_seed is not None else None
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
        self.masks.mkdir(parents=True, exist_ok=True)
        for mask in self.plan.masks:
            (self.masks / f"{mask.name}.yaml").write_text(mask.spec_text())
        grid = self.plan.grid()
        if self.record_tasks is not None:
            grid.insert(0, SweepPoint("none"))  # the unmasked run on the evaluated documents
        where = "the evaluated documents" if self.record_tasks is None else f"synthetic split seed {self.plan.record_seed}"
        self._say(
            f"visheads demo ({self.plan.name} plan): {self.pretrained} on {len(self.tasks)} tasks, heads ranked on {where}, "
            f"{len(grid)} evaluations in its mask grid, out {self.out}"
        )
        with sharing_loaded_models():  # one model load for the recording and the whole grid
            self._record()
            self.ranking = self._rank()
            self._sweep(grid)
        self._report()
        self._say(f"visheads demo: done in {time.perf_counter() - start:.0f} s; everything is in {self.out}")
        print((self.out / "leaderboard.md").read_text())
        if self.plan.comparisons:
            print((self.out / "study.md").read_text())
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

    def _lmms_args(self, recording: bool = False) -> list[str]:
        """The evaluation's lmms-eval arguments; ``recording``: on the recording's split (all its documents)."""
        from visheads_eval.sweep import evaluation_args

        if recording and self.record_tasks is not None:
            return evaluation_args(",".join(self.tasks), BATCH_SIZE, None, self.record_tasks)
        return evaluation_args(",".join(self.tasks), BATCH_SIZE, self.limit, self.include_path)

    def _write_record_tasks(self) -> None:
        """The plan's tasks on a synthetic split of their own (``visheads data synth --preset``), made once."""
        assert self.record_tasks is not None
        if (self.record_tasks / "data" / "test.parquet").is_file():
            return
        self._visheads(
            "data",
            "synth",
            str(self.record_tasks),
            "--seed",
            str(self.plan.record_seed),
            f"--split=test={self.plan.record_docs}",
            "--preset=visheads",
        )

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

        # On a split of their own, the recordings' results stay out of the leaderboard (the grid evaluates the
        # unmasked run on the evaluated documents); on the evaluated documents, the recorded run is the unmasked one.
        own_split = self.record_tasks is not None
        if own_split:
            self._write_record_tasks()
        recordings = [
            (
                "[1/4] record the unmasked run" + (f" on split seed {self.plan.record_seed}" if own_split else ""),
                "none",
                f"record={self.records},position=answer",
                self.out / "record_lmms_eval" if own_split else self.results,
            ),
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
                code = evaluate("llava_visheads", model_args, results, self._lmms_args(recording=True))
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
        if self.plan.comparisons:
            (self.out / "study.md").write_text(self._study())

    def _study(self) -> str:
        """The top-vs-random report: the paired comparison per k and group (also ``top_vs_random.csv``), the
        layers of the top heads, and the score maps with the box in the text against drawn."""
        import pandas as pd

        from visheads_eval.analysis import top_vs_random
        from visheads_eval.analysis.compare import emd, pearson
        from visheads_eval.analysis.head_maps import record_maps
        from visheads_eval.analysis.results import find_runs

        runs = find_runs([self.results])
        table = pd.concat([top_vs_random.top_vs_random(runs, top, random, self.plan.groups) for top, random in self.plan.comparisons])
        table.to_csv(self.out / "top_vs_random.csv", index=False)
        board = pd.read_csv(self.out / "leaderboard.csv")
        ranking = pd.read_csv(self.out / "ranking.csv")
        n_layers = int(ranking["layer"].max()) + 1
        lines = [
            f"## Top-k against random-k heads ({self.pretrained})",
            "",
            f"Heads ranked by the paper's score on synthetic split seed {self.plan.record_seed} "
            f"({self.plan.record_docs} docs per task); masks evaluated on the first {self.limit} docs of each task; drops in "
            "points, 95% paired bootstrap intervals over the documents; random-k: each document's correctness averaged over "
            "the seeds; apart: the top-k interval lies above the random-k one.",
            "",
            top_vs_random.to_markdown(table),
            f"## Where the top heads sit ({n_layers} layers)",
            "",
        ]
        for top, _ in self.plan.comparisons:
            heads = str(board.loc[board["mask"] == top, "heads"].iloc[0]).split()
            layers = pd.Series([int(name[1:].split("H")[0]) for name in heads]).value_counts().sort_index()
            lines.append(f"- {top} ({len(heads)} heads): " + ", ".join(f"layer {layer}: {count}" for layer, count in layers.items()))
        maps = {item.task: item for item in record_maps([self.records], progress=False)}
        lines += [
            "",
            "## Box in the text against box drawn: the same heads? (score maps of the recording)",
            "",
            "| box in the text | box drawn | Pearson r (heads) | EMD (layers) |",
            "|---|---|---:|---:|",
        ]
        for plain, visual in self.plan.rendering_pairs:
            lines.append(f"| {plain} | {visual} | {pearson(maps[plain], maps[visual])['r']:.3f} | {emd(maps[plain], maps[visual]):.3f} |")
        return "\n".join(lines) + "\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole method on one model: record, rank, mask grid, leaderboard, figures",
        description="Record the plan's tasks, rank the heads, evaluate the plan's mask grid and write the "
        "leaderboard and figures. A second run reuses what is already computed.",
    )
    parser.add_argument("--pretrained", default="visheads-tiny", help="the model (default: the shipped tiny organism)")
    parser.add_argument(
        "--plan",
        choices=tuple(PLANS),
        help="layers: top/random/others heads per stage of layers, on the six PointQA settings; top-vs-random: the top k "
        "heads against k random heads (five seeds), ranked on a split of their own, on the attribute and general PointQA "
        "tasks (default: top-vs-random for visheads-smol, layers for every other model)",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument(
        "--k",
        help="heads removed per mask: a count or a percentage of all heads (layers: one, default 10%%; top-vs-random: a "
        "comma-separated list, default 5%%,10%%)",
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N docs of each task (top-vs-random: 40 by default)")
    parser.add_argument(
        "--include_path",
        type=Path,
        help="a folder of PointQA tasks to use instead of the shipped ones (e.g. made by `visheads data pointqa`)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    name = args.plan or DEFAULT_PLANS.get(args.pretrained, "layers")
    if name == "layers" and args.k and "," in args.k:
        raise VisheadsError(f"--k {args.k}: the layers plan removes one number of heads per mask; give one, e.g. --k 10%")
    return Demo(args.out, args.pretrained, PLANS[name](args.k), args.limit, args.include_path).run()
