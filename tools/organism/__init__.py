"""Training the organism (``visheads-tiny``): its architecture, training batches, the two-stage recipe, run
folders and their installation, and evaluation outside lmms-eval. Run it as ``python -m tools.organism``;
the trained weights ship in ``visheads_eval/organism/weights``."""
