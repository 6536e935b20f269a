"""Tools for the people who build visheads_eval, run from a checkout and never shipped in the wheel:
training the organism (``tools.organism``), offline tokenizers and processors for small models
(``tools.tiny``), the lock file writer and figure scripts."""
