"""The lmms-eval integration: the ``llava_visheads`` model, its registration and the ``lmms_eval`` command."""
