"""The shipped organism: what it is, how well it answers the shipped PointQA test split, how it loads."""

from __future__ import annotations

import json

import datasets
import pytest
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager
from transformers import AutoProcessor, LlavaForConditionalGeneration

from tools.organism.evaluate import SETTINGS, accuracy_by_setting, generate_answers, pointqa_head_maps, setting_name
from visheads_eval.analysis.ranking_table import ranking_table
from visheads_eval.data import synth
from visheads_eval.data.pointqa_task import METRIC
from visheads_eval.heads import Head, HeadShape
from visheads_eval.masking.ablation import HeadMask
from visheads_eval.masking.schema import Selection
from visheads_eval.masking.select import select_heads
from visheads_eval.organism import SHIPPED_DIR, weights_dir
from visheads_eval.resources import tasks_dir

TEST_SPLIT = tasks_dir() / "pointqa" / "data" / "test.parquet"
# What the shipped weights must reach (chance is about 1/7): 85% averaged over the six settings, 70% on each.
MIN_MEAN_ACCURACY = 0.85
MIN_SETTING_ACCURACY = 0.70
RANKING_SEED = 3  # a synthetic split disjoint from training (seed 0 stream [0, 1]), held-out (1) and test (0)


@pytest.fixture(scope="module")
def organism() -> tuple[LlavaForConditionalGeneration, AutoProcessor]:
    model = LlavaForConditionalGeneration.from_pretrained(weights_dir()).eval()
    return model, AutoProcessor.from_pretrained(weights_dir())


@pytest.fixture(scope="module")
def test_docs() -> list[dict]:
    return list(datasets.load_dataset("parquet", data_files=str(TEST_SPLIT), split="train"))


def test_shipped_folder_is_a_small_llava_with_its_training_record() -> None:
    folder = SHIPPED_DIR
    assert (folder / "model.safetensors").stat().st_size < 20_000_000
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llava" and config["text_config"]["num_attention_heads"] == 8
    trained = json.loads((folder / "train_config.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert trained["config"]["seed"] == summary["seed"]
    assert f"--seed {summary['seed']}" in trained["command"]
    assert sum(1 for _ in (folder / "train_log.jsonl").open()) > 10


@pytest.mark.slow
def test_accuracy_on_the_shipped_test_split(organism, test_docs: list[dict]) -> None:
    model, processor = organism
    accuracy = accuracy_by_setting(model, processor, test_docs)
    assert min(accuracy[setting_name(*s)] for s in SETTINGS) >= MIN_SETTING_ACCURACY, accuracy
    assert accuracy["mean"] >= MIN_MEAN_ACCURACY, accuracy


@pytest.mark.slow
def test_loads_by_name_through_lmms_eval_and_answers_alike(organism, test_docs: list[dict]) -> None:
    """lmms-eval's own evaluator, with llava_visheads loading ``visheads-tiny``, gives the answers computed here."""
    limit = 14
    results = simple_evaluate(
        model="llava_visheads",
        model_args="pretrained=visheads-tiny",
        tasks=["pointqa_plain_general", "pointqa_visual_super"],
        task_manager=TaskManager("ERROR", include_path=str(tasks_dir())),
        limit=limit,
        log_samples=True,
        device="cpu",
    )
    model, processor = organism
    for task in ("pointqa_plain_general", "pointqa_visual_super"):
        variant, kind = task.removeprefix("pointqa_").split("_")
        samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
        theirs = [s["filtered_resps"][0] for s in samples]
        ours = generate_answers(model, processor, test_docs[:limit], variant, kind, batch_size=1)
        assert theirs == ours
        assert results["results"][task][f"{METRIC},none"] == pytest.approx(sum(s[METRIC] for s in samples) / limit)


def test_masking_the_designed_heads_breaks_counting(organism, test_docs: list[dict]) -> None:
    """The heads trained to point at and read the objects carry the answer (zeroed here by hand, on o_proj)."""
    model, processor = organism
    trained = json.loads((weights_dir() / "train_config.json").read_text())["config"]
    heads = [Head.parse(name) for name in (trained["pointer_head"], *trained["read_heads"])]
    head_dim = model.config.text_config.hidden_size // model.config.text_config.num_attention_heads
    handles = []
    for head in heads:

        def zero(_module, args, index=head.head):
            hidden = args[0].clone()
            hidden[..., index * head_dim : (index + 1) * head_dim] = 0
            return (hidden, *args[1:])

        handles.append(model.get_decoder().layers[head.layer].self_attn.o_proj.register_forward_pre_hook(zero))
    try:
        masked = accuracy_by_setting(model, processor, test_docs[:70])
    finally:
        for handle in handles:
            handle.remove()
    assert masked["mean"] < 0.5, masked


@pytest.mark.slow
def test_masking_the_top_tenth_by_score_costs_three_times_k_random_heads(organism, test_docs: list[dict]) -> None:
    """The organism has visual heads, found by the project's own pipeline.

    Heads are scored (the paper's score, HeadRecorder at the answer position) on docs of a split of
    their own, ranked, and the top tenth is masked on the shipped test split; masking as many random
    heads (three seeds) must cost at most a third of that.
    """
    model, processor = organism
    ranking_docs = list(synth.generate_docs(RANKING_SEED, "ranking", 70))
    ranking = ranking_table(pointqa_head_maps(model, processor, ranking_docs, name="visheads-tiny"))
    shape = HeadShape.from_config(model.config)
    top = select_heads(Selection("all", "top", "10%", None, None), shape, ranking)
    randoms = [select_heads(Selection("all", "random", "10%", None, seed), shape, None) for seed in (0, 1, 2)]
    assert len(top) == round(shape.n_layers * shape.n_heads / 10) and all(len(r) == len(top) for r in randoms)
    base = accuracy_by_setting(model, processor, test_docs)["mean"]

    def drop(heads: list[Head]) -> float:
        with HeadMask(model, heads):
            return base - accuracy_by_setting(model, processor, test_docs)["mean"]

    top_drop = drop(top)
    random_drop = sum(drop(heads) for heads in randoms) / len(randoms)
    assert top_drop >= 0.2, (top, top_drop)
    assert top_drop >= 3 * max(random_drop, 0.0), (top_drop, random_drop)
