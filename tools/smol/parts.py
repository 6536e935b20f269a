"""Keep what a visheads-smol training session trained: the projector and the LoRA adapters, in float16.

Everything else in the model is what it was built from and is rebuilt, not stored: SmolLM2-135M-Instruct
(the ``smol`` extra's GGUF file) and the shipped organism's vision tower. A parts folder holds

- ``projector.safetensors``: the multimodal projector's weights;
- ``adapter/``: peft's ``adapter_config.json`` and ``adapter_model.safetensors`` (one adapter: a run
  continued with ``--init PARTS`` goes on training the same adapters);
- ``parts.json``: what they were trained from and for how long, and each file's SHA-256.

Reading parts and assembling the model they describe is the package's (:mod:`visheads_eval.organism.smol`,
which ships the chosen parts); writing them is training's, here. The float16 rounding is part of what
ships: evaluate the assembled model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from visheads_eval.organism.smol import ADAPTER_DIR, ADAPTER_WEIGHTS, PARTS_FILE, PROJECTOR_FILE, assemble
from visheads_eval.weights import file_sha256


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
        "sha256": {str(path.relative_to(out)): file_sha256(path) for path in files},
    }
    (out / PARTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Assemble a visheads-smol model from its trained parts, as a save_pretrained folder.")
    parser.add_argument("--parts", type=Path, required=True)
    parser.add_argument("--organism", type=Path, default=None, help="the organism whose vision tower is used (default: the shipped one)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model, processor = assemble(args.parts, args.organism)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f"assembled {args.out} from {args.parts}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
