"""Local copies of the paper's benchmarks (MMBench, POPE, SEED-Bench image, Q-Bench) read from parquet files.

Each shipped task ``<name>_local`` (``tasks/benchmarks/``) is lmms-eval's own task with the same
prompts, generation settings and scoring functions (named by module path, e.g.
``lmms_eval.tasks.pope.utils.pope_process_results``); only the data source differs: parquet files
in the benchmark's Hugging Face format, which a user downloads once and points the task at with
``visheads data benchmark``. This module says which columns each benchmark needs, checks a user's
files against that, and holds the two functions the copies add: the SEED-Bench image filter and a
Q-Bench scorer whose fallback guess is seeded per question.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visheads_eval.errors import VisheadsError, did_you_mean

if TYPE_CHECKING:  # the heavy libraries load when used, so that `visheads --help` stays quick
    from datasets import Dataset


@dataclass(frozen=True)
class LocalBenchmark:
    """One benchmark's local copy: its task, the lmms-eval task it copies and the data it reads."""

    name: str  # what `visheads data benchmark NAME` takes
    task: str  # the local task's name
    upstream_task: str  # lmms-eval's own task with the same prompts and scoring
    upstream_dataset: str  # where lmms-eval's task reads its data from (Hugging Face hub id, split)
    split: str  # the split the task evaluates (the data_files key)
    columns: tuple[str, ...]  # columns the prompts and the scoring read
    image_column: str  # a datasets Image() column (a list of them for SEED-Bench)
    image_list: bool = False


BENCHMARKS: dict[str, LocalBenchmark] = {
    b.name: b
    for b in (
        LocalBenchmark(
            name="mmbench",
            task="mmbench_en_dev_static_local",
            upstream_task="mmbench_en_dev_static",
            upstream_dataset="lmms-lab/MMBench (config en, split dev)",
            split="dev",
            columns=("index", "question", "hint", "A", "B", "answer", "category", "L2-category", "source", "split"),
            image_column="image",
        ),
        LocalBenchmark(
            name="pope",
            task="pope_local",
            upstream_task="pope",
            upstream_dataset="lmms-lab-encoder/POPE (split test)",
            split="test",
            columns=("question_id", "question", "answer"),
            image_column="image",
        ),
        LocalBenchmark(
            name="seedbench",
            task="seedbench_image_local",
            upstream_task="seedbench",
            upstream_dataset="lmms-lab-encoder/SEED-Bench (split test; image questions only)",
            split="test",
            columns=("question_id", "question", "choice_a", "choice_b", "choice_c", "choice_d", "answer", "data_type"),
            image_column="image",
            image_list=True,
        ),
        LocalBenchmark(
            name="qbench",
            task="qbench_dev_local",
            upstream_task="qbench_dev",
            upstream_dataset="q-future/Q-Bench-HF (split dev)",
            split="dev",
            columns=("id", "question", "option0", "option1", "option2", "option3", "question_type", "question_concern", "correct_choice"),
            image_column="image",
        ),
    )
}


def get_benchmark(name: str) -> LocalBenchmark:
    """The benchmark called ``name`` (``mmbench``, ``pope``, ``seedbench``, ``qbench``)."""
    if name not in BENCHMARKS:
        raise VisheadsError(f"unknown benchmark '{name}'{did_you_mean(name, BENCHMARKS)}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def _is_image_feature(feature: Any, image_list: bool) -> bool:
    from datasets import Image, List

    if image_list:
        return isinstance(feature, List) and isinstance(feature.feature, Image)
    return isinstance(feature, Image)


def check_benchmark_files(benchmark: LocalBenchmark, files: Sequence[Path]) -> int:
    """Check that every file is a parquet file with the benchmark's columns; return the total row count."""
    import pyarrow.parquet as pq
    from datasets import Features

    if not files:
        raise VisheadsError(f"no data files given for {benchmark.name}; give the parquet files of {benchmark.upstream_dataset}")
    wanted = "a list of images" if benchmark.image_list else "an image"
    rows = 0
    for path in files:
        if not path.is_file():
            raise VisheadsError(f"{benchmark.name} data file {path} does not exist")
        try:
            metadata = pq.read_metadata(path)
        except Exception as error:  # pyarrow raises several types for files that are not parquet
            raise VisheadsError(f"{benchmark.name} data file {path} is not a parquet file: {error}") from error
        schema = metadata.schema.to_arrow_schema()
        missing = [column for column in (*benchmark.columns, benchmark.image_column) if column not in schema.names]
        if missing:
            raise VisheadsError(
                f"{path} lacks the column(s) {', '.join(missing)} of {benchmark.upstream_dataset}; is it the right benchmark and split?"
            )
        features = Features.from_arrow_schema(schema)
        if not _is_image_feature(features[benchmark.image_column], benchmark.image_list):
            raise VisheadsError(
                f"{path}: column '{benchmark.image_column}' is not {wanted} in the datasets format "
                f"(found {features[benchmark.image_column]}); use the parquet files as Hugging Face publishes them"
            )
        rows += metadata.num_rows
    return rows


def seedbench_image_docs(dataset: Dataset) -> Dataset:
    """SEED-Bench's image questions (``data_type == "image"``); the paper evaluates SEED on images."""
    return dataset.filter(lambda data_type: data_type == "image", input_columns="data_type")


def qbench_process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    """lmms-eval's Q-Bench scoring, with its fallback guess made reproducible per question.

    When no option can be read from the answer, lmms-eval picks one with ``random.choice`` on Python's
    global generator, so the guess depends on every random draw made before it in the run (other
    tasks, other questions). Here the global generator is seeded from the question's id for the call
    and restored afterwards: the same answer to the same question always scores the same, whatever
    else the run evaluates, which keeps accuracy drops under head masks paired question by question.
    """
    from lmms_eval.tasks.qbench.utils import q_bench_process_results

    state = random.getstate()
    random.seed(f"qbench:{doc['id']}")
    try:
        return q_bench_process_results(doc, results)
    finally:
        random.setstate(state)
