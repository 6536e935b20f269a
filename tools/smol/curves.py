"""Learning curves of visheads-smol runs, from their ``train_log.jsonl``: what the recipe search shows.

One row per run: the answer-token loss per step (a 10-step running mean, stage 1 then stage 2, against
minutes of training) and the quick check's held-out accuracies (mean of the six PointQA settings, POPE-style),
with each task's chance level drawn for reference. ``A+B`` draws run ``B`` (trained with ``--init A``)
after ``A`` in one row, as a continuation.

    python -m tools.smol.curves tools/smol/runs/b tools/smol/runs/c tools/smol/runs/e+tools/smol/runs/e2 --out tools/smol/curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

COUNT_CHANCE = 1 / 7  # answers uniform in 1..7
POPE_CHANCE = 0.5


def read_log(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's training steps (stage, step, loss, minutes) and its quick checks (minutes, count_mean, pope)."""
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    steps = pd.DataFrame([r for r in records if "loss" in r])
    if steps.empty:
        raise SystemExit(f"{run / 'train_log.jsonl'} has no training steps; is {run} a visheads-smol run folder?")
    steps["minutes"] = steps["elapsed"] / 60
    checks = pd.DataFrame(
        [
            {"minutes": r["elapsed"] / 60, "count_mean": r["quick"]["count_mean"], "pope": r["quick"]["pope"]}
            for r in records
            if "quick" in r
        ]
    )
    return steps, checks


def read_chain(chain: str) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """``A+B+...``: each run's minutes follow the previous run's last; its phases are named "stage 1", "stage 2",
    then "continued (B)"; returns the row's title, the steps with a ``phase`` column, and the checks."""
    all_steps, all_checks, offset = [], [], 0.0
    runs = [Path(part) for part in chain.split("+")]
    for number, run in enumerate(runs):
        steps, checks = read_log(run)
        steps["phase"] = [f"stage {stage}" for stage in steps["stage"]] if number == 0 else f"continued ({run.name})"
        steps["minutes"] += offset
        checks["minutes"] += offset
        if number:  # a continuation's first check (before any step) repeats the end of the run before it
            checks = checks[checks["minutes"] > offset]
        offset = float(steps["minutes"].iloc[-1])
        all_steps.append(steps)
        all_checks.append(checks)
    return "+".join(run.name for run in runs), pd.concat(all_steps), pd.concat(all_checks)


def plot(chains: list[str], out: Path) -> None:
    figure, axes = plt.subplots(len(chains), 2, figsize=(10, 3 * len(chains)), squeeze=False)
    for row, chain in zip(axes, chains, strict=False):
        title, steps, checks = read_chain(chain)
        loss, accuracy = row
        for phase, group in steps.groupby("phase", sort=False):
            loss.plot(group["minutes"], group["loss"].rolling(10, min_periods=1).mean(), label=phase)
        loss.set(title=f"{title}: answer-token loss (10-step mean)", xlabel="minutes of training", ylabel="loss")
        loss.legend()
        accuracy.plot(checks["minutes"], checks["count_mean"], "o-", label="PointQA mean of six")
        accuracy.plot(checks["minutes"], checks["pope"], "s-", label="POPE-style")
        accuracy.axhline(COUNT_CHANCE, color="C0", linestyle=":", linewidth=1)
        accuracy.axhline(POPE_CHANCE, color="C1", linestyle=":", linewidth=1)
        accuracy.set(
            title=f"{title}: quick check (held-out, first answer token)", xlabel="minutes of training", ylabel="accuracy", ylim=(0, 1)
        )
        accuracy.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders, each with a train_log.jsonl; A+B: B continues A")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    plot(args.runs, args.out)


if __name__ == "__main__":
    main()
