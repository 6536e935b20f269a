"""`python -m tools.organism`: a run is reproducible from its seed, recorded on disk, and installable into the
user's cache, where `pretrained=visheads-tiny` finds it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tools.organism.__main__ import main
from tools.organism.batches import PATCH_ATTRIBUTES_INDEX, sample_batch
from tools.organism.model import Architecture, build_processor
from tools.organism.runs import install_run, train_run
from tools.organism.train import TrainConfig, attention_targets
from visheads_eval.data import synth

TINY = TrainConfig(
    architecture=Architecture(vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=3, text_heads=4, text_intermediate=64),
    vision_steps=2,
    vision_batch=4,
    steps=2,
    batch=4,
    cell_layer=1,
    kind_layer=1,
    pointer_head="L1H0",
    read_heads=("L2H0",),
    early_answer_layers=(2,),
)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = TrainConfig.from_dict({**TINY.as_dict(), "seed": seed})
        train_run(root / name, config, f"test seed {seed}", heldout_docs=7)
    return {name: root / name for name in "abc"}


def test_same_seed_same_weights_other_seed_other_weights(runs: dict[str, Path]) -> None:
    a, b, c = (_weights(runs[name]) for name in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert any(not torch.equal(a[key], c[key]) for key in a)


def test_run_folder_records_config_seed_log_and_times(runs: dict[str, Path]) -> None:
    run = runs["c"]
    recorded = json.loads((run / "train_config.json").read_text())
    assert recorded["command"] == "test seed 1"
    assert TrainConfig.from_dict(recorded["config"]) == TrainConfig.from_dict({**TINY.as_dict(), "seed": 1})
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [entry["stage"] for entry in log] == ["vision", "vision", "answers", "answers"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seed"] == 1 and summary["train_wall_s"] > 0 and summary["train_cpu_s"] > 0
    assert set(summary["heldout"]["accuracy"]) == {
        "plain_general",
        "plain_object",
        "plain_super",
        "visual_general",
        "visual_object",
        "visual_super",
        "mean",
    }
    assert not list(run.parent.glob(".*partial")), "no partial folder is left behind"


def test_an_existing_folder_is_not_overwritten(runs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    before = _weights(runs["a"])
    assert main([str(runs["a"])]) == 2
    assert "already exists" in capsys.readouterr().err
    after = _weights(runs["a"])
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_install_copies_the_run_and_refuses_an_unfinished_one(runs: dict[str, Path], tmp_path: Path) -> None:
    target = install_run(runs["a"], tmp_path / "weights")
    assert (target / "model.safetensors").read_bytes() == (runs["a"] / "model" / "model.safetensors").read_bytes()
    assert {"config.json", "tokenizer.json", "processor_config.json", "train_config.json", "summary.json"} <= {
        p.name for p in target.iterdir()
    }
    (tmp_path / "half").mkdir()
    with pytest.raises(ValueError, match="not a finished organism training run"):
        install_run(tmp_path / "half", tmp_path / "weights")
    assert (target / "model.safetensors").exists(), "a refused install leaves the installed weights alone"


def test_install_goes_to_the_user_cache_and_visheads_tiny_loads_it(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from visheads_eval.cli.doctor import check_organism
    from visheads_eval.model_args import resolve_pretrained
    from visheads_eval.organism import SHIPPED_DIR

    monkeypatch.setenv("VISHEADS_CACHE", str(tmp_path / "cache"))
    shipped_before = {p.name: p.read_bytes() for p in SHIPPED_DIR.iterdir()}
    package_before = sorted(p.name for p in SHIPPED_DIR.parent.iterdir())
    assert Path(resolve_pretrained("visheads-tiny")) == SHIPPED_DIR, "nothing installed: the shipped organism"
    assert main([str(runs["c"]), "--install"]) == 0
    installed = tmp_path / "cache" / "models" / "visheads-tiny"
    assert str(installed) in capsys.readouterr().out
    assert (installed / "model.safetensors").read_bytes() == (runs["c"] / "model" / "model.safetensors").read_bytes()
    assert Path(resolve_pretrained("visheads-tiny")) == installed
    assert (
        check_organism().line()
        == f"note    visheads-tiny: a re-trained organism installed in {installed} (delete it to use the shipped one)"
    )
    assert {p.name: p.read_bytes() for p in SHIPPED_DIR.iterdir()} == shipped_before, "the package is left alone"
    assert sorted(p.name for p in SHIPPED_DIR.parent.iterdir()) == package_before, "nothing staged beside the shipped weights"


def test_attention_targets_point_at_the_exemplar_and_its_kind() -> None:
    processor = build_processor()
    batch = sample_batch(processor, np.random.default_rng(0), 3)
    pointer, read = attention_targets(batch, processor.tokenizer.convert_tokens_to_ids("<image>"))
    kinds = batch.patch_labels[..., PATCH_ATTRIBUTES_INDEX["kind"]]  # (batch, patches)
    for row in range(3):
        image_positions = (batch.input_ids[row] == processor.tokenizer.convert_tokens_to_ids("<image>")).nonzero().flatten()
        target_patch = int(pointer[row, image_positions].argmax())
        # The pointed patch holds the boxed exemplar's kind; it is the exemplar's cell.
        assert target_patch == int(batch.exemplar[row, 1]) * synth.GRID + int(batch.exemplar[row, 2])
        assert kinds[row, target_patch] == batch.exemplar[row, 0]
        same = (kinds[row] == batch.exemplar[row, 0]).nonzero().flatten()
        assert torch.allclose(read[row, image_positions[same]], torch.full((len(same),), 1 / len(same)))
        assert read[row].sum() == pytest.approx(1.0) and pointer[row].sum() == 1.0
        # The patch labels count the objects of each kind: the exemplar's count is the answer.
        digit = processor.tokenizer.convert_ids_to_tokens(int(batch.input_ids[row, -2]))
        assert int(digit) == len(same) == int(batch.patch_labels[row, target_patch, PATCH_ATTRIBUTES_INDEX["count"]])


@pytest.mark.parametrize(
    ("change", "message"),
    [({"pointer_head": "L9H0"}, "does not exist"), ({"read_heads": ("L2H8",)}, "does not exist"), ({"kind_layer": 7}, "not one of 1..6")],
)
def test_a_config_naming_missing_heads_or_layers_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)
