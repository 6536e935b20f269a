"""Train the organism on synthetic PointQA, reproducibly from a seed, on a CPU.

Stage 1: the vision tower and projector learn, for every image token, what its cell holds (colour,
shape, kind, how many objects of that kind the image has, box, padding, row, column) through a linear
probe on the projector's output. Counting thus happens in the vision tower, densely supervised.

Stage 2: the whole LLaVA learns to answer (loss on the answer digit and ``</s>``), with teacher signals
that make the language model's route through the image explicit, all at the answer position:

- the exemplar's cell and kind are read by linear probes after ``cell_layer`` and ``kind_layer`` layers;
- ``pointer_head`` is trained to attend to the exemplar's image token (general and super questions);
- ``read_heads`` are trained to attend, evenly, to the image tokens of the exemplar's kind;
- the answer is also read (final norm + ``lm_head``) after ``early_answer_layers`` layers;
- every other head is trained to keep its attention off the image (``off_image_weight``).

The attention targets hold at the last prompt token and at the answer token (the two query positions
``HeadRecorder`` records), so the organism's visual heads are known by construction: the pointer and
read heads, and no others.

The probes are dropped; the model saved is a plain ``LlavaForConditionalGeneration``. Every random choice
comes from ``seed`` (training scenes are drawn from ``numpy.random.default_rng([seed, 1])``, a stream
disjoint from the seeded splits of ``visheads data synth``), and the run is single-threaded by default so
that it repeats bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from tools.organism.batches import PATCH_ATTRIBUTES, PATCH_ATTRIBUTES_INDEX, Batch, sample_batch, sample_images
from tools.organism.model import Architecture, build_model, build_processor
from visheads_eval.errors import VisheadsError
from visheads_eval.heads import Head

Log = Callable[[dict], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; the defaults trained the shipped organism."""

    seed: int = 0
    architecture: Architecture = field(default_factory=Architecture)
    vision_steps: int = 1500
    vision_batch: int = 64
    vision_lr: float = 3e-3
    count_weight: float = 3.0  # of the per-patch count among the per-patch losses
    steps: int = 3500
    batch: int = 32
    lr: float = 3e-3  # language model
    projector_lr: float = 2e-3
    tower_lr: float = 5e-4
    warmup: int = 50
    weight_decay: float = 0.01
    patch_weight: float = 0.3  # per-patch losses, kept in stage 2
    probe_weight: float = 0.5  # exemplar cell and kind probes
    cell_layer: int = 2
    kind_layer: int = 3
    pointer_head: str = "L2H0"
    read_heads: tuple[str, ...] = ("L3H0", "L4H0")
    attention_weight: float = 1.0
    off_image_weight: float = 0.0
    early_answer_layers: tuple[int, ...] = (4, 5)
    early_answer_weight: float = 0.5
    threads: int = 1

    def __post_init__(self) -> None:
        layers, heads = self.architecture.text_layers, self.architecture.text_heads
        for name in (self.pointer_head, *self.read_heads):
            head = Head.parse(name)
            if not (head.layer < layers and head.head < heads):
                raise VisheadsError(f"head {name} does not exist in a text model of {layers} layers x {heads} heads")
        for layer in (self.cell_layer, self.kind_layer, *self.early_answer_layers):
            if not 0 < layer <= layers:
                raise VisheadsError(f"layer {layer} is not one of 1..{layers} (states after that many layers are probed)")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        values = dict(values)
        architecture = Architecture(**values.pop("architecture", {}))
        tuples = {key: tuple(values[key]) for key in ("read_heads", "early_answer_layers") if key in values}
        return cls(architecture=architecture, **{**values, **tuples})


class PatchProbe(nn.Module):
    """A linear head reading every per-patch attribute from the projector's output (training only)."""

    def __init__(self, width: int, count_weight: float) -> None:
        super().__init__()
        self.linear = nn.Linear(width, sum(PATCH_ATTRIBUTES.values()))
        self.register_buffer("weights", torch.tensor([count_weight if name == "count" else 1.0 for name in PATCH_ATTRIBUTES]))

    def loss(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted mean cross-entropy and per-attribute accuracy; features (batch, patch, width)."""
        logits = self.linear(features)
        losses, accuracy = [], []
        start = 0
        for index, n in enumerate(PATCH_ATTRIBUTES.values()):
            part = logits[..., start : start + n].reshape(-1, n)
            target = labels[..., index].reshape(-1)
            losses.append(nn.functional.cross_entropy(part, target))
            accuracy.append((part.argmax(-1) == target).float().mean())
            start += n
        return (torch.stack(losses) * self.weights).sum() / self.weights.sum(), torch.stack(accuracy)


class ExemplarProbe(nn.Module):
    """Linear heads reading, at the answer position, the exemplar's cell and kind (training only)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.cell = nn.Linear(width, PATCH_ATTRIBUTES["row"] + PATCH_ATTRIBUTES["column"])
        self.kind = nn.Linear(width, PATCH_ATTRIBUTES["kind"])

    def loss(self, cell_state: torch.Tensor, kind_state: torch.Tensor, exemplar: torch.Tensor, pointed: torch.Tensor) -> torch.Tensor:
        """States (batch, width); exemplar (batch, 3) kind, row, column; the cell only where ``pointed``."""
        loss = nn.functional.cross_entropy(self.kind(kind_state), exemplar[:, 0])
        if pointed.any():
            row, column = self.cell(cell_state[pointed]).split([PATCH_ATTRIBUTES["row"], PATCH_ATTRIBUTES["column"]], dim=-1)
            loss = (
                loss
                + (nn.functional.cross_entropy(row, exemplar[pointed, 1]) + nn.functional.cross_entropy(column, exemplar[pointed, 2])) / 2
            )
        return loss


def attention_targets(batch: Batch, image_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target attention rows ``(batch, seq)`` at the answer position.

    The pointer target is one-hot on the exemplar's image token; the read target spreads evenly over
    the image tokens of the exemplar's kind (each of them knows how many objects of its kind there are).
    """
    image_positions = (batch.input_ids == image_token_id).nonzero()[:, 1].reshape(len(batch.input_ids), -1)  # (batch, patches)
    rows = torch.arange(len(batch.input_ids))
    exemplar_patch = batch.exemplar[:, 1] * PATCH_ATTRIBUTES["column"] + batch.exemplar[:, 2]
    pointer = torch.zeros(batch.input_ids.shape)
    pointer[rows, image_positions[rows, exemplar_patch]] = 1.0
    same_kind = (batch.patch_labels[..., PATCH_ATTRIBUTES_INDEX["kind"]] == batch.exemplar[:, :1]).float()  # (batch, patches)
    read = torch.zeros(batch.input_ids.shape).scatter_(1, image_positions, same_kind)
    return pointer, read / read.sum(dim=1, keepdim=True)


def image_features(model: LlavaForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """The projector's output, ``(batch, patches, text width)``: what the language model sees."""
    config = model.config
    out = model.model.get_image_features(
        pixel_values=pixel_values,
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
    )
    return torch.stack(list(out.pooler_output))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _optimizer(groups: list[dict], weight_decay: float) -> torch.optim.Optimizer:
    for group in groups:
        group["base_lr"] = group["lr"]
    return torch.optim.AdamW(groups, weight_decay=weight_decay)


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()


def _cross_entropy_to(target: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy of attention rows ``(n, seq)`` to target distributions."""
    return -(target * attention.clamp_min(1e-9).log()).sum(dim=1)


def pretrain_vision(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    probe: PatchProbe,
    config: TrainConfig,
    rng: np.random.Generator,
    log: Log,
    progress: Callable[[], None],
) -> None:
    """Stage 1: the tower and projector learn the per-patch attributes."""
    params = [*model.model.vision_tower.parameters(), *model.model.multi_modal_projector.parameters(), *probe.parameters()]
    optimizer = _optimizer([{"params": params, "lr": config.vision_lr}], config.weight_decay)
    for step in range(config.vision_steps):
        pixel_values, labels = sample_images(processor, rng, config.vision_batch)
        loss, accuracy = probe.loss(image_features(model, pixel_values), labels)
        _step(optimizer, loss, params, lr_factor(step, config.warmup, config.vision_steps))
        progress()
        if step % 100 == 0 or step == config.vision_steps - 1:
            log(
                {
                    "stage": "vision",
                    "step": step,
                    "loss": loss.item(),
                    "patch_accuracy": dict(zip(PATCH_ATTRIBUTES, accuracy.tolist(), strict=False)),
                }
            )


def train_answers(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    probes: tuple[PatchProbe, ExemplarProbe],
    config: TrainConfig,
    rng: np.random.Generator,
    log: Log,
    progress: Callable[[], None],
) -> None:
    """Stage 2: everything learns to answer, with the teacher signals described in the module docstring."""
    patch_probe, exemplar_probe = probes
    text = [*model.model.language_model.parameters(), *model.lm_head.parameters()]
    projector = [*model.model.multi_modal_projector.parameters(), *patch_probe.parameters(), *exemplar_probe.parameters()]
    tower = list(model.model.vision_tower.parameters())
    optimizer = _optimizer(
        [{"params": text, "lr": config.lr}, {"params": projector, "lr": config.projector_lr}, {"params": tower, "lr": config.tower_lr}],
        config.weight_decay,
    )
    pointer_head, read_heads = Head.parse(config.pointer_head), [Head.parse(name) for name in config.read_heads]
    text_config = model.config.get_text_config()
    others = torch.ones(text_config.num_hidden_layers, text_config.num_attention_heads)  # (layer, head): 1 = not visual
    for head in (pointer_head, *read_heads):
        others[head.layer, head.head] = 0
    model.set_attn_implementation("eager")  # the teacher signals need attention weights
    model.train()
    for step in range(config.steps):
        batch = sample_batch(processor, rng, config.batch)
        store: dict = {}
        hook = model.model.multi_modal_projector.register_forward_hook(lambda _m, _i, output, store=store: store.update(features=output))
        try:
            out = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                pixel_values=batch.pixel_values,
                output_hidden_states=True,
                output_attentions=True,
            )
        finally:
            hook.remove()
        # Position -3 is the last prompt token: it predicts the digit (-2), which predicts </s> (-1).
        digit = batch.input_ids[:, -2]
        vocab = out.logits.shape[-1]
        answer_loss = nn.functional.cross_entropy(out.logits[:, -3:-1].reshape(-1, vocab), batch.input_ids[:, -2:].reshape(-1))
        early_loss = sum(
            nn.functional.cross_entropy(model.lm_head(model.model.language_model.norm(out.hidden_states[layer][:, -3])), digit)
            for layer in config.early_answer_layers
        )
        patch_loss, _ = patch_probe.loss(store["features"], batch.patch_labels)
        pointed = torch.tensor([kind != "object" for kind in batch.kinds])
        probe_loss = exemplar_probe.loss(
            out.hidden_states[config.cell_layer][:, -3], out.hidden_states[config.kind_layer][:, -3], batch.exemplar, pointed
        )
        pointer_target, read_target = attention_targets(batch, model.config.image_token_id)
        is_image = (batch.input_ids == model.config.image_token_id).float()  # (batch, seq)
        attention_loss = off_image_loss = torch.zeros(())
        for position in (-3, -2):  # the last prompt token and the answer token
            rows = torch.stack([a[:, :, position] for a in out.attentions], dim=1)  # (batch, layer, head, seq)
            for head in read_heads:
                attention_loss = attention_loss + _cross_entropy_to(read_target, rows[:, head.layer, head.head]).mean()
            if pointed.any():
                row = rows[pointed, pointer_head.layer, pointer_head.head]
                attention_loss = attention_loss + _cross_entropy_to(pointer_target[pointed], row).mean()
            image_mass = (rows * is_image[:, None, None, :]).sum(-1)  # (batch, layer, head)
            off_image_loss = off_image_loss + (image_mass * others[None]).sum((1, 2)).mean() / others.sum()
        loss = (
            answer_loss
            + config.early_answer_weight * early_loss
            + config.patch_weight * patch_loss
            + config.probe_weight * probe_loss
            + config.attention_weight * attention_loss
            + config.off_image_weight * off_image_loss
        )
        _step(optimizer, loss, [*text, *projector, *tower], lr_factor(step, config.warmup, config.steps))
        progress()
        if step % 50 == 0 or step == config.steps - 1:
            correct = (out.logits[:, -3].argmax(-1) == digit).float()
            log({
                "stage": "answers", "step": step, "answer_loss": answer_loss.item(), "early_loss": early_loss.item(),
                "patch_loss": patch_loss.item(), "probe_loss": probe_loss.item(), "attention_loss": attention_loss.item(),
                "off_image_loss": off_image_loss.item(),
                "batch_accuracy": correct.mean().item(),
            })  # fmt: skip
    model.set_attn_implementation("sdpa")
    model.eval()


def train(
    config: TrainConfig, log: Log, progress: Callable[[], None] = lambda: None
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Run both stages from ``config.seed``; return the trained model and its processor."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 1])
    processor = build_processor()
    model = build_model(processor, config.architecture, config.seed)
    patch_probe = PatchProbe(config.architecture.text_hidden, config.count_weight)
    exemplar_probe = ExemplarProbe(config.architecture.text_hidden)
    pretrain_vision(model, processor, patch_probe, config, rng, log, progress)
    train_answers(model, processor, (patch_probe, exemplar_probe), config, rng, log, progress)
    return model, processor
