"""Head ablation: ``HeadMask`` (zero, mean or uniform), reference means, and YAML mask specs."""

from visheads_eval.masking.ablation import MODES, HeadMask

__all__ = ["MODES", "HeadMask"]
