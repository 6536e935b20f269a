"""Recording of per-head attention to the image, under the model's own attention kernel."""

from visheads_eval.capture.recorder import HeadRecorder

__all__ = ["HeadRecorder"]
