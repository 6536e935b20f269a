"""Head names, head shapes and the paper's layer thirds."""

from __future__ import annotations

import pytest
from transformers import AutoConfig

from visheads_eval.errors import VisheadsError
from visheads_eval.heads import Head, HeadShape, attention_modules, stage_layers, stage_of


def test_head_names_round_trip() -> None:
    assert str(Head(12, 5)) == "L12H5"
    assert Head.parse("l12h5") == Head(12, 5)
    with pytest.raises(VisheadsError, match="write heads as L<layer>H<head>"):
        Head.parse("12.5")


@pytest.mark.parametrize(
    "n_layers, early, mid, late",
    [(32, (0, 9), (10, 19), (20, 31)), (40, (0, 12), (13, 26), (27, 39)), (24, (0, 7), (8, 15), (16, 23))],
)
def test_stages_split_as_the_paper_does(n_layers: int, early: tuple, mid: tuple, late: tuple) -> None:
    for stage, (first, last) in zip(("early", "mid", "late"), (early, mid, late), strict=False):
        assert stage_layers(stage, n_layers) == range(first, last + 1)
        assert {stage_of(layer, n_layers) for layer in range(first, last + 1)} == {stage}


def test_unknown_stage_is_named() -> None:
    with pytest.raises(VisheadsError, match="did you mean 'early'"):
        stage_layers("eraly", 32)


def test_shape_from_config_and_modules_from_the_model(tiny_models) -> None:
    from transformers import LlavaForConditionalGeneration

    config = AutoConfig.from_pretrained(tiny_models["llava_mistral"])
    shape = HeadShape.from_config(config)
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.head_dim) == (3, 4, 2, 16)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_models["llava_mistral"])
    modules = attention_modules(model)
    assert len(modules) == 3 and all(m.o_proj.in_features == 4 * 16 for m in modules)
    with pytest.raises(VisheadsError, match="out of range"):
        shape.check(Head(3, 0))
