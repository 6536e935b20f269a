"""Train ``visheads-smol``: a LLaVA whose language model is SmolLM2-135M-Instruct, on synthetic PointQA, on a CPU.

The model is a ``LlavaForConditionalGeneration`` built from three parts:

- the vision tower of the shipped organism ``visheads-tiny`` (CLIP-style, 112 px, patch 14: 64 image
  tokens, each encoding what its grid cell holds), copied and kept frozen;
- a new LLaVA projector (2-layer gelu MLP, 96 -> 576), initialised from ``--seed``;
- SmolLM2-135M-Instruct (30 layers x 9 heads, 3 kv heads, hidden 576), with an ``<image>`` token added.

It is trained the LLaVA way, with the loss on the answer tokens only (answer + ``<|im_end|>``) and
nothing else: no attention targets, no probes inside the language model.

- Stage 1: the projector alone (language model frozen).
- Stage 2: the projector plus peft LoRA adapters on the language model; the adapters are merged at the
  end, so the model saved is a plain ``LlavaForConditionalGeneration``.

Data are synthetic scenes (``visheads_eval.data.synth``) asked, as the lmms-eval PointQA tasks ask them
(same question text, same box rendering, the processor's chat template):

- ``count``: the six PointQA settings, {plain, visual} x {general, object, super}, answers 1..7;
- ``pope``: POPE-style existence questions, "Is there a green circle in the image?", yes/no balanced;
- ``attribute``: the colour or the shape of the pointed object (box in the text or drawn on the image).

Each stage draws tasks from its own mixture (``--stage1-mix``, ``--stage2-mix``), a curriculum from the
easy questions towards counting. Training scenes come from ``numpy.random.default_rng([seed, 1])``
(stage 2: ``[seed, 1, 2]``), streams disjoint from the seeded splits of ``visheads data synth`` (the
shipped test split is seed 0); the held-out docs of the periodic quick check come from split ``smoldev``
of seed ``1000 + seed``. ``--init PARTS`` continues a run from its trained parts (``tools.smol.parts``:
the projector and the same LoRA adapters go on training) and ``--data-round N`` gives it scenes it has not
seen (``1000 + N`` appended to both stream keys).

Writes to ``--out``: ``train_log.jsonl`` (one line per step; quick accuracies every ``--eval-every``
steps), ``stage1_projector.safetensors`` (the projector after stage 1), ``train_config.json``, ``parts/``
(the trained parts in float16, every session so far recorded: what is kept and continued from) and the model
assembled from those parts + processor (``save_pretrained``, for ``tools.smol.evaluate``; not kept).

    python -m tools.smol.convert --out runs/smollm2     # once: SmolLM2 as float32 (faster to load)
    python -m tools.smol.train --lm runs/smollm2 --out runs/smol   # tools/smol/README.md: status
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    AutoTokenizer,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from tools.smol.parts import save_parts
from visheads_eval.data import synth
from visheads_eval.data.attribute_task import ATTRIBUTES, attribute_answer, attribute_question
from visheads_eval.data.pointqa import QUESTION_KINDS, VARIANTS, draw_box, question_text
from visheads_eval.organism import SHIPPED_DIR, smol
from visheads_eval.organism.smol import load_parts, read_sessions

TASKS = ("count", "pope", "attribute")
LORA_TARGETS = r".*language_model.*\.({modules})"


@dataclass(frozen=True)
class Sample:
    """One question about one image, with the answer text the model should generate."""

    image: Image.Image
    text: str  # the user turn's text (the image comes first)
    answer: str
    task: str  # count/<variant>_<kind>, pope or attribute


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run."""

    seed: int = 0
    lm: str = ""  # SmolLM2-135M-Instruct as float32 (python -m tools.smol.convert; loads faster), or "": from the GGUF file
    organism: str = str(SHIPPED_DIR)  # whose vision tower is copied
    stage1_steps: int = 60
    stage2_steps: int = 200
    batch_size: int = 8
    stage1_lr: float = 2e-3
    stage2_lr: float = 1e-3  # LoRA adapters
    stage2_projector_lr: float = 2e-4
    warmup: int = 10
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_modules: str = "q_proj,k_proj,v_proj,o_proj"
    stage1_mix: str = "count=0.4,pope=0.3,attribute=0.3"
    stage2_mix: str = "count=0.7,pope=0.15,attribute=0.15"
    eval_every: int = 25
    eval_docs: int = 5  # held-out docs per quick-check group
    time_budget: float = 60.0  # minutes of training (both stages, quick checks included); stage 2 stops early past it
    threads: int = 2
    init: str = ""  # the trained parts of a run to continue (tools.smol.parts): its projector and adapters go on training
    data_round: int = 0  # > 0: a fresh stream of training scenes (for a run continued with --init)


# ----------------------------------------------------------------------------------------------- data


def chat_prompt(processor: LlavaProcessor, text: str) -> str:
    """The prompt lmms-eval's chat adapter builds for one image and ``text``."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def pointqa_sample(doc: dict, kind: str, variant: str) -> Sample:
    """A PointQA doc asked the ``kind`` question in the ``variant`` rendering, as the tasks ask it."""
    image = draw_box(doc["image"], doc["bbox"]) if variant == "visual" else doc["image"].convert("RGB")
    return Sample(image, question_text(doc, kind, variant), str(doc["answer"]), f"count/{variant}_{kind}")


def pope_question(colour: str, shape: str) -> str:
    return f"Is there a {colour} {shape} in the image?\nAnswer with yes or no."


def pope_sample(scene: synth.Scene, rng: np.random.Generator, positive: bool) -> Sample:
    """Ask about a kind the scene holds (``positive``) or one it does not (drawn uniformly from the rest)."""
    present = sorted({obj.kind for obj in scene.objects})
    kinds = present if positive else [(s, c) for s in synth.SHAPES for c in synth.COLOURS if (s, c) not in present]
    shape, colour = kinds[rng.integers(len(kinds))]
    return Sample(synth.render(scene), pope_question(colour, shape), "yes" if positive else "no", "pope")


def attribute_sample(scene: synth.Scene, attribute: str, variant: str) -> Sample:
    """Ask the colour or shape of the pointed object, its box in the text (plain) or on the image (visual), as the
    attribute tasks ask it (:mod:`visheads_eval.data.attribute_task`)."""
    doc = synth.scene_doc(scene, "")
    image = draw_box(doc["image"], doc["bbox"]) if variant == "visual" else doc["image"]
    return Sample(image, attribute_question(doc, attribute, variant), attribute_answer(doc, attribute), "attribute")


def parse_mix(text: str) -> dict[str, float]:
    """``"count=0.6,pope=0.2,attribute=0.2"`` -> normalised task weights."""
    weights = {task: 0.0 for task in TASKS}
    for part in text.split(","):
        name, value = part.split("=")
        if name not in weights:
            raise ValueError(f"unknown task '{name}' in mix '{text}'; tasks: {', '.join(TASKS)}")
        weights[name] = float(value)
    total = sum(weights.values())
    return {task: weight / total for task, weight in weights.items()}


def sample_stream(rng: np.random.Generator, mix: dict[str, float]) -> Iterator[Sample]:
    """Endless training samples: tasks drawn from ``mix``, scenes from ``rng`` (answers uniform in 1..7)."""
    tasks, weights = list(mix), np.array(list(mix.values()))
    while True:
        task = tasks[rng.choice(len(tasks), p=weights)]
        scene = synth.draw_scene(rng, int(rng.integers(1, 8)))
        variant = VARIANTS[rng.integers(len(VARIANTS))]
        if task == "count":
            yield pointqa_sample(synth.scene_doc(scene, ""), QUESTION_KINDS[rng.integers(len(QUESTION_KINDS))], variant)
        elif task == "pope":
            yield pope_sample(scene, rng, positive=bool(rng.integers(2)))
        else:
            yield attribute_sample(scene, ATTRIBUTES[rng.integers(len(ATTRIBUTES))], variant)


def pope_split(seed: int, n_docs: int, split: str = "pope") -> list[Sample]:
    """A balanced POPE-style split: doc ``i`` asks about a present kind when ``i`` is even, else an absent one."""
    samples = []
    for index in range(n_docs):
        scene = synth.make_scene(seed, split, index)
        samples.append(pope_sample(scene, np.random.default_rng([seed, synth.split_key(split), index, 1]), index % 2 == 0))
    return samples


def attribute_split(seed: int, n_docs: int, split: str = "attribute") -> list[Sample]:
    """Doc ``i`` asks the colour (``i // 2`` even) or the shape of the pointed object, its box in the text
    (``i`` even) or on the image; the task names the rendering (``attribute/plain``, ``attribute/visual``)."""
    samples = []
    for index in range(n_docs):
        variant = VARIANTS[index % 2]
        sample = attribute_sample(synth.make_scene(seed, split, index), ATTRIBUTES[(index // 2) % 2], variant)
        samples.append(replace(sample, task=f"attribute/{variant}"))
    return samples


def quick_split(seed: int, n_docs: int) -> list[Sample]:
    """Held-out docs for the quick check during training: ``n_docs`` per PointQA setting, plus POPE."""
    docs = list(synth.generate_docs(1000 + seed, "smoldev", n_docs))
    samples = [pointqa_sample(doc, kind, variant) for variant in VARIANTS for kind in QUESTION_KINDS for doc in docs]
    return samples + pope_split(1000 + seed, 2 * n_docs, split="smoldevpope")


def encode(processor: LlavaProcessor, samples: Sequence[Sample], with_answers: bool) -> dict[str, torch.Tensor]:
    """Right-padded inputs; with answers, the answer tokens + ``<|im_end|>`` follow the prompt and are the
    only labelled positions. ``last`` is the index of each sample's last prompt token."""
    tokenizer = processor.tokenizer
    prompts = [chat_prompt(processor, sample.text) for sample in samples]
    encoded = processor(images=[sample.image for sample in samples], text=prompts)
    rows, labels, last = [], [], []
    for ids, sample in zip(encoded["input_ids"], samples, strict=False):
        answer = tokenizer(sample.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] if with_answers else []
        rows.append(list(ids) + answer)
        labels.append([-100] * len(ids) + answer)
        last.append(len(ids) - 1)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([row + [pad] * (width - len(row)) for row in rows]),
        "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows]),
        "labels": torch.tensor([row + [-100] * (width - len(row)) for row in labels]),
        "pixel_values": torch.as_tensor(np.stack(encoded["pixel_values"])),
        "last": torch.tensor(last),
    }


# ---------------------------------------------------------------------------------------------- model


def base_model(config: TrainConfig) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """SmolLM2 (from ``--lm``, or dequantized from the smol extra's GGUF file when empty) + the organism's vision
    tower + a new projector drawn from the seed, and the processor (:mod:`visheads_eval.organism.smol`)."""
    if config.lm:
        lm, tokenizer = LlamaForCausalLM.from_pretrained(config.lm), AutoTokenizer.from_pretrained(config.lm)
    else:
        lm, tokenizer = smol.load_language_model()
    processor = smol.build_processor(tokenizer, Path(config.organism))
    return smol.build_model(processor, lm, Path(config.organism), config.seed), processor


def session_config(config: TrainConfig) -> dict:
    """The session's flags as parts.json keeps them: what it was built from by name, not by this machine's paths."""
    record = asdict(config)
    version = importlib.metadata.version(smol.GGUF_DISTRIBUTION)
    record["lm"] = f"SmolLM2-135M-Instruct ({smol.GGUF_DISTRIBUTION} {version}, Q4_1 GGUF dequantized to float32)"
    record["organism"] = "visheads-tiny" if Path(config.organism) == SHIPPED_DIR else config.organism
    record["init"] = "the parts it continues (sessions above)" if config.init else ""
    return record


# ------------------------------------------------------------------------------------------- training


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def answer_loss(model: LlavaForConditionalGeneration, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the labelled (answer) tokens; ``lm_head`` runs on those positions only (on
    2 CPU cores the full-sequence logits over SmolLM2's 49k vocabulary cost more than the 30 layers)."""
    inputs = dict(inputs)
    labels = inputs.pop("labels")[:, 1:]
    inputs.pop("last", None)
    hidden = model.model(**inputs).last_hidden_state[:, :-1]
    where = labels != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[where]), labels[where])


@torch.no_grad()
def quick_accuracy(
    model: LlavaForConditionalGeneration, processor: LlavaProcessor, samples: Sequence[Sample], batch: int = 16
) -> dict[str, float]:
    """Accuracy of the greedy first answer token, per task (teacher-forced prompt, one forward pass)."""
    model.eval()
    tokenizer = processor.tokenizer
    hits: dict[str, list[bool]] = {}
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        inputs = encode(processor, chunk, with_answers=False)
        last = inputs.pop("last")
        inputs.pop("labels")
        hidden = model.model(**inputs).last_hidden_state[torch.arange(len(chunk)), last]
        logits = model.lm_head(hidden)
        for sample, token in zip(chunk, logits.argmax(-1).tolist(), strict=False):
            expected = tokenizer(sample.answer, add_special_tokens=False)["input_ids"][0]
            hits.setdefault(sample.task, []).append(token == expected)
    model.train()
    result = {task: float(np.mean(values)) for task, values in sorted(hits.items())}
    counts = [value for task, value in result.items() if task.startswith("count/")]
    result["count_mean"] = float(np.mean(counts))
    return result


def train_stage(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    groups: list[dict],
    stage: int,
    steps: int,
    stream: Iterator[Sample],
    config: TrainConfig,
    quick: list[Sample],
    log: Callable[[dict], None],
    clock: float,
    deadline: float = math.inf,
) -> int:
    """``steps`` AdamW steps on the answer-only loss, over the parameter ``groups`` (each with its ``lr``).
    With LoRA, ``model`` is the wrapped model itself: peft injects the adapters into its modules. Stops
    after the step that ends past ``deadline`` (a ``time.time()`` value), with a last quick check. Returns the steps taken."""
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    base = [group["lr"] for group in optimizer.param_groups]
    params = [p for group in groups for p in group["params"]]
    model.train()
    taken = 0
    for step in range(steps):
        factor = lr_factor(step, steps, config.warmup)
        for group, lr in zip(optimizer.param_groups, base, strict=False):
            group["lr"] = lr * factor
        loss = answer_loss(model, encode(processor, [next(stream) for _ in range(config.batch_size)], with_answers=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        record = {
            "stage": stage,
            "step": step + 1,
            "loss": round(loss.item(), 4),
            "lr": base[0] * factor,
            "elapsed": round(time.time() - clock, 1),
        }
        last = step + 1 == steps or time.time() > deadline
        if (step + 1) % config.eval_every == 0 or last:
            record["quick"] = quick_accuracy(model, processor, quick)
            record["elapsed_after_eval"] = round(time.time() - clock, 1)
        log(record)
        taken = step + 1
        if last:
            break
    return taken


def train(config: TrainConfig, out: Path) -> None:
    """Build the model, train both stages, save the stage-1 projector and the final model + processor."""
    torch.set_num_threads(config.threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    log_file = (out / "train_log.jsonl").open("w")

    def log(record: dict) -> None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        print(json.dumps(record), flush=True)

    model, processor = base_model(config)
    sessions = read_sessions(Path(config.init)) if config.init else []
    continued = load_parts(model, Path(config.init), trainable=True) if config.init else None
    fresh = [1000 + config.data_round] if config.data_round else []
    model.requires_grad_(False)
    projector = model.model.multi_modal_projector
    projector.requires_grad_(True)
    quick = quick_split(config.seed, config.eval_docs)
    stream = sample_stream(np.random.default_rng([config.seed, 1, *fresh]), parse_mix(config.stage1_mix))
    clock = time.time()
    log({"stage": 1, "step": 0, "quick": quick_accuracy(model, processor, quick), "elapsed": 0.0})
    clock = time.time()
    stage1_steps = train_stage(
        model,
        processor,
        [{"params": list(projector.parameters()), "lr": config.stage1_lr}],
        1,
        config.stage1_steps,
        stream,
        config,
        quick,
        log,
        clock,
    )
    save_file({name: p.detach().contiguous() for name, p in projector.state_dict().items()}, str(out / "stage1_projector.safetensors"))

    torch.manual_seed(config.seed + 1)
    if continued is not None:
        peft_model = continued  # the parts' adapters (their rank and modules), trained further
    else:
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=0.0,
            target_modules=LORA_TARGETS.format(modules="|".join(config.lora_modules.split(","))),
        )
        peft_model = get_peft_model(model, lora)
    for name, parameter in peft_model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    projector.requires_grad_(True)
    adapters = [p for name, p in peft_model.named_parameters() if "lora_" in name]
    groups = [{"params": adapters, "lr": config.stage2_lr}, {"params": list(projector.parameters()), "lr": config.stage2_projector_lr}]
    stream = sample_stream(np.random.default_rng([config.seed, 1, 2, *fresh]), parse_mix(config.stage2_mix))
    deadline = clock + 60 * config.time_budget
    stage2_steps = train_stage(model, processor, groups, 2, config.stage2_steps, stream, config, quick, log, clock, deadline)
    seconds = round(time.time() - clock, 1)
    log({"done": True, "train_seconds": seconds})
    log_file.close()
    steps = {name: taken for name, taken in (("stage1", stage1_steps), ("stage2", stage2_steps)) if taken}
    session = {"config": session_config(config), "train_seconds": seconds, "steps": steps}
    save_parts(out / "parts", peft_model, [*sessions, session])
    assembled, processor = smol.assemble(out / "parts", Path(config.organism))
    assembled.save_pretrained(out)
    processor.save_pretrained(out)


def parse_args() -> tuple[TrainConfig, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, required=True, help="folder for the log, the stage-1 projector and the final model")
    args = vars(parser.parse_args())
    out = args.pop("out")
    return TrainConfig(**args), out


if __name__ == "__main__":
    train(*parse_args())
