"""Save SmolLM2-135M-Instruct (the ``smol`` extra's Q4_1 GGUF file) once as a float32 ``save_pretrained`` folder
for ``tools.smol.train --lm`` (dequantizing the GGUF file takes ~20 s each time it loads).

    python -m tools.smol.convert --out runs/smollm2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visheads_eval.organism.smol import load_language_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model, tokenizer = load_language_model()
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"saved SmolLM2-135M-Instruct as float32 to {args.out}")


if __name__ == "__main__":
    main()
