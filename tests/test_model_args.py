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


def test_model_that_is_not_llava_family(tmp_path: Path) -> None:
    LlamaConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(VisheadsError, match="is a 'llama' model; llava_visheads supports the LLaVA family"):
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
