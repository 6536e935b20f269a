"""Sidecar records of per-head attention statistics: written during lmms-eval runs, read by the analysis.

``llava_visheads`` with ``record=<dir>`` writes, for every sample, each head's statistics (see
docs/architecture.md, "Records") through a :class:`RecordWriter`; :func:`load_records` reads a folder
back as one table of samples with one ``(n_samples, n_layers, n_heads)`` array per statistic::

    with RecordWriter(directory, run=run_info, n_layers=32, n_heads=32, rank=0) as writer:
        if key not in writer:
            writer.add(key, stats, n_keys=..., n_image_tokens=..., n_region_tokens=..., answer="3")
    records = load_records(directory)
    records.stat("image_attn")  # (n_samples, n_layers, n_heads), rows aligned with records.meta
"""

from visheads_eval.records.format import STATISTICS, RecordKey
from visheads_eval.records.reader import Records, load_records
from visheads_eval.records.writer import RecordWriter

__all__ = ["STATISTICS", "RecordKey", "RecordWriter", "Records", "load_records"]
