"""The lm-evaluation-harness host: importing this package registers ``llava_visheads`` with lm-eval.

lm-eval 0.4 has no plugin entry point for models: a model registers with ``@register_model`` when its
module is imported. ``visheads lm-eval`` imports it before running lm-eval's CLI; from Python::

    import visheads_eval.lm_eval  # noqa: F401
    lm_eval.simple_evaluate(model="llava_visheads", model_args="pretrained=visheads-tiny,mask=early_top20", ...)
"""

from visheads_eval.lm_eval.model import LlavaVisheadsLM

__all__ = ["LlavaVisheadsLM"]
