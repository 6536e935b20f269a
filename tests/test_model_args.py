"""Bad model_args fail with one clear message before any weights load."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import LlamaConfig

from visheads_eval.errors import VisheadsError
from visheads_eval.lmms.model_args import check_model_args


def test_unknown_key_suggests_the_close_one(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(VisheadsError, match=r"unknown model_args key 'pretrianed'.*did you mean 'pretrained'"):
        check_model_args({"pretrained": str(tiny_models["llava_llama"]), "pretrianed": "x"})


def test_missing_pretrained_path(tmp_path: Path) -> None:
    with pytest.raises(VisheadsError, match="does not exist"):
        check_model_args({"pretrained": str(tmp_path / "no_such_model")})


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(VisheadsError, match="no config.json"):
        check_model_args({"pretrained": str(tmp_path)})


def test_model_that_is_not_a_vision_language_family(tmp_path: Path) -> None:
    LlamaConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(VisheadsError, match="a 'llama' model is not a supported vision-language family; supported: llava, "):
        check_model_args({"pretrained": str(tmp_path)})


def test_llava_visheads_points_other_families_to_visheads(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(
        VisheadsError,
        match=r"is a 'qwen2_5_vl' model \(Qwen2.5-VL\); llava_visheads takes llava, llava_next, "
        r"vipllava, llava_onevision: run it with --model visheads",
    ):
        check_model_args({"pretrained": str(tiny_models["qwen2_5_vl"])})


@pytest.mark.parametrize("model_type", ["mllama", "paligemma"])
def test_families_refused_say_why(tmp_path: Path, model_type: str) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    CONFIG_MAPPING[model_type]().save_pretrained(tmp_path)
    reason = {"mllama": "cross-attention layers", "paligemma": "soft-caps attention logits"}[model_type]
    with pytest.raises(VisheadsError, match=f"'{model_type}' is not supported: .*{reason}"):
        check_model_args({"pretrained": str(tmp_path)})


def test_unreachable_hub_id_fails_on_its_config() -> None:
    with pytest.raises(VisheadsError, match="cannot load the config of pretrained='llava-hf/llava-1.5-7b-hf'"):
        check_model_args({})


def test_batch_sizes_are_whole_numbers(tiny_models: dict[str, Path]) -> None:
    pretrained = str(tiny_models["llava_llama"])
    assert check_model_args({"pretrained": pretrained, "batch_size": 8}).parent["batch_size"] == 8
    for bad in ("auto", "0", "1.5"):
        with pytest.raises(VisheadsError, match=f"batch_size={bad} is not a whole number of documents"):
            check_model_args({"pretrained": pretrained, "batch_size": bad})


def test_good_args_are_split_and_device_filled_in(tiny_models: dict[str, Path]) -> None:
    checked = check_model_args({"pretrained": str(tiny_models["vipllava"]), "dtype": "float32"})
    assert checked.config.model_type == "vipllava"
    assert checked.parent == {"dtype": "float32", "device": "cpu", "device_map": "cpu"}
    assert checked.name == checked.pretrained == str(tiny_models["vipllava"].resolve())


def test_the_shipped_organism_loads_by_name_and_keeps_its_name() -> None:
    from visheads_eval.organism import weights_dir

    checked = check_model_args({"pretrained": "visheads-tiny"})
    assert checked.name == "visheads-tiny"
    assert Path(checked.pretrained) == weights_dir()
    assert checked.config.model_type == "llava"
