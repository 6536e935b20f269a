"""Head masking: YAML mask specs (which heads to remove) and their resolution to heads for one model."""
