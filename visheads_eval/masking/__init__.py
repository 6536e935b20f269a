"""Head masking: ``HeadMask`` (zero, mean or uniform ablation; ``ablation``), reference means (``means``),
and YAML mask specs (which heads to remove; ``schema``, ``select``, ``specs``) with their resolution to
heads for one model. ``from visheads_eval import HeadMask`` is the public entry point."""
