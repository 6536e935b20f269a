"""Tools for the people who build visheads_eval, run from a checkout and never shipped in the wheel:
training the organism (``tools.organism``), the lock file writer and figure scripts. The offline
tokenizers, processors and tiny models they build on live in the top-level ``fixtures`` package."""
