"""What recording attention costs: a plain SDPA forward vs. HeadRecorder (without and with the logit
lens) vs. eager output_attentions.

A random LLaVA whose language model is 1024 wide, 8 layers, 16 heads, with LLaVA-1.5's vocabulary of
32,064 tokens (the vision tower is kept tiny so the language model dominates), fed one image of N image
tokens plus a short question, as a steady
stream of samples (each its own forward, and for the recorder its own ``HeadRecorder``, as
``llava_visheads`` records one document after another):

- time: one process per N runs the three variants interleaved, one warm-up round, then the median over
  ``--samples`` rounds, so that the ratios come from one run on the same machine state; every forward
  computes the logits of the last position only, as ``generate``'s prefill does;
- memory: one process per variant and N runs ``--samples`` consecutive samples; the figure is the
  process's peak resident set over all of them (a high-water mark, so anything a sample leaves behind
  for the next one, such as tensors held by a reference cycle, shows up), with Python's garbage
  collector left as it is by default.

    python benchmarks/recording_cost.py                      # N = 576, 1296, 1936, 2916
    python benchmarks/recording_cost.py --tokens 2916 --samples 4 --out result.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("sdpa", "recorder", "lens", "eager")
PATCH = 14
VOCAB = 32064
IMAGE_TOKEN = 32000


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _model(side: int, attn: str, samples: int):
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
    stream = []
    for _ in range(samples):  # a different image and question per sample
        question = torch.randint(3, VOCAB - 1, (60,))
        input_ids = torch.cat([torch.tensor([1]), torch.full((side * side,), IMAGE_TOKEN), question])[None]
        stream.append({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                       "pixel_values": torch.randn(1, 3, side * PATCH, side * PATCH)})
    return model, stream


def _forward(variant: str, model, inputs) -> None:
    import torch

    from visheads_eval.capture import HeadRecorder

    with torch.inference_mode():
        if variant == "eager":
            assert len(model(**inputs, logits_to_keep=1, output_attentions=True).attentions) == 8
        elif variant in ("recorder", "lens"):
            with HeadRecorder(model, logit_lens=variant == "lens") as recorder:
                model(**inputs, logits_to_keep=1)
            assert recorder.stats["image_attn"].shape == (1, 8, 16)
            if variant == "lens":
                assert recorder.lens["answer_rank"].shape == (1, 9)
        else:
            model(**inputs, logits_to_keep=1)


def measure_time(side: int, samples: int) -> dict:
    """Child process: the three variants interleaved over the stream, one warm-up round, median of ``samples`` rounds."""
    sdpa_model, stream = _model(side, "sdpa", samples + 1)
    eager_model, _ = _model(side, "eager", 0)
    models = {"sdpa": sdpa_model, "recorder": sdpa_model, "lens": sdpa_model, "eager": eager_model}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_, inputs in enumerate(stream):
        for variant in VARIANTS:
            start = time.perf_counter()
            _forward(variant, models[variant], inputs)
            if round_:  # round 0 warms up
                times[variant].append(time.perf_counter() - start)
    return {variant: statistics.median(values) for variant, values in times.items()}


def measure_memory(variant: str, side: int, samples: int) -> dict:
    """Child process: peak resident memory over ``samples`` consecutive samples of ``variant``, and of the model alone."""
    model, stream = _model(side, "eager" if variant == "eager" else "sdpa", samples)
    baseline = _rss_kib("VmRSS")
    for inputs in stream:
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
    parser.add_argument("--samples", type=int, default=6, help="consecutive samples per variant (default 6)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "recording_cost.json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = measure_time(int(rest[0]), args.samples) if kind == "time" else measure_memory(rest[0], int(rest[1]), args.samples)
        print(json.dumps(result))
        return
    rows = []
    for tokens in args.tokens:
        side = round(tokens**0.5)
        if side * side != tokens:
            parser.error(f"--tokens {tokens} is not a square number of patches")
        seconds = _child("time", str(side), "--samples", str(args.samples))
        for variant in VARIANTS:
            memory = _child("memory", variant, str(side), "--samples", str(args.samples))
            rows.append({"image_tokens": tokens, "variant": variant, "seconds": seconds[variant], **memory})
            print(f"{tokens:5d} image tokens  {variant:8s}  {seconds[variant]:7.2f} s  peak {memory['peak_mib']:7.0f} MiB "
                  f"(model and inputs alone {memory['baseline_mib']:.0f} MiB)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| image tokens | SDPA forward | + HeadRecorder | + logit lens | eager + output_attentions "
          "| recorder / SDPA (time, peak) | lens / recorder (time, peak) | eager / recorder (time, peak) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tokens in args.tokens:
        by = {r["variant"]: r for r in rows if r["image_tokens"] == tokens}
        s, r, lens, e = by["sdpa"], by["recorder"], by["lens"], by["eager"]
        cells = [f"{v['seconds']:.2f} s, {v['peak_mib']:.0f} MiB" for v in (s, r, lens, e)]
        print(f"| {tokens} | {' | '.join(cells)} | {r['seconds'] / s['seconds']:.2f}x, {r['peak_mib'] / s['peak_mib']:.2f}x | "
              f"{lens['seconds'] / r['seconds']:.2f}x, {lens['peak_mib'] / r['peak_mib']:.2f}x | "
              f"{e['seconds'] / r['seconds']:.1f}x, {e['peak_mib'] / r['peak_mib']:.1f}x |")


if __name__ == "__main__":
    main()
