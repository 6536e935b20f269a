"""visheads-smol (issue 17, in progress): SmolLM2-135M-Instruct grafted onto the organism's vision tower,
trained the LLaVA way (projector, then LoRA) on synthetic PointQA; see README.md for where it stands."""
