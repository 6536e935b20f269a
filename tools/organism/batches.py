"""Training batches for the organism, built from synthetic scenes exactly as the PointQA tasks prompt.

Each sample is one scene asked one question (general, object or super) in one rendering (plain or
visual), tokenised with the organism's own chat template and image processor, followed by the answer
digit and ``</s>``. Besides the answer, every image token gets labels for what its cell holds (colour,
shape, box, padding, row, column): the targets of the vision tower's auxiliary loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import LlavaProcessor

from visheads_eval.data import synth
from visheads_eval.data.pointqa import QUESTION_KINDS, VARIANTS, draw_box, question_text

# Per-patch attributes: name -> number of classes. Class 0 of colour, shape, kind and count is "no object".
PATCH_ATTRIBUTES = {
    "colour": len(synth.COLOURS) + 1,
    "shape": len(synth.SHAPES) + 1,
    "kind": len(synth.COLOURS) * len(synth.SHAPES) + 1,
    "count": 8,  # objects in the image of this patch's kind (0: no object)
    "boxed": 2,
    "padding": 2,
    "row": synth.GRID,
    "column": synth.GRID,
}
PATCH_ATTRIBUTES_INDEX = {name: index for index, name in enumerate(PATCH_ATTRIBUTES)}


def chat_prompt(processor: LlavaProcessor, text: str) -> str:
    """The prompt lmms-eval's chat adapter builds for one image and ``text``."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def doc_image(doc: dict, variant: str) -> Image.Image:
    """The image the ``variant`` rendering shows: the box drawn on it for ``visual``."""
    return draw_box(doc["image"], doc["bbox"]) if variant == "visual" else doc["image"].convert("RGB")


def patch_labels(scene: synth.Scene, boxed: bool) -> torch.Tensor:
    """``(GRID * GRID, len(PATCH_ATTRIBUTES))`` labels of the image tokens, in raster order."""
    grid = synth.GRID
    index = PATCH_ATTRIBUTES_INDEX
    offset_col, offset_row = (grid - scene.columns) // 2, (grid - scene.rows) // 2
    labels = torch.zeros(grid, grid, len(PATCH_ATTRIBUTES), dtype=torch.long)  # (row, column, attribute)
    labels[..., index["padding"]] = 1
    labels[offset_row : offset_row + scene.rows, offset_col : offset_col + scene.columns, index["padding"]] = 0
    labels[..., index["row"]] = torch.arange(grid)[:, None]
    labels[..., index["column"]] = torch.arange(grid)[None, :]
    colours, shapes = list(synth.COLOURS), list(synth.SHAPES)
    for number, obj in enumerate(scene.objects):
        row, column = divmod(scene.token_index(obj), grid)
        colour, shape = colours.index(obj.colour), shapes.index(obj.shape)
        labels[row, column, index["colour"]] = colour + 1
        labels[row, column, index["shape"]] = shape + 1
        labels[row, column, index["kind"]] = shape * len(colours) + colour + 1
        labels[row, column, index["count"]] = sum(other.kind == obj.kind for other in scene.objects)
        labels[row, column, index["boxed"]] = int(boxed and number == scene.exemplar)
    return labels.reshape(grid * grid, len(PATCH_ATTRIBUTES))


@dataclass
class Batch:
    """Samples ready for the model, with the answer digit and ``</s>`` as the last two tokens."""

    input_ids: torch.Tensor  # (batch, seq), left-padded prompt + digit + </s>
    attention_mask: torch.Tensor  # (batch, seq)
    pixel_values: torch.Tensor  # (batch, 3, IMAGE_SIZE, IMAGE_SIZE)
    patch_labels: torch.Tensor  # (batch, GRID * GRID, attribute)
    exemplar: torch.Tensor  # (batch, 3): the exemplar's kind, row and column (as in patch_labels)
    kinds: list[str]  # question kind of each sample


def encode(processor: LlavaProcessor, scenes: list[synth.Scene], kinds: list[str], variants: list[str]) -> Batch:
    """Tokenise ``scenes[i]`` asked ``kinds[i]`` in ``variants[i]``, with the answer appended."""
    tokenizer = processor.tokenizer
    docs = [synth.scene_doc(scene, "") for scene in scenes]
    prompts = [chat_prompt(processor, question_text(doc, kind, variant)) for doc, kind, variant in zip(docs, kinds, variants, strict=False)]
    images = [doc_image(doc, variant) for doc, variant in zip(docs, variants, strict=False)]
    encoded = processor(images=images, text=prompts, padding=True, return_tensors="pt")
    digit_ids = torch.tensor(tokenizer.convert_tokens_to_ids([str(scene.answer) for scene in scenes]))
    tail = torch.stack([digit_ids, torch.full_like(digit_ids, tokenizer.eos_token_id)], dim=1)  # (batch, 2)
    patches = torch.stack([patch_labels(scene, variant == "visual") for scene, variant in zip(scenes, variants, strict=False)])
    where = [PATCH_ATTRIBUTES_INDEX[name] for name in ("kind", "row", "column")]
    exemplar = torch.stack([labels[scene.token_index(scene.target)] for labels, scene in zip(patches, scenes, strict=False)])[:, where]
    return Batch(
        input_ids=torch.cat([encoded["input_ids"], tail], dim=1),
        attention_mask=torch.cat([encoded["attention_mask"], torch.ones_like(tail)], dim=1),
        pixel_values=encoded["pixel_values"],
        patch_labels=patches,
        exemplar=exemplar,
        kinds=list(kinds),
    )


def sample_images(processor: LlavaProcessor, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images (half with the box drawn) and their patch labels, for the vision tower alone."""
    scenes = [synth.draw_scene(rng, int(rng.integers(1, 8))) for _ in range(size)]
    boxed = [bool(rng.integers(2)) for _ in range(size)]
    docs = [synth.scene_doc(scene, "") for scene in scenes]
    images = [doc_image(doc, "visual" if box else "plain") for doc, box in zip(docs, boxed, strict=False)]
    pixel_values = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return pixel_values, torch.stack([patch_labels(scene, box) for scene, box in zip(scenes, boxed, strict=False)])


def sample_batch(processor: LlavaProcessor, rng: np.random.Generator, size: int) -> Batch:
    """A random training batch: answers uniform in 1..7, each sample one question in one rendering."""
    scenes = [synth.draw_scene(rng, int(rng.integers(1, 8))) for _ in range(size)]
    kinds = [QUESTION_KINDS[rng.integers(len(QUESTION_KINDS))] for _ in range(size)]
    variants = [VARIANTS[rng.integers(len(VARIANTS))] for _ in range(size)]
    return encode(processor, scenes, kinds, variants)
