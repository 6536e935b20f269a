"""``visheads sweep``: a grid of masks evaluated through lmms-eval or lm-eval on one loaded model.

Each point of the grid (a mask, and for random and "others" specs a seed) is a full evaluation of ``--model
MODEL --model_args ...,mask=NAME[,mask_seed=S]`` (MODEL: ``llava_visheads`` or ``visheads``) through the
host's own command, run in this process (:data:`HOSTS`: ``lmms_eval``, or ``visheads lm-eval``), so it writes
exactly the results file, samples logs and ``visheads`` block a separate run writes, and ``visheads
leaderboard`` reads them unchanged. Inside :func:`~visheads_eval.sharing.sharing_loaded_models` the model
loads once; the host, the task index and the datasets' cache are loaded once by the process. A point whose
results file exists with the same model_args is skipped (resume); a failure stops the sweep with the point
and the document named.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visheads_eval.errors import VisheadsError


@dataclass(frozen=True)
class SweepPoint:
    """One evaluation of the grid: a mask (spec name, YAML file or inline heads) and the seed it draws with."""

    mask: str
    seed: int | None = None

    @property
    def label(self) -> str:
        return self.mask if self.seed is None else f"{self.mask} seed={self.seed}"

    def own_args(self) -> dict[str, str]:
        return {"mask": self.mask, **({"mask_seed": str(self.seed)} if self.seed is not None else {})}


def expand_masks(masks: Sequence[str], mask_dir: Path | None = None, seeds: Sequence[int] = ()) -> list[SweepPoint]:
    """The grid: ``masks`` are spec names, globs over them (``early_*``), YAML files, inline heads
    (``L2H5+L10H3``) or ``paper`` (every shipped spec: the paper's grid and ``none``); with ``seeds``, every
    random and "others" spec is evaluated once per seed."""
    from visheads_eval.masking.specs import load_mask, spec_files

    known = list(spec_files(mask_dir))
    names: list[str] = []
    for mask in masks:
        if mask == "paper":
            found = list(spec_files(None))
        elif any(char in mask for char in "*?[") and not Path(mask).exists():
            found = fnmatch.filter(known, mask)
            if not found:
                raise VisheadsError(f"no mask spec matches '{mask}'; list them with `visheads masks`")
        else:
            found = [mask]
        names += [name for name in found if name not in names]
    points = []
    for name in names:
        spec = load_mask(name, mask_dir)
        draws = spec.select is not None and spec.select.order != "top"
        points += [SweepPoint(name, seed) for seed in seeds] if draws and seeds else [SweepPoint(name)]
    return points


@dataclass(frozen=True)
class SweepHost:
    """One evaluation harness a sweep runs in: its command, in this process, and how it names results files."""

    name: str
    command: str  # "module:function" taking the command line's arguments and returning its exit status
    results_glob: str
    flags: tuple[str, ...]  # added to every point's command line

    def evaluate(self, argv: list[str]) -> int:
        """The host's command on ``argv``, in this process; its exit status."""
        module, function = self.command.split(":")
        return getattr(importlib.import_module(module), function)(argv)


HOSTS = {
    "lmms-eval": SweepHost("lmms-eval", "visheads_eval.lmms.runner:run", "*_results.json", ()),
    # visheads' models are chat models: lm-eval prompts them through the processor's chat template only when told.
    "lm-eval": SweepHost("lm-eval", "visheads_eval.cli.lm_eval:evaluate", "results_*.json", ("--apply_chat_template",)),
}


def _parsed(model_args: str | dict[str, Any] | None) -> dict[str, str]:
    """model_args as a host records them (a string, or lm-eval's parsed dict), as comparable key -> value strings."""
    from lmms_eval.utils import simple_parse_args_string

    parsed = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args or "")
    return {str(key): str(value) for key, value in parsed.items()}


def existing_results(output_path: Path, model_args: str, host: SweepHost = HOSTS["lmms-eval"]) -> Path | None:
    """The results file of ``host`` under ``output_path`` of an evaluation with exactly these model_args, if any."""
    wanted = _parsed(model_args)
    for path in sorted(Path(output_path).rglob(host.results_glob)):
        if _parsed(json.loads(path.read_text()).get("config", {}).get("model_args")) == wanted:
            return path
    return None


def evaluation_args(
    tasks: str, batch_size: int, limit: int | None = None, include_path: Path | None = None, host: SweepHost = HOSTS["lmms-eval"]
) -> list[str]:
    """The command-line arguments of every point but the model: tasks, batch size, samples logs, quiet logging."""
    argv = ["--tasks", tasks, "--batch_size", str(batch_size), "--log_samples", "--verbosity", "WARNING", *host.flags]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if include_path is not None:
        argv += ["--include_path", str(include_path)]
    return argv


def evaluate(model: str, model_args: str, output_path: Path, host_args: Sequence[str], host: SweepHost = HOSTS["lmms-eval"]) -> int:
    """One ``--model MODEL`` evaluation through ``host`` in this process; its exit status."""
    return host.evaluate(["--model", model, "--model_args", model_args, "--output_path", str(output_path), *host_args])


def run_sweep(
    points: Sequence[SweepPoint],
    base_model_args: str,
    host_args: Sequence[str],
    output_path: Path,
    record_dir: Path | None = None,
    say: Callable[[str], None] = print,
    model: str = "llava_visheads",
    host: SweepHost = HOSTS["lmms-eval"],
) -> list[Path]:
    """Evaluate every point on one loaded model; return the results file of each, in order.

    ``base_model_args`` are the model_args every point shares (``pretrained=...``, ``mask_dir=...``);
    ``host_args`` the rest of the host's command line (``--tasks``, ``--batch_size`` ...); ``model`` the host's model id. With
    ``record_dir``, each point records into ``record_dir/<label>``.
    """
    from visheads_eval.sharing import sharing_loaded_models

    written = []
    with sharing_loaded_models():
        for index, point in enumerate(points, 1):
            own = point.own_args()
            if record_dir is not None:
                own["record"] = str(record_dir / point.label.replace(" seed=", "_seed"))
            model_args = ",".join([base_model_args, *(f"{key}={value}" for key, value in own.items())])
            step = f"[{index}/{len(points)}] {point.label}"
            found = existing_results(output_path, model_args, host)
            if found is not None:
                say(f"{step}: reused {found}")
                written.append(found)
                continue
            started = time.perf_counter()
            code = evaluate(model, model_args, output_path, host_args, host)
            if code != 0:
                raise VisheadsError(
                    f"the sweep stopped at {step} (exit {code}); the error is above. "
                    "Fix it and run the same command again: finished points are reused"
                )
            found = existing_results(output_path, model_args, host)
            if found is None:
                raise VisheadsError(f"{step} wrote no results file under {output_path}")
            say(f"{step}: {time.perf_counter() - started:.1f} s, {_summary(found)}")
            written.append(found)
    return written


def _summary(results_file: Path) -> str:
    """Each metric's mean over the tasks that report it, as one short phrase."""
    values: dict[str, list[float]] = {}
    for metrics in json.loads(results_file.read_text())["results"].values():
        for name, value in metrics.items():
            if "," in name and "stderr" not in name and isinstance(value, (int, float)):
                values.setdefault(name.split(",")[0], []).append(float(value))
    return ", ".join(f"{name} {sum(v) / len(v):.3f}" + (f" (mean of {len(v)} tasks)" if len(v) > 1 else "") for name, v in values.items())
