"""What recording attention costs: a plain SDPA forward vs. HeadRecorder (without and with the logit
lens) vs. eager output_attentions.

A random vision-language model whose vision tower is kept tiny (so the language model dominates) and whose
language model is ``--shape small`` (a LLaVA, 1024 wide, 8 layers, 16 heads, LLaVA-1.5's vocabulary of
32,064 tokens; the CPU default), ``--shape 7b`` (a LLaVA with Vicuna-7B's language model: 4096 wide, 32
layers x 32 heads, MLP 11008) or ``--shape qwen2.5-vl-7b`` (a Qwen2.5-VL with Qwen2.5-VL-7B's: 3584 wide,
28 layers, 28 query / 4 key-value heads, MLP 18944, vocabulary 152,064, multimodal RoPE); ``--layers``
cuts the language model, and the tables say so. It is fed one image of N image tokens plus a short
question, as a steady
stream of samples (each its own forward, and for the recorder its own ``HeadRecorder``, as
``llava_visheads`` records one document after another):

- time: one process per N runs the three variants interleaved, one warm-up round, then the median over
  ``--samples`` rounds, so that the ratios come from one run on the same machine state; every forward
  computes the logits of the last position only, as ``generate``'s prefill does;
- memory: one process per variant and N runs ``--samples`` consecutive samples; the figure is the
  peak over all of them (a high-water mark, so anything a sample leaves behind for the next one, such as
  tensors held by a reference cycle, shows up), with Python's garbage collector left as it is by
  default: on a CPU the process's peak resident set, on a GPU CUDA's peak allocated memory
  (``torch.cuda.max_memory_allocated``); on a GPU times are taken after ``torch.cuda.synchronize()``.

    python benchmarks/recording_cost.py                      # N = 576, 1296, 1936, 2916
    python benchmarks/recording_cost.py --tokens 2916 --samples 4 --out result.json
    python benchmarks/recording_cost.py --shape 7b --device cuda --dtype bfloat16 --tokens 576 2916   # a GPU
    python benchmarks/recording_cost.py --shape qwen2.5-vl-7b --layers 2 --tokens 1296   # Qwen2.5-VL-7B's shape, cut
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("sdpa", "recorder", "lens", "eager")
PATCH = 14


@dataclasses.dataclass(frozen=True)
class Shape:
    """A language model's shape, and the family that wraps it."""

    family: str  # "llava" or "qwen2_5_vl"
    hidden: int
    mlp: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int


SHAPES = {
    "small": Shape("llava", 1024, 2816, 8, 16, 16, 32064),
    "7b": Shape("llava", 4096, 11008, 32, 32, 32, 32064),  # Vicuna-7B
    "qwen2.5-vl-7b": Shape("qwen2_5_vl", 3584, 18944, 28, 28, 4, 152064),  # Qwen2.5-VL-7B's language model
}
IMAGE_TOKEN = {"llava": 32000, "qwen2_5_vl": 151655}


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one benchmark run measures on."""

    shape: str
    layers: int
    dtype: str
    device: str

    def argv(self) -> list[str]:
        return ["--shape", self.shape, "--layers", str(self.layers), "--dtype", self.dtype, "--device", self.device]

    def describe(self) -> str:
        shape = SHAPES[self.shape]
        cut = f" (cut from {shape.layers})" if self.layers != shape.layers else ""
        kv = f" ({shape.kv_heads} key-value)" if shape.kv_heads != shape.heads else ""
        return (
            f"{shape.family} with a language model {shape.hidden} wide, {self.layers} layers{cut} x {shape.heads} heads{kv}, "
            f"vocabulary {shape.vocab}, {self.dtype}, {self.device}"
        )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _model(side: int, attn: str, samples: int, setting: Setting):
    """The model (``attn`` kernel) and a stream of ``samples`` inputs, each one image of ``side`` x ``side`` image
    tokens and a 60-token question."""
    import torch

    torch.manual_seed(0)
    shape = SHAPES[setting.shape]
    dtype = getattr(torch, setting.dtype)
    build = _qwen2_5_vl if shape.family == "qwen2_5_vl" else _llava
    model, image_inputs = build(side, shape, setting.layers)
    model = model.eval().to(setting.device, dtype)
    model.set_attn_implementation(attn)
    torch.manual_seed(1)
    stream = []
    image_token = IMAGE_TOKEN[shape.family]
    for _ in range(samples):  # a different image and question per sample
        question = torch.randint(3, 32000, (60,))
        input_ids = torch.cat([torch.tensor([1]), torch.full((side * side,), image_token), question])[None]
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **image_inputs(input_ids)}
        stream.append(
            {name: value.to(setting.device, dtype if value.is_floating_point() else value.dtype) for name, value in inputs.items()}
        )
    return model, stream


def _llava(side: int, shape: Shape, layers: int):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.mlp,
        num_hidden_layers=layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
    )
    vision = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=side * PATCH, patch_size=PATCH
    )
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_TOKEN["llava"]))
    return model, lambda input_ids: {"pixel_values": torch.randn(1, 3, side * PATCH, side * PATCH)}


def _qwen2_5_vl(side: int, shape: Shape, layers: int):
    """A Qwen2.5-VL: ``side`` x ``side`` merged image tokens are a grid of 2 side x 2 side patches of 14 px."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = shape.hidden // shape.heads
    text = dict(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.mlp,
        num_hidden_layers=layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    )
    assert head_dim == 128, "Qwen2.5-VL's mrope sections are for 128-wide heads"
    vision = dict(
        depth=1,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        patch_size=PATCH,
        spatial_merge_size=2,
        out_hidden_size=shape.hidden,
        window_size=112,
        fullatt_block_indexes=[0],
    )
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN["qwen2_5_vl"])
    patches = (2 * side) ** 2

    def image_inputs(input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.randn(patches, 3 * 2 * PATCH * PATCH),
            "image_grid_thw": torch.tensor([[1, 2 * side, 2 * side]]),
            "mm_token_type_ids": (input_ids == IMAGE_TOKEN["qwen2_5_vl"]).long(),
        }

    return Qwen2_5_VLForConditionalGeneration(config), image_inputs


def _sync(setting: Setting) -> None:
    import torch

    if setting.device.startswith("cuda"):
        torch.cuda.synchronize()


def _forward(variant: str, model, inputs) -> None:
    import torch

    from visheads_eval.capture import HeadRecorder

    shape = (1, model.config.text_config.num_hidden_layers, model.config.text_config.num_attention_heads)
    with torch.inference_mode():
        if variant == "eager":
            assert len(model(**inputs, logits_to_keep=1, output_attentions=True).attentions) == shape[1]
        elif variant in ("recorder", "lens"):
            with HeadRecorder(model, logit_lens=variant == "lens") as recorder:
                model(**inputs, logits_to_keep=1)
            assert recorder.stats["image_attn"].shape == shape
            if variant == "lens":
                assert recorder.lens["answer_rank"].shape == (1, shape[1] + 1)
        else:
            model(**inputs, logits_to_keep=1)


def measure_time(side: int, samples: int, setting: Setting) -> dict:
    """Child process: the variants interleaved over the stream, one warm-up round, median of ``samples`` rounds."""
    sdpa_model, stream = _model(side, "sdpa", samples + 1, setting)
    eager_model, _ = _model(side, "eager", 0, setting)
    models = {"sdpa": sdpa_model, "recorder": sdpa_model, "lens": sdpa_model, "eager": eager_model}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_, inputs in enumerate(stream):
        for variant in VARIANTS:
            _sync(setting)
            start = time.perf_counter()
            _forward(variant, models[variant], inputs)
            _sync(setting)
            if round_:  # round 0 warms up
                times[variant].append(time.perf_counter() - start)
    return {variant: statistics.median(values) for variant, values in times.items()}


def measure_memory(variant: str, side: int, samples: int, setting: Setting) -> dict:
    """Child process: peak memory over ``samples`` consecutive samples of ``variant``, and of the model and
    inputs alone: the resident set on a CPU, CUDA's allocated memory on a GPU."""
    import torch

    model, stream = _model(side, "eager" if variant == "eager" else "sdpa", samples, setting)
    on_gpu = setting.device.startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() / 2**20 if on_gpu else _rss_kib("VmRSS") / 1024
    for inputs in stream:
        _forward(variant, model, inputs)
    peak = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else _rss_kib("VmHWM") / 1024
    return {"peak_mib": peak, "baseline_mib": baseline}


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[576, 1296, 1936, 2916], help="image tokens (perfect squares)")
    parser.add_argument("--samples", type=int, default=6, help="consecutive samples per variant (default 6)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "recording_cost.json")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small", help="the language model's shape (default small)")
    parser.add_argument("--layers", type=int, help="keep this many of the shape's layers (default: all)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu", help="default: cuda when available, else cpu")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    setting = Setting(
        args.shape,
        args.layers or SHAPES[args.shape].layers,
        args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"),
        args.device,
    )
    if args.child:
        kind, *rest = args.child
        if kind == "time":
            result = measure_time(int(rest[0]), args.samples, setting)
        else:
            result = measure_memory(rest[0], int(rest[1]), args.samples, setting)
        print(json.dumps(result))
        return
    memory_kind = "CUDA peak allocated" if setting.device.startswith("cuda") else "peak resident set"
    print(f"{setting.describe()}; memory: {memory_kind}", flush=True)
    rows = []
    for tokens in args.tokens:
        side = round(tokens**0.5)
        if side * side != tokens:
            parser.error(f"--tokens {tokens} is not a square number of patches")
        seconds = _child("time", str(side), "--samples", str(args.samples), *setting.argv())
        for variant in VARIANTS:
            memory = _child("memory", variant, str(side), "--samples", str(args.samples), *setting.argv())
            rows.append(
                {
                    "image_tokens": tokens,
                    "variant": variant,
                    "seconds": seconds[variant],
                    **memory,
                    **dataclasses.asdict(setting),
                    "memory": memory_kind,
                }
            )
            print(
                f"{tokens:5d} image tokens  {variant:8s}  {seconds[variant]:7.2f} s  peak {memory['peak_mib']:7.0f} MiB "
                f"(model and inputs alone {memory['baseline_mib']:.0f} MiB)",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "\n| image tokens | SDPA forward | + HeadRecorder | + logit lens | eager + output_attentions "
        "| recorder / SDPA (time, peak) | lens / recorder (time, peak) | eager / recorder (time, peak) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tokens in args.tokens:
        by = {r["variant"]: r for r in rows if r["image_tokens"] == tokens}
        s, r, lens, e = by["sdpa"], by["recorder"], by["lens"], by["eager"]
        cells = [f"{v['seconds']:.2f} s, {v['peak_mib']:.0f} MiB" for v in (s, r, lens, e)]
        print(
            f"| {tokens} | {' | '.join(cells)} | {r['seconds'] / s['seconds']:.2f}x, {r['peak_mib'] / s['peak_mib']:.2f}x | "
            f"{lens['seconds'] / r['seconds']:.2f}x, {lens['peak_mib'] / r['peak_mib']:.2f}x | "
            f"{e['seconds'] / r['seconds']:.1f}x, {e['peak_mib'] / r['peak_mib']:.1f}x |"
        )


if __name__ == "__main__":
    main()
