"""Analysis of recorded runs and of lmms-eval and lm-eval results: head scores, rankings, comparisons, figures, leaderboards.

Modules: ``scores`` (per-head means and the detection score), ``head_maps`` (head maps of record
folders and ranking files), ``ranking_table`` (a model's ranking and its provenance), ``compare``
(Pearson across models, EMD across benchmarks), ``figures`` (the paper's figures), ``results``
(reading both hosts' results and samples files), ``paired`` (a mask's drop paired over documents: bootstrap
interval, McNemar), ``leaderboard`` (accuracy drops under masks), ``lens`` (logit-lens curves and where
they settle), ``output`` (atomic writes).
Nothing here loads a model. The ``visheads rank / plot / compare / leaderboard`` commands are thin
layers over the functions exported here::

    maps = record_maps(["records/llava-1.5-7b"], tasks=["pointqa_visual_general"])
    save_ranking(maps[0])                      # where mask specs look for the model's ranking
    table = leaderboard(find_runs(["lmms_out"]))
"""

import importlib
from typing import Any

# Exported name -> the module that defines it; imported on first use, so that importing one module of
# this package (or the visheads command) does not load scipy, matplotlib, pyarrow and torch at once.
_EXPORTS = {
    "correlation_table": "compare",
    "emd": "compare",
    "emd_table": "compare",
    "pearson": "compare",
    "CorrectOnly": "head_maps",
    "ranking_maps": "head_maps",
    "record_maps": "head_maps",
    "leaderboard": "leaderboard",
    "to_latex": "leaderboard",
    "to_markdown": "leaderboard",
    "ranking_table": "ranking_table",
    "save_ranking": "ranking_table",
    "Run": "results",
    "find_runs": "results",
    "read_run": "results",
    "HeadMaps": "scores",
    "HeadSums": "scores",
    "ScoreParams": "scores",
    "summarize": "scores",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
