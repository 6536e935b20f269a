"""visheads_eval: find, score and ablate the visual heads of vision-language models, on top of lmms-eval and lm-eval.

```python
from visheads_eval import HeadRecorder, HeadMask
```

The layout follows the method (docs/architecture.md): ``capture`` records per-head attention,
``masking`` ablates heads, ``geometry`` maps boxes to image tokens, ``records`` stores what a run
recorded, ``analysis`` turns records and results into scores, figures and tables, ``lmms`` is the
lmms-eval integration and ``cli`` the ``visheads`` command.
"""

from importlib.metadata import version
from typing import Any

__version__ = version("visheads_eval")
__all__ = ["HeadMask", "HeadRecorder", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that light commands do not pay for torch and transformers.
    if name == "HeadRecorder":
        from visheads_eval.capture import HeadRecorder

        return HeadRecorder
    if name == "HeadMask":
        from visheads_eval.masking.ablation import HeadMask

        return HeadMask
    raise AttributeError(f"module 'visheads_eval' has no attribute {name!r}")
