"""``llava_visheads`` answers exactly as lmms-eval's ``llava_hf`` does when nothing is recorded or masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.models.simple import llava_hf as llava_hf_module
from lmms_eval.tasks import TaskManager
from PIL import Image
from transformers import AutoProcessor, VipLlavaForConditionalGeneration

from fixtures.local_task import TASK_NAME
from visheads_eval.lmms.model import LlavaVisheadsChat

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts


def _answers(model: str, model_args: str, task_dir: Path, force_simple: bool) -> dict[int, str]:
    results = simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=[TASK_NAME],
        task_manager=TaskManager("ERROR", include_path=str(task_dir)),
        log_samples=True,
        force_simple=force_simple,
        device="cpu",
    )
    samples = results["samples"][TASK_NAME]
    assert len(samples) == 6
    return {s["doc_id"]: s["filtered_resps"][0] for s in samples}


@pytest.mark.parametrize("family", ["llava_llama", "llava_next"])
@pytest.mark.parametrize("force_simple", [False, True], ids=["chat", "simple"])
def test_answers_match_llava_hf(tiny_models: dict[str, Path], count_task: Path, family: str, force_simple: bool) -> None:
    pretrained = tiny_models[family]
    # llava_hf's own default device_map="" is rejected by transformers 5, so it is given explicitly here.
    reference = _answers("llava_hf", f"pretrained={pretrained},device_map=cpu", count_task, force_simple)
    ours = _answers("llava_visheads", f"pretrained={pretrained}", count_task, force_simple)
    assert ours == reference
    assert any(answer.strip() for answer in ours.values()), "the tiny model should say something"


def test_vipllava_loads_and_answers_like_plain_transformers(tiny_models: dict[str, Path], count_task: Path) -> None:
    pretrained = tiny_models["vipllava"]
    ours = _answers("llava_visheads", f"pretrained={pretrained}", count_task, force_simple=False)
    assert "vipllava" not in llava_hf_module.model_map, "llava_hf's model map must be left as it was"

    model = VipLlavaForConditionalGeneration.from_pretrained(pretrained).eval()
    processor = AutoProcessor.from_pretrained(pretrained)
    for line in (count_task / "docs.jsonl").read_text().splitlines():
        doc = json.loads(line)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=[Image.open(doc["image_path"]).convert("RGB")], text=text, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False, pad_token_id=processor.tokenizer.eos_token_id)
        expected = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert ours[doc["question_id"]] == expected


def test_adapter_checks_its_arguments_before_loading(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="did you mean 'use_cache'"):
        LlavaVisheadsChat(pretrained=str(tiny_models["llava_llama"]), use_cach=True)
