"""Runs are identified by the weights they load: a record folder or a ranking of other weights is refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fixtures.local_task import TASK_NAME
from visheads_eval.cli import main
from visheads_eval.errors import VisheadsError
from visheads_eval.lmms import runner
from visheads_eval.weights import weights_identity

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts


def _retrain(model: Path) -> None:
    """Stand-in for training again into the same folder: the weight file is rewritten."""
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.unlink()
    weights.write_bytes(data)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))


def test_the_digest_follows_the_weight_files_and_the_identity_names_dtype_and_revision(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    model = Path(shutil.copytree(tiny_models["llava_llama"], tmp_path / "model"))
    first = weights_identity(str(model))
    assert first == {"checkpoint": str(model.resolve()), "revision": None, "commit": None, "digest": first["digest"], "dtype": "auto"}
    assert len(first["digest"]) == 16
    (model / "tokenizer_config.json").touch()  # not a weight file
    assert weights_identity(str(model)) == first
    _retrain(model)
    assert weights_identity(str(model))["digest"] != first["digest"]
    assert weights_identity(str(model), dtype="bfloat16")["dtype"] == "bfloat16"
    hub = weights_identity("llava-hf/llava-1.5-7b-hf", revision="abc123")
    assert hub == {"checkpoint": "llava-hf/llava-1.5-7b-hf", "revision": "abc123", "commit": None, "digest": None, "dtype": "auto"}


def _evaluate(model: Path, count_task: Path, out: Path, **own: str) -> int:
    model_args = ",".join([f"pretrained={model}", *(f"{k}={v}" for k, v in own.items())])
    return runner.run(
        [
            "--model",
            "llava_visheads",
            "--model_args",
            model_args,
            "--tasks",
            TASK_NAME,
            "--include_path",
            str(count_task),
            "--output_path",
            str(out),
            "--log_samples",
        ]
    )


def test_records_and_rankings_of_other_weights_are_refused_before_loading(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path
) -> None:
    model = Path(shutil.copytree(tiny_models["llava_llama"], tmp_path / "model"))
    records = tmp_path / "rec"
    assert _evaluate(model, count_task, tmp_path / "out", record=str(records)) == 0
    run = json.loads((records / "run.json").read_text())
    assert run["weights"] == weights_identity(str(model))
    (results,) = (tmp_path / "out").glob("*/*_results.json")
    assert json.loads(results.read_text())["visheads"]["weights"] == run["weights"]
    with pytest.raises(SystemExit):
        main(["rank", str(records), "--out", str(tmp_path / "rankings")])
    (ranking,) = (tmp_path / "rankings").glob("*.csv")
    assert json.loads(ranking.with_suffix(".json").read_text())["weights"] == run["weights"]
    spec = tmp_path / "top2.yaml"
    spec.write_text("select: {stage: all, order: top, k: 2}\nmode: zero\n")
    assert _evaluate(model, count_task, tmp_path / "out2", mask=str(spec), ranking=str(ranking)) == 0

    _retrain(model)
    with pytest.raises(VisheadsError, match=f"{records} holds the records of a different run .*weights"):
        _evaluate(model, count_task, tmp_path / "out3", record=str(records))
    with pytest.raises(VisheadsError, match=f"ranking {ranking} was made on other weights \\(digest"):
        _evaluate(model, count_task, tmp_path / "out4", mask=str(spec), ranking=str(ranking))
    assert not (tmp_path / "out3").exists() and not (tmp_path / "out4").exists(), "refused before anything ran"
