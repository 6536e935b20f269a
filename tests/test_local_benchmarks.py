"""MMBench, POPE, SEED-Bench (image) and Q-Bench: lmms-eval's own tasks and their local copies."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import datasets
import lmms_eval.tasks
import pytest
from lmms_eval.utils import load_yaml_config

from fixtures.local_benchmarks import WRITERS
from visheads_eval.cli import build_parser
from visheads_eval.data.local_benchmarks import (
    BENCHMARKS,
    check_benchmark_files,
    qbench_process_results,
)
from visheads_eval.data.task_folders import read_task_yaml, write_benchmark_task
from visheads_eval.errors import VisheadsError
from visheads_eval.lmms import runner
from visheads_eval.resources import tasks_dir

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts

BIN = Path(sys.executable).parent
LMMS_TASKS = Path(lmms_eval.tasks.__file__).parent
UPSTREAM_YAML = {
    "mmbench": LMMS_TASKS / "mmbench" / "mmbench_en_dev_static.yaml",
    "pope": LMMS_TASKS / "pope" / "pope.yaml",
    "seedbench": LMMS_TASKS / "seedbench" / "seedbench.yaml",
    "qbench": LMMS_TASKS / "qbench" / "qbench_dev.yaml",
}


def _where(function: object) -> tuple[str, str]:
    """A function by source file and name: lmms-eval loads a task's utils.py afresh for each YAML."""
    return (os.path.realpath(function.__code__.co_filename), function.__name__)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_lmms_eval_task_is_generate_until_and_has_a_prompt_for_any_model_name(name: str) -> None:
    config = load_yaml_config(str(UPSTREAM_YAML[name]), mode="full")
    assert config["task"] == BENCHMARKS[name].upstream_task
    assert config["output_type"] == "generate_until"
    kwargs = config.get("lmms_eval_specific_kwargs")
    assert kwargs is None or "default" in kwargs, "llava_visheads matches no model-specific prompt block"


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_local_copy_prompts_generates_and_scores_as_lmms_eval_does(name: str) -> None:
    upstream = load_yaml_config(str(UPSTREAM_YAML[name]), mode="full")
    local = load_yaml_config(str(tasks_dir() / "benchmarks" / f"{BENCHMARKS[name].task}.yaml"), mode="full")
    assert local["task"] == BENCHMARKS[name].task
    assert local["dataset_path"] == "parquet" and local["test_split"] == BENCHMARKS[name].split
    for key in ("output_type", "doc_to_target", "generation_kwargs", "lmms_eval_specific_kwargs", "model_specific_generation_kwargs"):
        assert local.get(key) == upstream.get(key), key
    for key in ("doc_to_visual", "doc_to_text"):
        assert _where(local[key]) == _where(upstream[key]), key
    if name == "qbench":  # the local scorer seeds lmms-eval's own; see test_qbench_fallback_guess_is_seeded_per_question
        assert local["process_results"].__module__ == "visheads_eval.data.local_benchmarks"
    else:
        assert _where(local["process_results"]) == _where(upstream["process_results"])
    upstream_metrics = {m["metric"]: m for m in upstream["metric_list"]}
    for metric in local["metric_list"]:
        theirs = upstream_metrics[metric["metric"]]
        assert _where(metric["aggregation"]) == _where(theirs["aggregation"])
        assert metric["higher_is_better"] == theirs["higher_is_better"]
    dropped = set(upstream_metrics) - {m["metric"] for m in local["metric_list"]}
    assert dropped == ({"seed_video"} if name == "seedbench" else set())


def test_qbench_fallback_guess_is_seeded_per_question() -> None:
    doc = {
        "id": 17,
        "option0": "sharp",
        "option1": "blurry",
        "option2": "noisy",
        "option3": "N/A",
        "question_concern": 0,
        "question_type": 1,
        "correct_choice": "B",
    }
    guesses = set()
    for seed in range(5):
        random.seed(seed)
        expected_next = random.Random(seed).random()
        guesses.add(qbench_process_results(doc, ["no letter here"])["qbench_acc"]["parsed_pred"])
        assert random.random() == expected_next, "the global generator is left as it was"
    assert guesses == {random.Random("qbench:17").choice("ABC")}
    assert qbench_process_results(doc, ["(C)"])["qbench_acc"]["parsed_pred"] == "C"


def test_benchmark_files_are_checked_against_the_benchmark_format(tmp_path: Path) -> None:
    pope = WRITERS["pope"](tmp_path / "pope.parquet")
    assert check_benchmark_files(BENCHMARKS["pope"], [pope]) == 6
    with pytest.raises(VisheadsError, match=r"lacks the column\(s\) index, hint, A, B, L2-category, source, split of lmms-lab/MMBench"):
        check_benchmark_files(BENCHMARKS["mmbench"], [pope])

    seed = datasets.load_dataset("parquet", data_files=str(WRITERS["seedbench"](tmp_path / "seed.parquet")), split="train")
    one_image = seed.map(lambda row: {"frame": row["image"][0]}).remove_columns("image").rename_column("frame", "image")
    one_image.to_parquet(str(tmp_path / "seed_one_image.parquet"))
    with pytest.raises(VisheadsError, match="column 'image' is not a list of images in the datasets format"):
        check_benchmark_files(BENCHMARKS["seedbench"], [tmp_path / "seed_one_image.parquet"])

    (tmp_path / "notes.parquet").write_text("not parquet")
    with pytest.raises(VisheadsError, match="is not a parquet file"):
        check_benchmark_files(BENCHMARKS["pope"], [tmp_path / "notes.parquet"])
    with pytest.raises(VisheadsError, match="does not exist"):
        check_benchmark_files(BENCHMARKS["pope"], [tmp_path / "missing.parquet"])


def test_benchmark_command_writes_a_task_reading_the_given_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [WRITERS["pope"](tmp_path / "pope-0.parquet"), WRITERS["pope"](tmp_path / "pope-1.parquet")]
    args = build_parser().parse_args(["data", "benchmark", "pope", *map(str, files), "--out", str(tmp_path / "tasks")])
    assert args.handler(args) == 0
    assert "pope_local reads 2 file(s), 12 rows" in capsys.readouterr().out
    written = read_task_yaml(tmp_path / "tasks" / "pope_local.yaml")
    shipped = read_task_yaml(tasks_dir() / "benchmarks" / "pope_local.yaml")
    assert written["dataset_kwargs"] == {"data_files": {"test": [str(f) for f in files]}}
    assert {k: v for k, v in written.items() if k != "dataset_kwargs"} == {k: v for k, v in shipped.items() if k != "dataset_kwargs"}
    with pytest.raises(VisheadsError, match="already exists; pass --overwrite"):
        write_benchmark_task(BENCHMARKS["pope"], files[:1], tmp_path / "tasks")
    write_benchmark_task(BENCHMARKS["pope"], files[:1], tmp_path / "tasks", overwrite=True)
    assert read_task_yaml(tmp_path / "tasks" / "pope_local.yaml")["dataset_kwargs"]["data_files"]["test"] == [str(files[0])]


def test_unknown_benchmark_exits_2_with_a_suggestion(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "visheads"), "data", "benchmark", "pop", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "visheads: error: unknown benchmark 'pop' (did you mean 'pope'?); known: mmbench, pope, seedbench, qbench"
    assert not (tmp_path / "t").exists()


# --- one lmms_eval run over the four local copies; expected values computed here from the logged answers ---


def _pope(samples: list[dict]) -> dict[str, float]:
    """POPE's metrics; as in lmms-eval, an answer other than exactly yes/no is neither a positive nor a negative."""
    pairs = [(s["filtered_resps"].strip().lower(), s["target"]) for s in samples]
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "pope_accuracy": sum(p == t for p, t in pairs) / len(pairs),
        "pope_precision": precision,
        "pope_recall": recall,
        "pope_f1_score": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "pope_yes_ratio": sum(t == "yes" for _, t in pairs) / len(pairs),
    }


def _lowercase_answers(samples: list[dict]) -> list[str]:
    answers = [s["filtered_resps"].strip() for s in samples]
    # The tiny vocabulary is lower-case: no answer can name an option letter, so only option texts can match.
    assert all(a == a.lower() for a in answers)
    return answers


def _mmbench(samples: list[dict], rows: list[dict]) -> float:
    """Static MMBench: right when exactly one option's text is in the answer and it is the answer's."""
    hits = []
    for sample, answer in zip(samples, _lowercase_answers(samples), strict=True):
        row = rows[sample["doc_id"]]
        named = [letter for letter in "ABCD" if row[letter] is not None and row[letter].lower() in answer]
        hits.append(named == [row["answer"]])
    return 100 * sum(hits) / len(hits)


def _seed(samples: list[dict]) -> float:
    """SEED: the answer's first character against the option letter, case-insensitive (lmms-eval's rule)."""
    return sum(s["filtered_resps"].strip()[:1].lower() == s["target"].lower() for s in samples) / len(samples)


def _qbench(samples: list[dict], rows: list[dict]) -> float:
    """Q-Bench: an option's text in an answer of more than five words (the last one named wins), else the seeded guess."""
    right = 0
    for sample, answer in zip(samples, _lowercase_answers(samples), strict=True):
        row = rows[sample["doc_id"]]
        options = [row[f"option{i}"] for i in range(4) if row[f"option{i}"] != "N/A"]
        letters = "ABCD"[: len(options)]
        named = [(answer.rfind(o.lower()), letter) for o, letter in zip(options, letters, strict=True) if o.lower() in answer]
        if named and len(answer.split()) > 5:
            guess = max(named)[1]
        else:
            guess = random.Random(f"qbench:{row['id']}").choice(letters)
        right += guess == row["correct_choice"]
    return round(right / len(samples), 5)


def test_local_copies_run_through_lmms_eval_and_score_as_computed_here(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    data, tasks = tmp_path / "data", tmp_path / "tasks"
    rows = {}
    for name, write in WRITERS.items():
        path = write(data / f"{name}.parquet")
        write_benchmark_task(BENCHMARKS[name], [path], tasks)
        rows[name] = datasets.load_dataset("parquet", data_files=str(path), split="train").remove_columns("image").to_list()
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    names = [BENCHMARKS[name].task for name in WRITERS]
    done = subprocess.run(
        [
            str(BIN / "lmms_eval"),
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained={tiny_models['llava_llama']}",
            "--tasks",
            ",".join(names),
            "--include_path",
            str(tasks),
            "--gen_kwargs",
            "max_new_tokens=8",
            "--output_path",
            str(out),
            "--log_samples",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # MMBench's aggregation also writes submissions/mmbench_en_dev_static_results.json
    (results_file,) = [p for p in out.glob("*/*_results.json") if p.parent.name != "submissions"]
    results = json.loads(results_file.read_text())["results"]

    def samples(task: str) -> list[dict]:
        (path,) = out.glob(f"*/*_samples_{task}.jsonl")
        return sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])

    pope = samples("pope_local")
    assert [s["target"] for s in pope] == [r["answer"] for r in rows["pope"]]
    for metric, value in _pope(pope).items():
        assert results["pope_local"][f"{metric},none"] == pytest.approx(value), metric

    mmbench = samples("mmbench_en_dev_static_local")
    assert len(mmbench) == len(rows["mmbench"])
    assert results["mmbench_en_dev_static_local"]["gpt_eval_score,none"] == pytest.approx(_mmbench(mmbench, rows["mmbench"]))

    seed = samples("seedbench_image_local")
    image_rows = [r for r in rows["seedbench"] if r["data_type"] == "image"]
    assert [s["seed_image"]["question_id"] for s in seed] == [r["question_id"] for r in image_rows], "video questions are left out"
    assert results["seedbench_image_local"]["seed_image,none"] == pytest.approx(_seed(seed))
    assert results["seedbench_image_local"]["seed_all,none"] == pytest.approx(_seed(seed))

    qbench = samples("qbench_dev_local")
    assert [s["target"] for s in qbench] == [r["correct_choice"] for r in rows["qbench"]]
    assert results["qbench_dev_local"]["qbench_acc,none"] == pytest.approx(_qbench(qbench, rows["qbench"]))


def test_shipped_local_task_without_data_says_how_to_point_it_at_files(tiny_models: dict[str, Path]) -> None:
    argv = ["--model", "llava_visheads", "--model_args", f"pretrained={tiny_models['llava_llama']}", "--tasks", "pope_local"]
    with pytest.raises(VisheadsError) as error:
        runner.run(argv)
    assert str(error.value) == (
        f"task 'pope_local' has no data: {tasks_dir() / 'benchmarks' / 'data' / 'pope' / 'test.parquet'} does not exist; "
        "point it at your files with `visheads data benchmark pope FILES --out DIR` and pass --include_path DIR"
    )


def test_a_folder_named_like_the_task_in_the_working_directory_is_refused(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pope_local").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VisheadsError, match="--tasks pope_local is a folder here, which lmms-eval would read instead"):
        runner.run(["--model", "llava_visheads", "--model_args", f"pretrained={tiny_models['llava_llama']}", "--tasks", "pope_local"])
