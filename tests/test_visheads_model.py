"""``--model visheads``: every family through one generic loop, in lmms-eval (``lmms_eval``) and lm-eval
(``visheads lm-eval``), prompted as lmms-eval's own adapter for the family prompts it.

Where lmms-eval's adapter runs here (gemma3; llava_hf on the LLaVA family) ``visheads`` gives its answers;
where it cannot (its Qwen adapters need qwen_vl_utils, hence torchvision; its InternVL and OneVision ones
AutoProcessor) the adapter's own generate_until runs up to its processor call, on a stand-in object, and the
prompt text and image-size limits it would use are compared with those of ``visheads``.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.task import ConfigurableMessagesTask
from PIL import Image
from transformers import LlamaConfig

from fixtures.local_task import TASK_NAME
from fixtures.tiny_models import ALL_FAMILIES
from visheads_eval.capture import HeadRecorder
from visheads_eval.cli import main as visheads_main
from visheads_eval.families import FAMILIES
from visheads_eval.geometry import region_token_mask
from visheads_eval.heads import Head
from visheads_eval.instrumentation import Instrumentation
from visheads_eval.lmms import runner
from visheads_eval.lmms.visheads import PROMPTING, Visheads, prompting_of
from visheads_eval.masking.ablation import HeadMask
from visheads_eval.processors import load_processor
from visheads_eval.records import load_records

pytestmark = pytest.mark.slow  # end-to-end evaluations through the hosts

LIMIT = 4
DOC = 1  # the doc recorded by hand: a 50x80 image whose box covers image tokens in every family
LM_TASK = "visheads_count_lm"


def _lmms(model: str, model_args: str, task_dir: Path, out: Path, batch_size: int = 1) -> int:
    return runner.run(
        [
            "--model",
            model,
            "--model_args",
            model_args,
            "--tasks",
            TASK_NAME,
            "--include_path",
            str(task_dir),
            "--output_path",
            str(out),
            "--log_samples",
            "--limit",
            str(LIMIT),
            "--batch_size",
            str(batch_size),
            "--verbosity",
            "WARNING",
        ]
    )


def _samples(out: Path) -> dict[int, dict]:
    (path,) = out.glob("*/*_samples_*.jsonl")
    return {sample["doc_id"]: sample for sample in map(json.loads, path.read_text().splitlines())}


def _result(out: Path, pattern: str = "*/*_results.json") -> dict:
    (path,) = out.glob(pattern)
    return json.loads(path.read_text())


def _doc(task_dir: Path, doc_id: int) -> dict:
    return json.loads((task_dir / "docs.jsonl").read_text().splitlines()[doc_id])


def _as_jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _record_by_hand(
    folder: Path, family: str, image: Image.Image, text: str, bbox: list[float], processor: Any, call: dict
) -> HeadRecorder:
    """L0H1 zeroed, the heads recorded at the first answer token of the model's own generate on one prompt."""
    model = FAMILIES[family].model_class_object().from_pretrained(folder).eval()
    inputs = processor(images=[[image]], text=[text], return_tensors="pt", **call)
    positions = (inputs["input_ids"][0] == model.config.image_token_id).nonzero().squeeze(-1)
    region = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    region[0, positions[torch.from_numpy(region_token_mask(bbox, image.size, processor, model.config))]] = True
    with torch.inference_mode(), HeadMask(model, [Head(0, 1)]), HeadRecorder(model, position="answer", region_mask=region) as recorder:
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert recorder.complete, "the by-hand answer has a decoding step"
    assert int(region.sum()) > 0
    return recorder


def _assert_recorded_like(records: Any, doc_id: int, recorder: HeadRecorder, atol: float) -> None:
    row = int(np.flatnonzero(records.meta["doc_id"].to_numpy() == doc_id)[0])
    for name in ("image_attn", "region_attn", "concentration", "text_attn"):
        np.testing.assert_allclose(records.stat(name)[row], recorder.stats[name][0], atol=atol, err_msg=name)
    assert records.meta["n_region_tokens"][row] == int(recorder.token_counts["n_region_tokens"][0]) > 0


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_records_and_masks_in_batches_as_one_document_alone(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, family: str
) -> None:
    folder = tiny_models[family]
    for batch_size in (2, 1):
        args = f"pretrained={folder},mask=L0H1,record={tmp_path / f'rec{batch_size}'}"
        assert _lmms("visheads", args, count_task, tmp_path / f"out{batch_size}", batch_size) == 0

    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    records = load_records(tmp_path / "rec2", progress=False)
    assert sorted(records.meta["doc_id"]) == list(range(LIMIT)) and set(records.tasks) == {TASK_NAME}
    assert records.run["family"] == model_type and records.run["mask"]["heads"] == ["L0H1"]
    block = _result(tmp_path / "out2")["visheads"]
    assert block["family"] == model_type and block["model_class"] == FAMILIES[model_type].model_class and block["mask"]["heads"] == ["L0H1"]

    one, two = _samples(tmp_path / "out1"), _samples(tmp_path / "out2")
    assert list(one) == list(two) == list(range(LIMIT))
    for doc_id, sample in one.items():
        assert (two[doc_id]["filtered_resps"], two[doc_id]["token_counts"]) == (sample["filtered_resps"], sample["token_counts"]), doc_id

    # The doc again, by hand: the family's prompting, the processor's chat template, the mask, the recorder, generate.
    prompting = prompting_of(FAMILIES[model_type])
    processor = load_processor(str(folder), **prompting.processor_settings)
    doc = _doc(count_task, DOC)
    image = Image.open(doc["image_path"]).convert("RGB")
    if prompting.jpeg_quality is not None:
        image = _as_jpeg(image, prompting.jpeg_quality)
    system = [{"role": "system", "content": [{"type": "text", "text": prompting.system_prompt}]}] if prompting.system_prompt else []
    user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}]
    text = processor.apply_chat_template(system + user, add_generation_prompt=True)
    call = dict(prompting.processor_call)
    if text.startswith(processor.tokenizer.bos_token):
        call["add_special_tokens"] = False
    recorder = _record_by_hand(folder, model_type, image, text, doc["bbox"], processor, call)
    _assert_recorded_like(load_records(tmp_path / "rec1", progress=False), DOC, recorder, atol=1e-5)
    _assert_recorded_like(records, DOC, recorder, atol=1e-4)  # in a left-padded batch of two


@pytest.mark.parametrize(
    "family, model_type, visheads_args",
    [
        ("gemma3", "gemma3", ",dtype=bfloat16"),  # lmms-eval's gemma3 loads in bfloat16 whatever it is told
        ("llava_llama", "llava", ""),
        ("llava_next", "llava_next", ""),
    ],
)
def test_unmasked_answers_are_those_of_lmms_evals_own_adapter(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, family: str, model_type: str, visheads_args: str
) -> None:
    folder, adapter = tiny_models[family], FAMILIES[model_type].lmms_adapter
    assert _lmms(adapter, f"pretrained={folder},device=cpu,device_map=cpu", count_task, tmp_path / "theirs") == 0
    assert _lmms("visheads", f"pretrained={folder}{visheads_args}", count_task, tmp_path / "ours") == 0
    theirs, ours = _samples(tmp_path / "theirs"), _samples(tmp_path / "ours")
    assert list(ours) == list(theirs) == list(range(LIMIT))
    assert [ours[d]["filtered_resps"] for d in ours] == [theirs[d]["filtered_resps"] for d in theirs]
    assert any(answer.strip() for answer in (theirs[d]["filtered_resps"] for d in theirs)), "the comparison has answers to compare"


# ---------------------------------------------------------------------------------------------------------------
# Adapters that cannot run here: their generate_until runs on a stand-in up to the processor call
# ---------------------------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised where the adapter would start computing."""


class _RecordingProcessor:
    """A processor that keeps the chat-template texts and the call arguments an adapter gives it, then stops it."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.texts: list[Any] = []
        self.calls: list[dict] = []

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        text = self.processor.apply_chat_template(*args, **kwargs)
        self.texts.append(text)
        return text

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        raise _Stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)


def _qwen_vl_utils_constants() -> dict[str, int]:
    """qwen_vl_utils' module constants, read from its source (importing it needs torchvision)."""
    spec = importlib.util.find_spec("qwen_vl_utils")
    if spec is None:
        pytest.skip("qwen_vl_utils is not installed")
    source = Path(spec.submodule_search_locations[0], "vision_process.py").read_text()
    return {
        node.targets[0].id: node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)
    }


def _defaults(adapter_class: type) -> dict[str, Any]:
    import inspect

    return {name: p.default for name, p in inspect.signature(adapter_class.__init__).parameters.items() if p.default is not p.empty}


def _stand_in(adapter_class: type, doc: dict, processor: Any, **attributes: Any) -> Any:
    """An adapter object built without its __init__ (which would load the model), holding the task's one doc."""
    adapter = object.__new__(adapter_class)
    adapter.__dict__.update(
        _rank=0,
        _world_size=1,
        batch_size_per_gpu=1,
        task_dict={TASK_NAME: {"test": [doc]}},
        accelerator=types.SimpleNamespace(is_main_process=False),
        cache_hook=None,
        **attributes,
    )
    for name in ("processor", "_image_processor"):
        adapter.__dict__[name] = processor
    adapter.__dict__["_tokenizer"] = processor.tokenizer
    return adapter


def _chat_request(doc: dict) -> Instance:
    """The chat request lmms-eval builds for a doc of the count task (its doc_to_messages: image, then text)."""
    image = Image.open(doc["image_path"]).convert("RGB")

    def read_messages(doc: dict) -> list[dict]:
        return ConfigurableMessagesTask._build_user_turn([image], doc["question"])

    gen_kwargs = {"max_new_tokens": 3, "temperature": 0, "do_sample": False}
    return Instance(
        "generate_until",
        (doc["question"], read_messages, gen_kwargs, 0, TASK_NAME, "test"),
        0,
        metadata={"task": TASK_NAME, "doc_id": 0, "repeats": 1},
    )


def _simple_request(doc: dict) -> Instance:
    def read_visuals(doc: dict) -> list[Image.Image]:
        return [Image.open(doc["image_path"]).convert("RGB")]

    gen_kwargs = {"max_new_tokens": 3, "temperature": 0, "do_sample": False}
    return Instance(
        "generate_until",
        (doc["question"], gen_kwargs, read_visuals, 0, TASK_NAME, "test"),
        0,
        metadata={"task": TASK_NAME, "doc_id": 0, "repeats": 1},
    )


def _visheads(folder: Path, doc: dict, request: Instance) -> tuple[Visheads, str]:
    model = Visheads(pretrained=str(folder), device="cpu")
    model.task_dict = {TASK_NAME: {"test": [doc]}}
    return model, model.prompt_for(request.args).text


def _vision_info_stand_in(seen: list) -> Any:
    def process_vision_info(messages: list, **kwargs: Any) -> tuple:
        seen.append((messages, kwargs))
        images = [
            part["image"]
            for turns in messages
            for message in (turns if isinstance(turns, list) else [turns])
            for part in (message["content"] if isinstance(message["content"], list) else [])
            if part.get("type") == "image"
        ]
        return (images, None, {}) if kwargs.get("return_video_kwargs") else (images, None)

    return process_vision_info


def test_qwen2_5_vl_prompt_and_limits_are_those_of_lmms_evals_chat_adapter(
    tiny_models: dict[str, Path], count_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmms_eval.models.chat import qwen2_5_vl as chat_module
    from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL as SimpleAdapter

    folder, doc = tiny_models["qwen2_5_vl"], _doc(count_task, DOC)
    defaults = _defaults(SimpleAdapter)  # the chat adapter's __init__ is its simple parent's
    processor = _RecordingProcessor(load_processor(str(folder), min_pixels=defaults["min_pixels"], max_pixels=defaults["max_pixels"]))
    seen: list = []
    monkeypatch.setattr(chat_module, "process_vision_info", _vision_info_stand_in(seen))
    adapter = _stand_in(
        chat_module.Qwen2_5_VL,
        doc,
        processor,
        min_pixels=defaults["min_pixels"],
        max_pixels=defaults["max_pixels"],
        fps=None,
        max_num_frames=defaults["max_num_frames"],
        use_cache=True,
        device_map="cpu",
    )
    request = _chat_request(doc)
    with pytest.raises(_Stop):
        chat_module.Qwen2_5_VL.generate_until(adapter, [request])

    ours, text = _visheads(folder, doc, request)
    assert processor.texts == [[text]], "the chat adapter adds no system turn (its simple parent would)"
    assert PROMPTING["qwen2_5_vl"].system_prompt is None and defaults["system_prompt"] == "You are a helpful assistant."
    assert ours.processor.image_processor.size == processor.image_processor.size
    assert dict(ours.prompting.processor_settings) == {"min_pixels": 256 * 28 * 28, "max_pixels": 1605632}
    (call,) = processor.calls
    assert call["padding_side"] == "right" and "do_resize" not in call  # batch 1: the processor resizes within its limits
    ((messages, _),) = seen
    image_part = next(part for part in messages[0][0]["content"] if part["type"] == "image")
    assert "min_pixels" not in image_part and "max_pixels" not in image_part  # qwen_vl_utils pre-rounds with its defaults


def test_qwen3_vl_prompt_and_limits_are_those_of_lmms_evals_chat_adapter(
    tiny_models: dict[str, Path], count_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmms_eval.models.chat import qwen3_vl as chat_module
    from lmms_eval.models.simple.qwen3_vl import Qwen3_VL as SimpleAdapter

    folder, doc = tiny_models["qwen3_vl"], _doc(count_task, DOC)
    defaults = _defaults(SimpleAdapter)
    processor = _RecordingProcessor(load_processor(str(folder), min_pixels=defaults["min_pixels"], max_pixels=defaults["max_pixels"]))
    seen: list = []
    monkeypatch.setattr(chat_module, "process_vision_info", _vision_info_stand_in(seen))
    adapter = _stand_in(
        chat_module.Qwen3_VL,
        doc,
        processor,
        system_prompt=defaults["system_prompt"],
        enable_thinking=None,
        min_pixels=defaults["min_pixels"],
        max_pixels=defaults["max_pixels"],
        total_pixels=None,
        fps=None,
        max_num_frames=defaults["max_num_frames"],
        use_cache=True,
        device_map="cpu",
    )
    request = _chat_request(doc)
    with pytest.raises(_Stop):
        chat_module.Qwen3_VL.generate_until(adapter, [request])

    ours, text = _visheads(folder, doc, request)
    assert processor.texts == [[text]] and PROMPTING["qwen3_vl"].system_prompt == defaults["system_prompt"]
    # The processor gets do_resize=False: the image size is qwen_vl_utils' resize to 32-px cells within its own
    # defaults (the messages carry no min/max_pixels), which is the resize visheads's processor does.
    (call,) = processor.calls
    assert call["do_resize"] is False
    ((messages, kwargs),) = seen
    assert kwargs["image_patch_size"] == 16
    image_part = next(part for part in messages[0][1]["content"] if part["type"] == "image")
    assert "min_pixels" not in image_part and "max_pixels" not in image_part
    constants = _qwen_vl_utils_constants()
    cell = kwargs["image_patch_size"] * constants["SPATIAL_MERGE_SIZE"]
    size = ours.processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (
        constants["IMAGE_MIN_TOKEN_NUM"] * cell**2,
        constants["IMAGE_MAX_TOKEN_NUM"] * cell**2,
    )
    assert ours.processor.image_processor.patch_size * ours.processor.image_processor.merge_size == cell


def test_qwen2_vl_prompt_and_limits_are_those_of_lmms_evals_simple_adapter(
    tiny_models: dict[str, Path], count_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmms_eval.models.simple import qwen2_vl as simple_module

    folder, doc = tiny_models["qwen2_vl"], _doc(count_task, DOC)
    defaults = _defaults(simple_module.Qwen2_VL)
    processor = _RecordingProcessor(load_processor(str(folder), min_pixels=defaults["min_pixels"], max_pixels=defaults["max_pixels"]))
    seen: list = []
    monkeypatch.setattr(simple_module, "process_vision_info", _vision_info_stand_in(seen))
    adapter = _stand_in(
        simple_module.Qwen2_VL,
        doc,
        processor,
        system_prompt=defaults["system_prompt"],
        reasoning_prompt=None,
        interleave_visuals=False,
        min_pixels=defaults["min_pixels"],
        max_pixels=defaults["max_pixels"],
        max_num_frames=defaults["max_num_frames"],
        use_cache=True,
        device_map="cpu",
    )
    with pytest.raises(_Stop):
        simple_module.Qwen2_VL.generate_until(adapter, [_simple_request(doc)])

    ours, text = _visheads(folder, doc, _chat_request(doc))
    assert processor.texts == [text] and PROMPTING["qwen2_vl"].system_prompt == defaults["system_prompt"]
    ((messages, _),) = seen
    (image_part,) = [part for part in messages[0][1]["content"] if part["type"] == "image"]
    assert image_part["image"].startswith("data:image/jpeg;base64,") and PROMPTING["qwen2_vl"].jpeg_quality == 85
    # qwen_vl_utils resizes within the same limits the processor then applies again: the processor's limits hold.
    assert (image_part["min_pixels"], image_part["max_pixels"]) == (defaults["min_pixels"], defaults["max_pixels"])
    assert dict(ours.prompting.processor_settings) == {"min_pixels": defaults["min_pixels"], "max_pixels": defaults["max_pixels"]}
    assert ours.processor.image_processor.size == processor.image_processor.size


def test_internvl_prompt_and_limits_are_those_of_lmms_evals_chat_adapter(tiny_models: dict[str, Path], count_task: Path) -> None:
    from lmms_eval.models.chat.internvl_hf import InternVLHf

    folder, doc = tiny_models["internvl"], _doc(count_task, DOC)
    defaults = _defaults(InternVLHf)
    processor = _RecordingProcessor(load_processor(str(folder)))
    adapter = _stand_in(
        InternVLHf,
        doc,
        processor,
        min_patches=defaults["min_patches"],
        max_patches=defaults["max_patches"],
        num_frames=defaults["num_frames"],
        fps=None,
        use_cache=True,
    )
    request = _chat_request(doc)
    with pytest.raises(_Stop):
        InternVLHf.generate_until(adapter, [request])

    ours, text = _visheads(folder, doc, request)
    assert processor.texts == [text]
    (call,) = processor.calls
    image_processor = ours.processor.image_processor
    assert (image_processor.min_patches, image_processor.max_patches) == (call["min_patches"], call["max_patches"]) == (1, 12)


def test_onevision_prompt_and_processor_are_those_of_lmms_evals_llava_hf(tiny_models: dict[str, Path], count_task: Path) -> None:
    from lmms_eval.models.chat.llava_hf import LlavaHf

    folder, doc = tiny_models["llava_onevision"], _doc(count_task, DOC)
    processor = _RecordingProcessor(load_processor(str(folder)))  # llava_hf: AutoProcessor.from_pretrained(pretrained) as saved
    adapter = _stand_in(LlavaHf, doc, processor, use_cache=True, _device=torch.device("cpu"))
    request = _chat_request(doc)
    with pytest.raises(_Stop):
        LlavaHf.generate_until(adapter, [request])

    ours, text = _visheads(folder, doc, request)
    assert processor.texts == [text] and PROMPTING["llava_hf"].system_prompt is None
    (call,) = processor.calls
    assert set(call) == {"images", "videos", "text", "return_tensors"}, "llava_hf sets no image-size limits"
    assert ours.processor.image_processor.to_dict() == processor.image_processor.to_dict()


def test_system_prompt_and_limits_can_be_overridden_and_wrong_ones_are_refused(tiny_models: dict[str, Path], count_task: Path) -> None:
    doc = _doc(count_task, DOC)
    model = Visheads(pretrained=str(tiny_models["qwen2_5_vl"]), device="cpu", system_prompt="you helpful model", max_pixels=36 * 28 * 28)
    model.task_dict = {TASK_NAME: {"test": [doc]}}
    assert "you helpful model" in model.prompt_for(_chat_request(doc).args).text
    assert model.processor.image_processor.size.longest_edge == 36 * 28 * 28
    with pytest.raises(Exception, match="max_patches does not apply to Qwen2.5-VL models"):
        Visheads(pretrained=str(tiny_models["qwen2_5_vl"]), device="cpu", max_patches=4)


# ---------------------------------------------------------------------------------------------------------------
# lm-eval
# ---------------------------------------------------------------------------------------------------------------

LM_TASK_YAML = f"""\
task: {LM_TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {{data}}
test_split: test
output_type: generate_until
doc_to_image: !function utils.doc_to_image
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  until: []
  max_gen_toks: 3
  temperature: 0.0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"""

LM_UTILS = """\
from PIL import Image


def doc_to_image(doc):
    return [Image.open(doc["image_path"]).convert("RGB")]


def doc_to_text(doc):
    return "<image>" + doc["question"]


def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == doc["answer"])}
"""


@pytest.fixture(scope="module")
def lm_count_task(count_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The count task's docs as an lm-eval task, ``visheads_count_lm``."""
    folder = tmp_path_factory.mktemp("lm_task")
    (folder / f"{LM_TASK}.yaml").write_text(LM_TASK_YAML.format(data=count_task / "docs.jsonl"))
    (folder / "utils.py").write_text(LM_UTILS)
    return folder


def _visheads_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        visheads_main([str(a) for a in argv])
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_lm_eval_visheads_records_every_doc_as_by_hand(
    tiny_models: dict[str, Path], count_task: Path, lm_count_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], family: str
) -> None:
    folder = tiny_models[family]
    code, err = _visheads_cli(
        capsys,
        "lm-eval",
        "--model",
        "visheads",
        "--model_args",
        f"pretrained={folder},mask=L0H1,record={tmp_path / 'rec'}",
        "--tasks",
        LM_TASK,
        "--include_path",
        lm_count_task,
        "--apply_chat_template",
        "--limit",
        LIMIT,
        "--batch_size",
        2,
        "--output_path",
        tmp_path / "out",
        "--log_samples",
    )
    assert code == 0, err
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    block = _result(tmp_path / "out", "*/results_*.json")["config"]["visheads"]
    assert block["family"] == model_type and block["model_class"] == FAMILIES[model_type].model_class and block["mask"]["heads"] == ["L0H1"]
    records = load_records(tmp_path / "rec", progress=False)
    assert sorted(records.meta["doc_id"]) == list(range(LIMIT)) and records.run["family"] == model_type

    # The doc by hand, prompted as hf-multimodal prompts it: its chat template turn, the processor as saved.
    processor = load_processor(str(folder))
    doc = _doc(count_task, DOC)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}], add_generation_prompt=True
    )
    image = Image.open(doc["image_path"]).convert("RGB")
    recorder = _record_by_hand(folder, model_type, image, text, doc["bbox"], processor, {})
    _assert_recorded_like(records, DOC, recorder, atol=1e-4)  # in a left-padded batch of two


# ---------------------------------------------------------------------------------------------------------------
# Bad input and failures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def text_only_checkpoint(tmp_path: Path) -> Path:
    folder = tmp_path / "llama"
    LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "case, message",
    [
        ("not_a_family", "a 'llama' model is not a supported vision-language family; supported: llava, "),
        ("unknown_key", "unknown model_args key 'maks' for visheads (did you mean 'mask'?)"),
        ("missing_path", "does not exist; give a model folder or a hub id"),
    ],
)
def test_bad_input_fails_with_one_line(
    tiny_models: dict[str, Path],
    count_task: Path,
    text_only_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    model_args = {
        "not_a_family": f"pretrained={text_only_checkpoint}",
        "unknown_key": f"pretrained={tiny_models['qwen3_vl']},maks=L0H1",
        "missing_path": f"pretrained={tmp_path / 'nowhere'}",
    }[case]
    with pytest.raises(SystemExit) as stop:
        runner.main(
            [
                "--model",
                "visheads",
                "--model_args",
                model_args,
                "--tasks",
                TASK_NAME,
                "--include_path",
                str(count_task),
                "--limit",
                "1",
                "--output_path",
                str(tmp_path / "out"),
                "--verbosity",
                "ERROR",
            ]
        )
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and message in lines[0], lines


def test_lm_eval_refuses_a_checkpoint_of_no_family_in_one_line(
    text_only_checkpoint: Path, lm_count_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _visheads_cli(
        capsys,
        "lm-eval",
        "--model",
        "visheads",
        "--model_args",
        f"pretrained={text_only_checkpoint}",
        "--tasks",
        LM_TASK,
        "--include_path",
        lm_count_task,
        "--limit",
        1,
        "--output_path",
        tmp_path / "out",
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("visheads: error:")]
    assert len(lines) == 1 and "a 'llama' model is not a supported vision-language family" in lines[0], err


def test_a_failed_generate_fails_the_run_naming_its_documents(
    tiny_models: dict[str, Path], count_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(self: Instrumentation, generate: Any, contexts: list, args: tuple, kwargs: dict) -> Any:
        raise RuntimeError("out of memory (injected)")

    monkeypatch.setattr(Instrumentation, "generate", failing)
    assert _lmms("visheads", f"pretrained={tiny_models['qwen3_vl']}", count_task, tmp_path / "out", batch_size=2) == 1
    assert (
        f"evaluation failed: GenerationFailed: generation failed on the batch of task '{TASK_NAME}' (test) doc 0, "
        f"task '{TASK_NAME}' (test) doc 1: RuntimeError: out of memory (injected)"
    ) in capsys.readouterr().err
