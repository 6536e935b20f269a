"""Data for the tasks: PointQA docs and prompts, the synthetic PointQA generator, local benchmark copies."""
