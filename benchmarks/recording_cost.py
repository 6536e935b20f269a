"""What recording attention costs: a plain SDPA forward vs. HeadRecorder vs. eager output_attentions.

A random LLaVA whose language model is 1024 wide, 8 layers, 16 heads (the vision tower is kept tiny so
the language model dominates), fed one image of N image tokens plus a short question. Each variant runs
in its own process (peak memory is a process high-water mark): one warm-up forward, then the median of
three timed forwards; peak memory is the process's peak resident set. Variants are interleaved for
every N so that the ratios come from one run on the same machine state.

    python benchmarks/recording_cost.py                      # N = 576, 1296, 1936, 2916
    python benchmarks/recording_cost.py --tokens 2916 --out result.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("sdpa", "recorder", "eager")
PATCH = 14
VOCAB = 1000
IMAGE_TOKEN = 999


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _model(side: int, attn: str):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    text = LlamaConfig(vocab_size=VOCAB, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                       num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=4096)
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                              image_size=side * PATCH, patch_size=PATCH)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_TOKEN)
    model = LlavaForConditionalGeneration(config).eval()
    model.set_attn_implementation(attn)
    torch.manual_seed(1)
    question = torch.randint(3, VOCAB - 1, (60,))
    input_ids = torch.cat([torch.tensor([1]), torch.full((side * side,), IMAGE_TOKEN), question])[None]
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "pixel_values": torch.randn(1, 3, side * PATCH, side * PATCH)}
    return model, inputs


def _forward(variant: str, model, inputs) -> None:
    import torch

    from visheads_eval.capture import HeadRecorder

    with torch.inference_mode():
        if variant == "eager":
            assert len(model(**inputs, output_attentions=True).attentions) == 8
        elif variant == "recorder":
            with HeadRecorder(model) as recorder:
                model(**inputs)
            assert recorder.stats["image_attn"].shape == (1, 8, 16)
        else:
            model(**inputs)


def measure_time(side: int, repeats: int) -> dict:
    """Child process: the three variants interleaved, one warm-up each, median of ``repeats``."""
    sdpa_model, inputs = _model(side, "sdpa")
    eager_model, _ = _model(side, "eager")
    models = {"sdpa": sdpa_model, "recorder": sdpa_model, "eager": eager_model}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_ in range(repeats + 1):
        for variant in VARIANTS:
            start = time.perf_counter()
            _forward(variant, models[variant], inputs)
            if round_:  # round 0 warms up
                times[variant].append(time.perf_counter() - start)
    return {variant: statistics.median(values) for variant, values in times.items()}


def measure_memory(variant: str, side: int) -> dict:
    """Child process: peak resident memory of one forward of ``variant``, and of the model alone."""
    model, inputs = _model(side, "eager" if variant == "eager" else "sdpa")
    baseline = _rss_kib("VmRSS")
    _forward(variant, model, inputs)
    return {"peak_mib": _rss_kib("VmHWM") / 1024, "baseline_mib": baseline / 1024}


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[576, 1296, 1936, 2916], help="image tokens (perfect squares)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "recording_cost.json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = measure_time(int(rest[0]), args.repeats) if kind == "time" else measure_memory(rest[0], int(rest[1]))
        print(json.dumps(result))
        return
    rows = []
    for tokens in args.tokens:
        side = round(tokens**0.5)
        if side * side != tokens:
            parser.error(f"--tokens {tokens} is not a square number of patches")
        seconds = _child("time", str(side), "--repeats", str(args.repeats))
        for variant in VARIANTS:
            memory = _child("memory", variant, str(side))
            rows.append({"image_tokens": tokens, "variant": variant, "seconds": seconds[variant], **memory})
            print(f"{tokens:5d} image tokens  {variant:8s}  {seconds[variant]:7.2f} s  peak {memory['peak_mib']:7.0f} MiB "
                  f"(model and inputs alone {memory['baseline_mib']:.0f} MiB)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| image tokens | SDPA forward | + HeadRecorder | eager + output_attentions | recorder / SDPA (time, peak) | eager / recorder (time, peak) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for tokens in args.tokens:
        by = {r["variant"]: r for r in rows if r["image_tokens"] == tokens}
        s, r, e = by["sdpa"], by["recorder"], by["eager"]
        print(f"| {tokens} | {s['seconds']:.2f} s, {s['peak_mib']:.0f} MiB | {r['seconds']:.2f} s, {r['peak_mib']:.0f} MiB | "
              f"{e['seconds']:.2f} s, {e['peak_mib']:.0f} MiB | {r['seconds'] / s['seconds']:.2f}x, {r['peak_mib'] / s['peak_mib']:.2f}x | "
              f"{e['seconds'] / r['seconds']:.1f}x, {e['peak_mib'] / r['peak_mib']:.1f}x |")


if __name__ == "__main__":
    main()
