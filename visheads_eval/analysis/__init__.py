"""Analysis of recorded runs and lmms-eval results: head scores, rankings, comparisons, figures, leaderboards.

Modules: ``scores`` (per-head means and the detection score), ``ranking_table`` (a model's ranking),
``compare`` (Pearson across models, EMD across benchmarks), ``figures`` (the paper's figures),
``results`` (reading lmms-eval results and samples files), ``leaderboard`` (accuracy drops under masks),
``output`` (atomic writes). Nothing here loads a model.
"""
