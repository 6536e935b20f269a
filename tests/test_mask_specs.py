"""Mask specs: validation, resolution to heads (top / random / others, k, seed), the shipped grid, `visheads masks`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from transformers import LlamaConfig, LlavaConfig

from visheads_eval.cli import main as visheads_main
from visheads_eval.errors import VisheadsError
from visheads_eval.heads import Head, HeadShape, stage_of
from visheads_eval.masking.specs import resolve_mask
from visheads_eval.ranking import default_ranking_path, write_ranking
from visheads_eval.resources import head_masks_dir

S32 = HeadShape(n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128)
S40 = HeadShape(n_layers=40, n_heads=40, n_kv_heads=8, head_dim=128)
# The paper's thirds, written out: 32 layers -> 0-9 / 10-19 / 20-31, 40 layers -> 0-12 / 13-26 / 27-39.
STAGE_LAYERS = {
    32: {"early": range(0, 10), "mid": range(10, 20), "late": range(20, 32), "all": range(32)},
    40: {"early": range(0, 13), "mid": range(13, 27), "late": range(27, 40), "all": range(40)},
}
# Hand-placed best heads (rank 1, 2, ...); every other head follows, from the last layer's last head backwards.
BEST = {
    32: ["L25H3", "L3H7", "L12H0", "L9H31", "L0H0", "L10H1", "L31H31"],
    40: ["L12H39", "L13H0", "L27H5", "L26H39", "L0H1"],
}
GRID = [f"{stage}_{order}{k}" for stage in ("early", "mid", "late") for order in ("top", "random") for k in (10, 20, 30, 50)]
GRID += [f"early_others{k}" for k in (20, 50, 80, 100)] + ["none"]


def names(heads) -> set[str]:
    return {str(head) for head in heads}


def hand_ranking(shape: HeadShape, path: Path) -> Path:
    best = [Head.parse(name) for name in BEST[shape.n_layers]]
    rest = [Head(layer, head) for layer in reversed(range(shape.n_layers)) for head in reversed(range(shape.n_heads))]
    order = best + [head for head in rest if head not in best]
    rows = [
        dict(
            model="m",
            layer=h.layer,
            head=h.head,
            name=str(h),
            stage=stage_of(h.layer, shape.n_layers),
            score=float(len(order) - i),
            rank=i + 1,
            image_attn=0.5,
            region_attn=0.1,
            concentration=0.3,
            n_samples=8,
        )
        for i, h in enumerate(order)
    ]
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # rows out of rank order on disk
    write_ranking(table, path)
    return path


@pytest.fixture()
def rankings(tmp_path: Path) -> dict[int, Path]:
    return {n: hand_ranking(shape, tmp_path / f"rank{n}.csv") for n, shape in ((32, S32), (40, S40))}


def write_spec(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def numpy_draw(candidates: list[str], k: int, seed: int) -> set[str]:
    return {candidates[i] for i in np.random.default_rng(seed).permutation(len(candidates))[:k]}


def layer_major(layers: range, n_heads: int) -> list[str]:
    return [f"L{layer}H{head}" for layer in layers for head in range(n_heads)]


# --- top ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, stage, k, expected",
    [
        (32, "early", 3, {"L3H7", "L9H31", "L0H0"}),
        (32, "early", 20, {"L3H7", "L9H31", "L0H0"} | {f"L9H{h}" for h in range(14, 31)}),
        (32, "mid", 2, {"L12H0", "L10H1"}),
        (32, "mid", 10, {"L12H0", "L10H1"} | {f"L19H{h}" for h in range(24, 32)}),
        (32, "late", 10, {"L25H3", "L31H31"} | {f"L31H{h}" for h in range(23, 31)}),
        (32, "all", 4, {"L25H3", "L3H7", "L12H0", "L9H31"}),
        (40, "early", 2, {"L12H39", "L0H1"}),
        (40, "early", 20, {"L12H39", "L0H1"} | {f"L12H{h}" for h in range(21, 39)}),
        (40, "mid", 2, {"L13H0", "L26H39"}),
        (40, "mid", 20, {"L13H0", "L26H39"} | {f"L26H{h}" for h in range(21, 39)}),
        (40, "late", 20, {"L27H5"} | {f"L39H{h}" for h in range(21, 40)}),
    ],
)
def test_top_heads_are_the_best_ranked_of_the_stage(
    tmp_path: Path, rankings: dict[int, Path], n: int, stage: str, k: int, expected: set[str]
) -> None:
    spec = write_spec(tmp_path / "specs", "t", f"select: {{stage: {stage}, order: top, k: {k}}}\n")
    resolved = resolve_mask(spec, shape=S32 if n == 32 else S40, ranking=rankings[n])
    assert names(resolved.heads) == expected
    assert list(resolved.heads) == sorted(resolved.heads)
    assert resolved.seed is None and resolved.mode == "zero"
    assert resolved.ranking_path == rankings[n].resolve()
    assert resolved.ranking_sha256 == hashlib.sha256(rankings[n].read_bytes()).hexdigest()


# --- random -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, stage", [(32, "early"), (32, "mid"), (32, "late"), (40, "early"), (40, "late"), (40, "all")])
def test_random_heads_are_a_seeded_uniform_draw_from_the_stage(tmp_path: Path, n: int, stage: str) -> None:
    shape = S32 if n == 32 else S40
    folder = tmp_path / "specs"
    spec0 = write_spec(folder, "r0", f"select: {{stage: {stage}, order: random, k: 20}}\n")  # seed defaults to 0
    spec7 = write_spec(folder, "r7", f"select: {{stage: {stage}, order: random, k: 20}}\nseed: 7\n")
    first, again, other = resolve_mask(spec0, shape), resolve_mask(spec0, shape), resolve_mask(spec7, shape)
    pool = layer_major(STAGE_LAYERS[n][stage], n)
    assert len(first.heads) == 20 and names(first.heads) <= set(pool)
    assert first.heads == again.heads and first.seed == 0 and other.seed == 7
    assert first.heads != other.heads
    assert names(first.heads) == numpy_draw(pool, 20, 0)
    assert names(other.heads) == numpy_draw(pool, 20, 7)
    assert first.ranking_path is None and first.ranking_sha256 is None  # random needs no ranking


def test_shipped_random_grid_is_nested_and_reproducible() -> None:
    sets = [names(resolve_mask(f"mid_random{k}", S40).heads) for k in (10, 20, 30, 50)]
    assert [len(s) for s in sets] == [10, 20, 30, 50]
    assert sets[0] < sets[1] < sets[2] < sets[3]
    assert sets[3] == numpy_draw(layer_major(range(13, 27), 40), 50, 0)


# --- others -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [32, 40])
def test_others_draw_outside_the_stage_top_set(rankings: dict[int, Path], n: int) -> None:
    shape = S32 if n == 32 else S40
    table = pd.read_csv(rankings[n])
    early = table[table["layer"].isin(STAGE_LAYERS[n]["early"])]
    top50 = {f"L{r.layer}H{r.head}" for r in early.nsmallest(50, "rank").itertuples()}
    candidates = [name for name in layer_major(STAGE_LAYERS[n]["early"], n) if name not in top50]
    drawn = {}
    for k in (20, 50, 80, 100):
        resolved = resolve_mask(f"early_others{k}", shape, ranking=rankings[n])
        drawn[k] = names(resolved.heads)
        assert len(drawn[k]) == k and not drawn[k] & top50
        assert drawn[k] == numpy_draw(candidates, k, 0)
        assert resolved.seed == 0 and resolved.spec["select"]["exclude_top"] == 50
    assert drawn[20] < drawn[50] < drawn[80] < drawn[100]


def test_others_with_a_percentage_exclude_top(tmp_path: Path, rankings: dict[int, Path]) -> None:
    # 2% of 1024 heads = 20.48 -> the stage's top 20 are excluded.
    spec = write_spec(tmp_path, "o", "select: {stage: early, order: others, k: 300, exclude_top: '2%'}\nseed: 3\n")
    top20 = {"L3H7", "L9H31", "L0H0"} | {f"L9H{h}" for h in range(14, 31)}
    candidates = [name for name in layer_major(range(10), 32) if name not in top20]
    assert len(candidates) == 300
    assert names(resolve_mask(spec, S32, ranking=rankings[32]).heads) == set(candidates)


# --- percentages --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, k, expected",
    [
        (S32, "10%", 102),  # 102.4
        (S40, "1%", 16),  # 16.0
        (HeadShape(10, 10, 10, 8), "2.5%", 3),  # 2.5 rounds half up
        (HeadShape(10, 10, 10, 8), "1.4%", 1),
        (HeadShape(6, 8, 8, 8), "0.1%", 1),  # 0.048 -> at least one head
        (HeadShape(6, 8, 8, 8), "12.5%", 6),  # a tenth-ish of the tiny organism's 48 heads
    ],
)
def test_percentage_k_counts_all_heads_of_the_model(tmp_path: Path, shape: HeadShape, k: str, expected: int) -> None:
    spec = write_spec(tmp_path, "p", f"select: {{stage: early, order: random, k: '{k}'}}\n")
    resolved = resolve_mask(spec, shape)
    assert len(resolved.heads) == expected
    assert resolved.spec["select"]["k"] == k


def test_percentage_k_larger_than_the_stage_is_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "p", "select: {stage: early, order: random, k: 50%}\n")  # 512 of 1024; early has 320
    with pytest.raises(VisheadsError, match=r"select.k = 50% = 512 heads is more than the 320 heads of the early stage"):
        resolve_mask(spec, S32)


# --- the shipped grid ---------------------------------------------------------------------------------


def test_the_paper_grid_is_shipped() -> None:
    shipped = {path.stem for path in head_masks_dir().glob("*.yaml")}
    assert shipped == set(GRID)


@pytest.mark.parametrize("n", [32, 40])
def test_every_shipped_spec_resolves_on_7b_and_13b_shapes(rankings: dict[int, Path], n: int) -> None:
    shape = S32 if n == 32 else S40
    table = pd.read_csv(rankings[n])
    for name in GRID:
        resolved = resolve_mask(name, shape, ranking=rankings[n])
        if name == "none":
            assert resolved.heads == () and resolved.mode == "zero"
            continue
        stage, order, k = re.fullmatch(r"(early|mid|late)_(top|random|others)(\d+)", name).groups()
        layers = STAGE_LAYERS[n][stage]
        assert len(resolved.heads) == int(k) and all(head.layer in layers for head in resolved.heads), name
        assert resolved.mode == "zero" and resolved.source == str(head_masks_dir() / f"{name}.yaml")
        if order == "top":
            stage_rows = table[table["layer"].isin(layers)].nsmallest(int(k), "rank")
            assert names(resolved.heads) == {f"L{r.layer}H{r.head}" for r in stage_rows.itertuples()}, name
        else:
            assert resolved.seed == 0
        json.dumps(resolved.to_json())


def test_shipped_counts_too_large_for_a_small_model_are_reported() -> None:
    small = HeadShape(n_layers=6, n_heads=8, n_kv_heads=8, head_dim=8)
    with pytest.raises(
        VisheadsError,
        match=r"mask 'early_random20' .*select.k = 20 is more than the 16 heads of the "
        r"early stage \(layers 0-1 x 8 heads\)",
    ):
        resolve_mask("early_random20", small)
    assert len(resolve_mask("late_random10", small).heads) == 10


# --- explicit lists, inline lists, none -----------------------------------------------------------------


def test_inline_lists_and_none() -> None:
    inline = resolve_mask("L10H3+l2h5", S32)
    assert inline.heads == (Head(2, 5), Head(10, 3)) and inline.mode == "zero" and inline.source == "inline"
    assert inline.name == "L2H5+L10H3" and inline.to_json()["heads"] == ["L2H5", "L10H3"]
    assert resolve_mask("L31H31", S32).heads == (Head(31, 31),)
    none = resolve_mask("none", S32)
    assert none.heads == () and none.to_json()["heads"] == [] and none.ranking_path is None


def test_explicit_heads_in_a_spec_file(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "mine", "description: two heads\nheads: [L2H5, L10H3, L0H39]\nmode: uniform\n")
    resolved = resolve_mask(spec, S40)
    assert names(resolved.heads) == {"L2H5", "L10H3", "L0H39"} and resolved.mode == "uniform"
    assert resolved.name == "mine" and resolved.spec == {"description": "two heads", "heads": ["L0H39", "L2H5", "L10H3"], "mode": "uniform"}


# --- mask_dir -----------------------------------------------------------------------------------------


def test_mask_dir_adds_and_overrides_specs(tmp_path: Path) -> None:
    folder = tmp_path / "my_masks"
    write_spec(folder, "early_top20", "heads: [L1H1]\n")
    write_spec(folder, "probe", "select: {stage: late, order: random, k: 3}\nseed: 5\n")
    overridden = resolve_mask("early_top20", S32, mask_dir=folder)
    assert overridden.heads == (Head(1, 1),) and overridden.source == str(folder / "early_top20.yaml")
    assert len(resolve_mask("probe", S32, mask_dir=folder).heads) == 3
    with pytest.raises(VisheadsError, match=r"unknown mask 'prboe' \(did you mean 'probe'\?\)"):
        resolve_mask("prboe", S32, mask_dir=folder)
    with pytest.raises(VisheadsError, match="unknown mask 'probe'"):
        resolve_mask("probe", S32)  # not without the folder
    with pytest.raises(VisheadsError, match="is not a folder"):
        resolve_mask("probe", S32, mask_dir=tmp_path / "missing")


# --- bad specs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("select: {stage: early, order: top, k: 20\n", r"bad\.yaml is not valid YAML: .*line 2"),
        ("select: {stage: early, order: top, k: 20}\nmode: zero\nmode: mean\n", r"not valid YAML: key 'mode' is written twice"),
        ("- L2H5\n", "must be a mapping with `select` or `heads`"),
        ("", "must be a mapping .* holds nothing"),
        ("select: {stage: early, order: random, k: 20}\nseeed: 1\n", r"unknown key 'seeed' \(did you mean 'seed'\?\)"),
        ("select: {stage: early, order: top, kk: 20}\n", r"unknown key 'kk' \(did you mean 'k'\?\)"),
        ("select: {stage: early, order: top, k: 20}\nmode: zeros\n", r"unknown mode 'zeros' \(did you mean 'zero'\?\)"),
        ("select: {stage: eraly, order: top, k: 20}\n", r"unknown stage 'eraly' \(did you mean 'early'\?\)"),
        ("select: {stage: early, order: rnadom, k: 20}\n", r"unknown order 'rnadom' \(did you mean 'random'\?\)"),
        ("select: {stage: early, order: top}\n", "select needs k"),
        ("select: {stage: early, order: top, k: 0}\n", "select.k must be a whole number of heads"),
        ("select: {stage: early, order: top, k: 2.5}\n", "select.k must be a whole number of heads"),
        ("select: {stage: early, order: top, k: true}\n", "select.k must be a whole number of heads"),
        ("select: {stage: early, order: top, k: 150%}\n", "or a percentage of all heads between 0 and 100"),
        ("select: {stage: early, order: top, k: 20}\nseed: 1\n", "seed applies to random and others selections only"),
        ("select: {stage: early, order: random, k: 20}\nseed: -1\n", "seed must be a whole number >= 0"),
        ("select: {stage: early, order: random, k: 20, exclude_top: 50}\n", "exclude_top applies to order others only"),
        ("select: {stage: early, order: top, k: 20}\nheads: [L1H1]\n", "has both `select` and `heads`"),
        ("mode: zero\n", "needs exactly one of `select"),
        ("heads: L2H5\n", "heads must be a list of head names"),
        ("heads: [L2H5, l2h5]\n", "names head L2H5 twice"),
        ("heads: [L2H5, head3]\n", "'head3' is not a head name"),
        ("heads: [L2H5]\nmeans: m.npz\n", "means applies to mode mean only"),
        ("heads: [L2H5]\nmode: mean\nmeans: missing.npz\n", r"means file .*missing\.npz does not exist"),
        ("description: [a]\nheads: []\n", "description must be text"),
    ],
)
def test_bad_specs_fail_with_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    spec = write_spec(tmp_path, "bad", text)
    with pytest.raises(VisheadsError, match=message) as caught:
        resolve_mask(spec, S32)
    assert "\n" not in str(caught.value)
    assert str(spec) in str(caught.value)


@pytest.mark.parametrize(
    "mask, message",
    [
        ("L32H0", r"head L32H0 is out of range for this model: layers are 0\.\.31"),
        ("L0H32+L1H1", r"head L0H32 is out of range for this model: layers are 0\.\.31, heads 0\.\.31"),
        ("L1H1+L1H1", "names head L1H1 twice"),
        ("L1H1+x", r"mask 'L1H1\+x': 'x' is not a head name"),
        ("early_top2O", r"unknown mask 'early_top2O' \(did you mean 'early_top20'\?\)"),
        ("nowhere/spec.yaml", r"mask spec file nowhere/spec\.yaml does not exist"),
        ("", "the mask is empty"),
    ],
)
def test_bad_mask_arguments(mask: str, message: str) -> None:
    with pytest.raises(VisheadsError, match=message):
        resolve_mask(mask, S32)


def test_counts_that_do_not_fit_the_model(tmp_path: Path, rankings: dict[int, Path]) -> None:
    too_many = write_spec(tmp_path, "a", "select: {stage: mid, order: top, k: 321}\n")
    with pytest.raises(VisheadsError, match=r"select.k = 321 is more than the 320 heads of the mid stage \(layers 10-19 x 32"):
        resolve_mask(too_many, S32, ranking=rankings[32])
    others = write_spec(tmp_path, "b", "select: {stage: early, order: others, k: 271}\n")
    with pytest.raises(VisheadsError, match=r"select.k = 271 is more than the 270 heads of the early stage .* outside its top 50"):
        resolve_mask(others, S32, ranking=rankings[32])
    excluded = write_spec(tmp_path, "c", "select: {stage: early, order: others, k: 1, exclude_top: 320}\n")
    with pytest.raises(VisheadsError, match=r"exclude_top = 320 leaves none of the 320 heads of the early stage"):
        resolve_mask(excluded, S32, ranking=rankings[32])


def test_missing_or_mismatched_ranking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rankings: dict[int, Path]) -> None:
    monkeypatch.setenv("VISHEADS_CACHE", str(tmp_path / "home"))
    model = "llava-hf/llava-1.5-7b-hf"
    expected = tmp_path / "home" / "rankings" / "llava-hf__llava-1.5-7b-hf.csv"
    with pytest.raises(
        VisheadsError,
        match=rf"default ranking {re.escape(str(expected))} does not exist; make it with "
        rf"`visheads rank \.\.\. --out {re.escape(str(expected))}` or pass ranking=FILE",
    ):
        resolve_mask("early_top20", S32, model=model)
    with pytest.raises(VisheadsError, match="needs a ranking of the model's heads; pass ranking=FILE"):
        resolve_mask("early_others20", S32)
    with pytest.raises(VisheadsError, match=r"ranking file .*nope\.csv does not exist"):
        resolve_mask("early_top20", S32, model=model, ranking=tmp_path / "nope.csv")
    with pytest.raises(VisheadsError, match="does not rank the 32 x 32 heads of this model"):
        resolve_mask("early_top20", S32, ranking=rankings[40])
    # The model's default ranking is used when no file is given.
    hand_ranking(S32, expected)
    assert names(resolve_mask("early_top10", S32, model=model).heads) >= {"L3H7", "L9H31", "L0H0"}
    assert default_ranking_path(model) == expected


def test_mean_mode_finds_its_reference_means(tmp_path: Path, rankings: dict[int, Path]) -> None:
    spec = write_spec(tmp_path / "specs", "m", "select: {stage: early, order: top, k: 5}\nmode: mean\n")
    with pytest.raises(VisheadsError, match=r"rank32\.means\.npz \(next to the ranking\) does not exist"):
        resolve_mask(spec, S32, ranking=rankings[32])
    default = rankings[32].with_name("rank32.means.npz")
    np.savez(default, mean=np.zeros(3))
    assert resolve_mask(spec, S32, ranking=rankings[32]).means_path == default.resolve()
    np.savez(tmp_path / "specs" / "own.npz", mean=np.zeros(3))
    own = write_spec(tmp_path / "specs", "o", "select: {stage: early, order: random, k: 5}\nmode: mean\nmeans: own.npz\n")
    resolved = resolve_mask(own, S32)
    assert resolved.means_path == (tmp_path / "specs" / "own.npz").resolve()
    assert resolved.to_json()["means"] == str(resolved.means_path)


def test_to_json_is_the_results_entry(rankings: dict[int, Path]) -> None:
    entry = json.loads(json.dumps(resolve_mask("early_random10", S40, ranking=rankings[40]).to_json()))
    assert set(entry) >= {"name", "mode", "heads", "seed", "spec", "ranking", "ranking_sha256"}
    assert entry["name"] == "early_random10" and entry["seed"] == 0 and len(entry["heads"]) == 10
    assert entry["spec"]["select"] == {"stage": "early", "order": "random", "k": 10}
    assert entry["ranking"] is None  # a random draw reads no ranking


# --- `visheads masks` -----------------------------------------------------------------------------------


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        visheads_main(["masks", *argv])
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_cli_lists_and_validates_the_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli([], capsys)
    assert code == 0 and err == ""
    listed = {line.split()[0] for line in out.splitlines()[1:]}
    assert listed == set(GRID)
    assert "Top 20 heads of the early third" in out
    folder = tmp_path / "mine"
    write_spec(folder, "probe", "description: my probe\nselect: {stage: late, order: random, k: 3}\n")
    write_spec(folder, "early_top20", "heads: [L1H1]\n")
    code, out, err = run_cli(["--mask-dir", str(folder)], capsys)
    assert code == 0 and "my probe" in out and "overrides shipped" in out
    write_spec(folder, "broken", "select: {stage: early, order: top, k: 20}\nmdoe: zero\n")
    code, out, err = run_cli(["--mask-dir", str(folder)], capsys)
    assert code == 2
    expected = (
        f"visheads: error: mask spec {folder / 'broken.yaml'}: unknown key 'mdoe' (did you mean 'mode'?); "
        "keys are description, select, heads, seed, mode, means"
    )
    assert err.strip().splitlines() == [expected]
    assert "probe" in out  # the valid specs are still listed


def test_cli_resolves_specs_for_a_config_without_weights(
    tmp_path: Path, rankings: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    LlavaConfig(text_config=LlamaConfig(num_hidden_layers=32, num_attention_heads=32, hidden_size=256)).save_pretrained(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json"]
    code, out, err = run_cli(["early_top10", "L2H5+L10H3", "--pretrained", str(model_dir), "--ranking", str(rankings[32])], capsys)
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert set(rows["early_top10"][4:]) == {"L3H7", "L9H31", "L0H0"} | {f"L9H{h}" for h in range(24, 31)}
    assert rows["L2H5+L10H3"][4:] == ["L2H5", "L10H3"]
    assert f"ranking: {rankings[32].resolve()}" in out
    code, out, err = run_cli(["early_random20", "--layers", "40", "--heads", "40", "--json"], capsys)
    assert code == 0
    (entry,) = json.loads(out)
    assert set(entry["heads"]) == numpy_draw(layer_major(range(13), 40), 20, 0)


def test_cli_exits_2_with_one_line_per_invalid_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["early_top20", "late_random10", "--layers", "6", "--heads", "8"], capsys)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("visheads: error: mask 'early_top20'") and "needs a ranking" in line
    assert "late_random10" in out
    code, out, err = run_cli(["--layers", "6"], capsys)
    assert code == 2 and err.strip() == "visheads: error: --layers and --heads go together: give both (or --pretrained PATH)"
    code, out, err = run_cli(["--pretrained", "/no/such/model"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot read the config of --pretrained /no/such/model" in err


def test_visheads_masks_console_script(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "visheads"),
            "masks",
            "early_top20",
            "--layers",
            "3",
            "--heads",
            "4",
            "--ranking",
            str(tmp_path / "r.csv"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "ranking file" in done.stderr and "does not exist" in done.stderr
