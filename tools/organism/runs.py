"""A training run on disk, and installing one as the organism (in the user's cache, or shipped).

``<out>/`` holds ``model/`` (``save_pretrained`` of the model and its processor), ``train_config.json``
(the full config, seed included, and the command), ``train_log.jsonl`` (one line per logged step) and
``summary.json`` (wall and CPU time, versions, held-out accuracy per setting). The folder is built under
a temporary name and renamed when complete, so a folder with that name is always a finished run.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

import torch
import transformers
from tqdm import tqdm

import visheads_eval
from tools.organism.evaluate import accuracy_by_setting
from tools.organism.train import TrainConfig, train
from visheads_eval.analysis.output import write_text_atomic
from visheads_eval.data import synth
from visheads_eval.errors import VisheadsError

RUN_FILES = ("train_config.json", "train_log.jsonl", "summary.json")
HELDOUT_SEED = 1  # held-out docs: `visheads data synth OUT --seed 1 --split heldout=N`
HELDOUT_SPLIT = "heldout"
HELDOUT_DOCS = 700


def _json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def train_run(out_dir: Path, config: TrainConfig, command: str, heldout_docs: int = HELDOUT_DOCS) -> dict:
    """Train from ``config`` into ``out_dir`` (which must not exist yet); return the summary."""
    if out_dir.exists():
        raise VisheadsError(f"{out_dir} already exists; give a new folder for the run")
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    write_text_atomic(partial / "train_config.json", _json({"config": config.as_dict(), "command": command}))
    started, cpu_started = time.time(), time.process_time()
    with (partial / "train_log.jsonl").open("w", encoding="utf-8") as log_file:

        def log(entry: dict) -> None:
            entry = {**entry, "wall_s": round(time.time() - started, 1), "cpu_s": round(time.process_time() - cpu_started, 1)}
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()

        with tqdm(total=config.vision_steps + config.steps, desc="organism", unit="step") as bar:
            model, processor = train(config, log, progress=lambda: bar.update(1))
    wall, cpu = time.time() - started, time.process_time() - cpu_started
    model.save_pretrained(partial / "model")
    processor.save_pretrained(partial / "model")
    docs = list(synth.generate_docs(HELDOUT_SEED, HELDOUT_SPLIT, heldout_docs))
    summary = {
        "seed": config.seed,
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "threads": config.threads,
        "parameters": sum(p.numel() for p in model.parameters()),
        "heldout": {
            "seed": HELDOUT_SEED,
            "split": HELDOUT_SPLIT,
            "docs": heldout_docs,
            "accuracy": accuracy_by_setting(model, processor, docs, progress=True),
        },
        "versions": {
            "visheads_eval": visheads_eval.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "machine": platform.processor() or platform.machine(),
    }  # fmt: skip
    write_text_atomic(partial / "summary.json", _json(summary))
    partial.rename(out_dir)
    return summary


def check_run(run_dir: Path) -> None:
    """Raise unless ``run_dir`` is a finished training run."""
    missing = [name for name in (*RUN_FILES, "model/config.json", "model/model.safetensors") if not (run_dir / name).is_file()]
    if missing:
        raise VisheadsError(
            f"{run_dir} is not a finished organism training run (`python -m tools.organism`) (missing {', '.join(missing)})"
        )


def install_run(run_dir: Path, target: Path) -> Path:
    """Make the run in ``run_dir`` the organism in ``target``: its model, processor and run files replace
    what ``target`` held, all at once (a refused or failed install leaves ``target`` as it was)."""
    check_run(run_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.new")
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(run_dir / "model", staged)
    for name in RUN_FILES:
        shutil.copy2(run_dir / name, staged / name)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    if old.exists():
        shutil.rmtree(old)
    return target
