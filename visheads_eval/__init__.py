"""visheads_eval: find, score and ablate the visual heads of LLaVA-family models, on top of lmms-eval.

Layout: ``heads`` (head names, where heads live), ``lmms`` (the ``llava_visheads`` lmms-eval model and
the ``lmms_eval`` command), ``tiny`` (offline tokenizer and processors for small models).
"""

from importlib.metadata import version

__version__ = version("visheads_eval")
