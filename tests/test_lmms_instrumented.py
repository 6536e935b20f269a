"""``llava_visheads`` with record=, mask= and head_means= through the ``lmms_eval`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from fixtures.local_task import TASK_NAME
from visheads_eval.capture import HeadRecorder
from visheads_eval.geometry import region_token_mask
from visheads_eval.heads import Head, HeadShape, stage_layers
from visheads_eval.lmms import runner
from visheads_eval.masking.means import load_means
from visheads_eval.ranking import write_ranking
from visheads_eval.records import load_records

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts


def _evaluate(pretrained: Path, task_dir: Path, out: Path, **own: str) -> int:
    model_args = ",".join([f"pretrained={pretrained}", *(f"{k}={v}" for k, v in own.items())])
    return runner.run(
        [
            "--model",
            "llava_visheads",
            "--model_args",
            model_args,
            "--tasks",
            TASK_NAME,
            "--include_path",
            str(task_dir),
            "--output_path",
            str(out),
            "--log_samples",
        ]
    )


def _results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/*_results.json"))]


@pytest.mark.parametrize("position", ["answer", "last_prompt"])
def test_recorded_run_writes_records_that_match_a_direct_recording(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, position: str
) -> None:
    pretrained = tiny_models["llava_next"]
    assert _evaluate(pretrained, count_task, tmp_path / "out", record=str(tmp_path / "rec"), position=position) == 0
    records = load_records(tmp_path / "rec")
    assert sorted(records.meta["doc_id"]) == list(range(6)) and set(records.tasks) == {TASK_NAME}
    assert records.run["position"] == position
    (result,) = _results(tmp_path / "out")
    assert result["visheads"]["record"] == {"dir": str(tmp_path / "rec"), "position": position, "logit_lens": False}
    assert not records.has_lens

    # doc 3 again, by hand: the processor, the geometry, the recorder and generate
    doc = json.loads((count_task / "docs.jsonl").read_text().splitlines()[3])
    model = AutoModelForImageTextToText.from_pretrained(pretrained).eval()
    processor = AutoProcessor.from_pretrained(pretrained)
    image = Image.open(doc["image_path"]).convert("RGB")
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}], add_generation_prompt=True
    )
    inputs = processor(images=[image], text=text, return_tensors="pt")
    image_positions = (inputs["input_ids"][0] == model.config.image_token_id).nonzero().squeeze(-1)
    region = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    region[0, image_positions[torch.from_numpy(region_token_mask(doc["bbox"], image.size, processor, model.config))]] = True
    with torch.inference_mode(), HeadRecorder(model, position=position, region_mask=region) as recorder:
        model.generate(**inputs, max_new_tokens=3, do_sample=False, pad_token_id=processor.tokenizer.eos_token_id)
    row = int(np.flatnonzero(records.meta["doc_id"].to_numpy() == 3)[0])
    for name in ("image_attn", "region_attn", "concentration", "text_attn"):
        np.testing.assert_allclose(records.stat(name)[row], recorder.stats[name][0], atol=1e-6, err_msg=name)
    assert records.meta["n_region_tokens"][row] == int(region.sum()) > 0
    assert list(records.meta["bbox"][row]) == doc["bbox"]


def test_logit_lens_recorded_in_batches_matches_hidden_states_of_each_doc(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path
) -> None:
    pretrained = tiny_models["llava_mistral"]
    model_args = f"pretrained={pretrained},record={tmp_path / 'rec'},logit_lens=true"
    assert (
        runner.run(
            [
                "--model",
                "llava_visheads",
                "--model_args",
                model_args,
                "--tasks",
                TASK_NAME,
                "--batch_size",
                "4",
                "--include_path",
                str(count_task),
                "--output_path",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    records = load_records(tmp_path / "rec")
    assert records.has_lens and records.run["logit_lens"] is True and len(records) == 6
    (result,) = _results(tmp_path / "out")
    assert result["visheads"]["record"]["logit_lens"] is True

    model = AutoModelForImageTextToText.from_pretrained(pretrained).eval()
    processor = AutoProcessor.from_pretrained(pretrained)
    n_layers = model.config.text_config.num_hidden_layers
    for doc_id in (0, 5):  # each alone here; in the run, each in a left-padded batch of four
        doc = json.loads((count_task / "docs.jsonl").read_text().splitlines()[doc_id])
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}], add_generation_prompt=True
        )
        inputs = processor(images=[Image.open(doc["image_path"]).convert("RGB")], text=text, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=3,
                min_new_tokens=3,
                do_sample=False,
                output_hidden_states=True,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=processor.tokenizer.eos_token_id,
            )
            hidden = out.hidden_states[1]  # position=answer: the first decoding step
            readings = [model.lm_head(model.model.language_model.norm(state[0, -1])) for state in hidden[:n_layers]]
            logps = torch.log_softmax(torch.stack([*readings, out.logits[1][0]]).double(), -1)  # (n_layers + 1, vocab)
        answer = int(logps[-1].argmax())
        row = int(np.flatnonzero(records.meta["doc_id"].to_numpy() == doc_id)[0])
        assert records.meta["lens_answer_token"][row] == answer
        np.testing.assert_allclose(records.lens("answer_logprob")[row], logps[:, answer].numpy(), atol=1e-4)
        np.testing.assert_array_equal(records.lens("top1")[row], logps.argmax(-1).numpy())
        kl = (logps[-1].exp() * (logps[-1] - logps)).sum(-1).numpy()
        np.testing.assert_allclose(records.lens("kl_to_final")[row], kl, atol=1e-4)


def test_a_crashed_or_repeated_run_resumes_without_duplicates(tiny_models: dict[str, Path], count_task: Path, tmp_path: Path) -> None:
    pretrained = tiny_models["llava_llama"]
    assert _evaluate(pretrained, count_task, tmp_path / "a", record=str(tmp_path / "rec")) == 0
    first = load_records(tmp_path / "rec")
    assert _evaluate(pretrained, count_task, tmp_path / "b", record=str(tmp_path / "rec")) == 0
    again = load_records(tmp_path / "rec")
    assert len(again) == len(first) == 6 and len(again.duplicates) == 0
    np.testing.assert_array_equal(again.stat("image_attn"), first.stat("image_attn"))


def test_record_folder_of_another_run_is_refused_before_loading(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, capsys
) -> None:
    assert _evaluate(tiny_models["llava_llama"], count_task, tmp_path / "a", record=str(tmp_path / "rec")) == 0
    with pytest.raises(SystemExit) as stop:
        runner.main(
            [
                "--model",
                "llava_visheads",
                "--model_args",
                f"pretrained={tiny_models['llava_llama']},record={tmp_path / 'rec'},position=last_prompt",
                "--tasks",
                TASK_NAME,
                "--include_path",
                str(count_task),
            ]
        )
    assert stop.value.code == 2
    assert "holds the records of a different run" in capsys.readouterr().err


def _ranking(shape: HeadShape, model: str, path: Path) -> pd.DataFrame:
    rows = [
        dict(
            model=model,
            layer=layer,
            head=head,
            name=str(Head(layer, head)),
            stage="",
            score=float((layer * 5 + head * 3) % 11),
            image_attn=0.0,
            region_attn=0.0,
            concentration=0.0,
            n_samples=1,
        )
        for layer in range(shape.n_layers)
        for head in range(shape.n_heads)
    ]
    table = pd.DataFrame(rows)
    table["rank"] = table["score"].rank(ascending=False, method="first").astype(int)
    write_ranking(table, path)
    return table


def test_masked_run_records_the_heads_it_removed(deep_model: Path, count_task: Path, tmp_path: Path) -> None:
    shape = HeadShape(n_layers=6, n_heads=8, n_kv_heads=8, head_dim=16)
    table = _ranking(shape, str(deep_model), tmp_path / "ranking.csv")
    early = set(stage_layers("early", 6))
    expected = table[table["layer"].isin(early)].sort_values("rank").head(10)
    expected_heads = sorted(str(Head(int(r.layer), int(r.head))) for r in expected.itertuples())

    assert _evaluate(deep_model, count_task, tmp_path / "none") == 0
    assert _evaluate(deep_model, count_task, tmp_path / "masked", mask="early_top10", ranking=str(tmp_path / "ranking.csv")) == 0
    (result,) = _results(tmp_path / "masked")
    mask = result["visheads"]["mask"]
    assert mask["name"] == "early_top10" and mask["mode"] == "zero"
    assert sorted(mask["heads"]) == expected_heads
    assert result["config"]["model_args"].endswith("mask=early_top10,ranking=" + str(tmp_path / "ranking.csv"))

    assert _evaluate(deep_model, count_task, tmp_path / "r1", mask="early_random10", mask_seed="1") == 0
    assert _evaluate(deep_model, count_task, tmp_path / "r2", mask="early_random10", mask_seed="2") == 0
    one, two = (_results(tmp_path / name)[0]["visheads"]["mask"] for name in ("r1", "r2"))
    assert (one["seed"], two["seed"]) == (1, 2) and one["heads"] != two["heads"]
    assert all(Head.parse(h).layer in early for h in one["heads"] + two["heads"])


def test_head_means_then_a_mean_mask(deep_model: Path, count_task: Path, tmp_path: Path) -> None:
    means_file = tmp_path / "specs" / "means.npz"
    assert _evaluate(deep_model, count_task, tmp_path / "m", head_means=str(means_file)) == 0
    means = load_means(means_file, HeadShape(6, 8, 8, 16))
    assert len(means) == 48
    (tmp_path / "specs" / "l1_mean.yaml").write_text(
        "description: two heads of layer 1 at their mean\nheads: [L1H0, L1H5]\nmode: mean\nmeans: means.npz\n"
    )
    assert _evaluate(deep_model, count_task, tmp_path / "masked", mask="l1_mean", mask_dir=str(tmp_path / "specs")) == 0
    mask = _results(tmp_path / "masked")[0]["visheads"]["mask"]
    assert mask["mode"] == "mean" and mask["heads"] == ["L1H0", "L1H5"] and mask["means"] == str(means_file)


@pytest.mark.parametrize(
    "own, message",
    [
        ({"mask": "early_top2O"}, "did you mean 'early_top20'"),
        ({"mask": "early_top10", "mask_seed": "3"}, "mask_seed applies to random and others specs"),
        ({"mask_mode": "uniform"}, "mask_mode and mask_seed modify a mask: give mask= as well"),
        ({"mask": "early_random10", "mask_seed": "one"}, "mask_seed=one is not a whole number"),
        ({"mask": "early_top10", "mask_mode": "half"}, "mask_mode=half is not one of zero, mean, uniform"),
        ({"position": "first"}, "position=first is not one of last_prompt, answer"),
        ({"mask": "L9H0"}, "head L9H0 is out of range"),
        ({"logit_lens": "true"}, "logit_lens=true is recorded with the heads: give record=<dir> as well"),
        ({"logit_lens": "maybe", "record": "rec"}, "logit_lens=maybe is not true or false"),
    ],
)
def test_bad_instrumentation_args_fail_before_loading(deep_model: Path, count_task: Path, own: dict, message: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        runner.main(
            [
                "--model",
                "llava_visheads",
                "--model_args",
                ",".join([f"pretrained={deep_model}", *(f"{k}={v}" for k, v in own.items())]),
                "--tasks",
                TASK_NAME,
                "--include_path",
                str(count_task),
            ]
        )
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def _one_token_task(count_task: Path, tmp_path: Path) -> Path:
    """A copy of the count task, ``visheads_one_token``, whose generation stops after one new token."""
    task_dir = tmp_path / "one_token_task"
    task_dir.mkdir()
    (task_dir / "utils.py").write_text((count_task / "utils.py").read_text())
    yaml = (count_task / f"{TASK_NAME}.yaml").read_text()
    (task_dir / "one_token.yaml").write_text(
        yaml.replace(f"task: {TASK_NAME}", "task: visheads_one_token").replace("max_new_tokens: 3", "max_new_tokens: 1")
    )
    return task_dir


def test_answer_position_when_generation_stops_after_one_token(tiny_models: dict[str, Path], count_task: Path, tmp_path: Path) -> None:
    """With one new token there is no decoding step; the record comes from prompt + that token."""
    task_dir = _one_token_task(count_task, tmp_path)
    pretrained = tiny_models["llava_llama"]
    code = runner.run(
        [
            "--model",
            "llava_visheads",
            "--model_args",
            f"pretrained={pretrained},record={tmp_path / 'rec'}",
            "--tasks",
            "visheads_one_token",
            "--include_path",
            str(task_dir),
            "--output_path",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    records = load_records(tmp_path / "rec")
    assert len(records) == 6

    doc = json.loads((count_task / "docs.jsonl").read_text().splitlines()[0])
    model = AutoModelForImageTextToText.from_pretrained(pretrained, attn_implementation="eager").eval()
    processor = AutoProcessor.from_pretrained(pretrained)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}], add_generation_prompt=True
    )
    inputs = processor(images=[Image.open(doc["image_path"]).convert("RGB")], text=text, return_tensors="pt")
    with torch.inference_mode():
        first = model.generate(**inputs, max_new_tokens=1, do_sample=False)
        attentions = model(input_ids=first, pixel_values=inputs["pixel_values"], output_attentions=True).attentions
    image = (first[0] == model.config.image_token_id).numpy()
    expected = np.stack([a[0, :, -1, :].numpy() for a in attentions])[:, :, image].sum(-1)  # (layer, head)
    row = int(np.flatnonzero(records.meta["doc_id"].to_numpy() == 0)[0])
    assert records.meta["n_keys"][row] == first.shape[1]
    np.testing.assert_allclose(records.stat("image_attn")[row], expected, atol=1e-5)


def test_head_means_count_each_position_once_when_recording_one_token_answers(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path
) -> None:
    """The recorder's fallback forward (prompt + the one answer token) must not add the prompt to the means again."""
    task_dir = _one_token_task(count_task, tmp_path)
    pretrained = tiny_models["llava_llama"]
    infos, means = [], []
    for own in (f"head_means={tmp_path / 'plain.npz'}", f"head_means={tmp_path / 'recorded.npz'},record={tmp_path / 'rec'}"):
        assert (
            runner.run(
                [
                    "--model",
                    "llava_visheads",
                    "--model_args",
                    f"pretrained={pretrained},{own}",
                    "--tasks",
                    "visheads_one_token",
                    "--include_path",
                    str(task_dir),
                    "--output_path",
                    str(tmp_path / "out"),
                ]
            )
            == 0
        )
    for name in ("plain", "recorded"):
        with np.load(tmp_path / f"{name}.npz") as data:
            infos.append(json.loads(str(data["__info__"])))
            means.append({key: data[key] for key in data.files if key != "__info__"})
    assert len(load_records(tmp_path / "rec")) == 6, "the recorded run did take the fallback forward"
    assert infos[1]["positions"] == infos[0]["positions"] > 0
    for head, mean in means[0].items():
        np.testing.assert_allclose(means[1][head], mean, atol=1e-6, err_msg=head)
