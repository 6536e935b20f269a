"""``llava_visheads --batch_size N``: one ``generate`` per N documents gives what one document at a time gives
(answers, token counts, records, masks), in lmms-eval's order and format; a failure names the batch's documents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.local_task import TASK_NAME
from visheads_eval.instrumentation import Instrumentation
from visheads_eval.lmms import runner
from visheads_eval.records import load_records

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts


def _evaluate(
    pretrained: str, tasks: str, out: Path, batch_size: int, include_path: Path | None = None, force_simple: bool = False, **own: str
) -> int:
    model_args = ",".join([f"pretrained={pretrained}", *(f"{k}={v}" for k, v in own.items())])
    argv = [
        "--model",
        "llava_visheads",
        "--model_args",
        model_args,
        "--tasks",
        tasks,
        "--batch_size",
        str(batch_size),
        "--output_path",
        str(out),
        "--log_samples",
        "--verbosity",
        "WARNING",
    ]
    return runner.run(argv + (["--include_path", str(include_path)] if include_path else []) + (["--force_simple"] if force_simple else []))


def _samples(out: Path) -> dict[tuple[str, int], dict]:
    """(task, doc_id) -> lmms-eval's own sample line, read from its samples logs."""
    samples = {}
    for path in sorted(out.glob("*/*_samples_*.jsonl")):
        task = path.stem.split("_samples_", 1)[1]
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            samples[task, sample["doc_id"]] = sample
    return samples


def _aligned_records(one: Path, batched: Path) -> tuple:
    first, second = load_records(one), load_records(batched)
    keys = list(zip(first.meta["task"], first.meta["doc_id"], strict=True))
    order = {key: row for row, key in enumerate(zip(second.meta["task"], second.meta["doc_id"], strict=True))}
    assert sorted(keys) == sorted(order), "both runs record the same documents"
    return first, second, [order[key] for key in keys]


def _assert_same_records(one: Path, batched: Path, atol: float) -> None:
    first, second, rows = _aligned_records(one, batched)
    for name in ("image_attn", "region_attn", "text_attn", "concentration"):
        np.testing.assert_allclose(second.stat(name)[rows], first.stat(name), atol=atol, err_msg=name)
    for column in ("n_keys", "n_image_tokens", "n_region_tokens", "answer"):
        assert list(second.meta[column].to_numpy()[rows]) == list(first.meta[column]), column


@pytest.mark.parametrize("force_simple", [False, True], ids=["chat", "simple"])
def test_a_batch_of_differently_sized_images_equals_one_document_at_a_time(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, force_simple: bool
) -> None:
    """LLaVA-NeXT's image token counts differ per image, so the batch's prompts are left-padded; batch 1 is
    lmms-eval's own llava_hf loop (chat or simple), batch 4 this project's."""
    pretrained = str(tiny_models["llava_next"])
    own = {"mask": "L1H2+L2H0", "record": ""}
    for batch_size in (1, 4):
        run = tmp_path / f"batch{batch_size}"
        assert (
            _evaluate(pretrained, TASK_NAME, run / "out", batch_size, count_task, force_simple, **{**own, "record": str(run / "rec")}) == 0
        )
    one, batched = _samples(tmp_path / "batch1" / "out"), _samples(tmp_path / "batch4" / "out")
    assert list(batched) == list(one) and len(one) == 6
    for key, sample in one.items():
        for field in ("filtered_resps", "token_counts", "target", "doc_hash"):
            assert batched[key][field] == sample[field], (key, field)
    records = load_records(tmp_path / "batch4" / "rec")
    assert len(set(records.meta["n_image_tokens"])) > 1, "the images must differ in token count for padding to be tested"
    assert records.run["mask"]["heads"] == ["L1H2", "L2H0"]
    _assert_same_records(tmp_path / "batch1" / "rec", tmp_path / "batch4" / "rec", atol=1e-4)


def test_the_organism_answers_a_pointqa_task_the_same_in_batches_of_16(tmp_path: Path) -> None:
    task = "pointqa_visual_general"
    for batch_size in (1, 16):
        run = tmp_path / f"batch{batch_size}"
        assert _evaluate("visheads-tiny", task, run / "out", batch_size, record=str(run / "rec")) == 0
    one, batched = _samples(tmp_path / "batch1" / "out"), _samples(tmp_path / "batch16" / "out")
    assert len(one) == 210 and list(batched) == list(one)
    same = sum(batched[key]["filtered_resps"] == sample["filtered_resps"] for key, sample in one.items())
    assert same >= 0.99 * len(one), f"{same} of {len(one)} answers agree"
    first, second, rows = _aligned_records(tmp_path / "batch1" / "rec", tmp_path / "batch16" / "rec")
    agree = second.meta["answer"].to_numpy()[rows] == first.meta["answer"].to_numpy()
    for name in ("image_attn", "region_attn", "text_attn", "concentration"):
        np.testing.assert_allclose(second.stat(name)[rows][agree], first.stat(name)[agree], atol=1e-4, err_msg=name)


def test_a_failed_batch_names_its_documents(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(self, generate, contexts, args, kwargs):
        raise RuntimeError("out of memory (injected)")

    monkeypatch.setattr(Instrumentation, "generate", failing)
    assert _evaluate(str(tiny_models["llava_llama"]), TASK_NAME, tmp_path / "out", 4, count_task) == 1
    assert (
        f"evaluation failed: GenerationFailed: generation failed on the batch of task '{TASK_NAME}' (test) doc 0, "
        f"task '{TASK_NAME}' (test) doc 1, task '{TASK_NAME}' (test) doc 2, task '{TASK_NAME}' (test) doc 3: "
        "RuntimeError: out of memory (injected)"
    ) in capsys.readouterr().err
