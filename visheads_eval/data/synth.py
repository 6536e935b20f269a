"""Synthetic PointQA: scenes of coloured shapes, rendered offline and deterministically from a seed.

A scene is a grid of square cells holding at most one object each (a shape in a colour). The answer is
the number of objects of the exemplary object's kind (shape *and* colour); the scene also holds objects
of the same shape in other colours and of the same colour in other shapes, so the pointer (the box) is
needed to answer the general and super questions. The supercategory of a kind is its shape:

- general: "How many of these are there?"
- object: "How many green circles are there?"
- super: "How many of these circles are there?"

Layout. The long side of every image is ``GRID`` cells and the short side an even number of cells, so a
LLaVA-1.5 processor that pads to a square (centred) and resizes to ``GRID`` patches per side puts each
cell on exactly one patch: the image token *is* the object. Cell sizes (pixels) and layouts vary, so
images come in several sizes and aspect ratios. Red is never an object colour, so the default box colour
of the visual rendering (``visheads_eval.data.pointqa.DEFAULT_BOX_COLOUR``) stays distinct.

Determinism. Doc ``i`` of split ``s`` under seed ``k`` is drawn from its own generator seeded with
``(k, hash(s), i)``: the same seed gives the same docs (and bytes), a split of ``n`` docs is a prefix of
a longer one, and different splits are independent. Answers cycle 1..7 with the doc index, so a split
is balanced to within one doc per answer (exactly when its size is a multiple of 7).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from visheads_eval.data.pointqa import ANSWERS
from visheads_eval.errors import VisheadsError

GENERATOR_VERSION = "1"
SOURCE = f"visheads-synth-v{GENERATOR_VERSION}"
GRID = 8  # cells along the long side of every image
LAYOUTS = ((8, 8), (8, 6), (6, 8))  # (columns, rows) of cells
CELL_SIZES = (14, 16, 20, 24, 28)  # pixels per cell side
SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {"green": (0, 150, 50), "blue": (40, 70, 230), "yellow": (235, 195, 0), "purple": (150, 40, 190)}
OBJECT_FRACTION = (0.55, 0.75)  # object side as a fraction of the cell side
BOX_MARGIN = 2  # pixels between an object and its bbox
BACKGROUND_LEVELS = (235, 255)  # grey level of the background, inclusive
DISTRACTOR_COUNTS = (1, 7)  # objects per distractor kind, inclusive
QUESTIONS = {
    "general": "How many of these are there?",
    "object": "How many {colour} {shapes} are there?",
    "super": "How many of these {shapes} are there?",
}


def plural(shape: str) -> str:
    return f"{shape}s"


def vocabulary() -> list[str]:
    """Every word the generated questions, objects and supercategories use, in a fixed order."""
    words: list[str] = []
    for text in (*QUESTIONS.values(), *COLOURS, *SHAPES, *map(plural, SHAPES)):
        for word in text.replace("?", " ").split():
            if not word.startswith("{") and word.lower() not in words:
                words.append(word.lower())
    return words


@dataclass(frozen=True)
class SynthObject:
    """One object: its kind, its cell ``(column, row)`` and its pixel extent ``(x, y, side)``."""

    shape: str
    colour: str
    cell: tuple[int, int]
    x: int
    y: int
    side: int

    @property
    def kind(self) -> tuple[str, str]:
        return (self.shape, self.colour)

    def bbox(self) -> list[float]:
        """``[x, y, w, h]`` in pixels: the object's extent with ``BOX_MARGIN`` on every side."""
        return [
            float(self.x - BOX_MARGIN),
            float(self.y - BOX_MARGIN),
            float(self.side + 2 * BOX_MARGIN),
            float(self.side + 2 * BOX_MARGIN),
        ]


@dataclass(frozen=True)
class Scene:
    """A synthetic PointQA scene: the grid, the objects and which of them is the exemplar."""

    columns: int
    rows: int
    cell_size: int
    background: int
    objects: tuple[SynthObject, ...]
    exemplar: int  # index into objects

    @property
    def width(self) -> int:
        return self.columns * self.cell_size

    @property
    def height(self) -> int:
        return self.rows * self.cell_size

    @property
    def target(self) -> SynthObject:
        return self.objects[self.exemplar]

    def token_index(self, obj: SynthObject, grid: int = GRID) -> int:
        """Raster index of ``obj``'s cell once the image is padded to a square of ``grid`` x ``grid`` cells."""
        column = obj.cell[0] + (grid - self.columns) // 2
        row = obj.cell[1] + (grid - self.rows) // 2
        return row * grid + column

    @property
    def answer(self) -> int:
        return sum(obj.kind == self.target.kind for obj in self.objects)


def split_key(split: str) -> int:
    """A stable 32-bit number for a split name (Python's ``hash`` of a string changes per process)."""
    return int.from_bytes(hashlib.sha256(split.encode("utf-8")).digest()[:4], "big")


def answer_for(index: int) -> int:
    """The answer of doc ``index``: answers cycle through 1..7."""
    return ANSWERS[index % len(ANSWERS)]


def make_scene(seed: int, split: str, index: int) -> Scene:
    """Scene ``index`` of ``split`` under ``seed``."""
    return draw_scene(np.random.default_rng([seed, split_key(split), index]), answer_for(index))


def draw_scene(rng: np.random.Generator, answer: int, distractor_counts: tuple[int, int] = DISTRACTOR_COUNTS) -> Scene:
    """Draw a scene whose answer is ``answer``; each distractor kind has ``distractor_counts`` objects (inclusive)."""
    columns, rows = LAYOUTS[rng.integers(len(LAYOUTS))]
    cell = int(CELL_SIZES[rng.integers(len(CELL_SIZES))])
    colours = list(COLOURS)
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = colours[rng.integers(len(colours))]
    other_shapes = [s for s in SHAPES if s != shape]
    other_colours = [c for c in colours if c != colour]
    # Same shape in another colour (the super question needs the pointer), same colour in another
    # shape (so does the general one), and half the time one kind that shares neither.
    distractors = [
        (shape, other_colours[rng.integers(len(other_colours))]),
        (other_shapes[rng.integers(len(other_shapes))], colour),
    ]
    if rng.random() < 0.5:
        distractors.append((other_shapes[rng.integers(len(other_shapes))], other_colours[rng.integers(len(other_colours))]))
    kinds = [(shape, colour)] * answer
    for kind in distractors:
        kinds += [kind] * int(rng.integers(distractor_counts[0], distractor_counts[1] + 1))
    cells = rng.permutation(columns * rows)[: len(kinds)]
    objects = []
    for (obj_shape, obj_colour), flat in zip(kinds, cells, strict=False):
        column, row = int(flat % columns), int(flat // columns)
        side = int(rng.integers(round(OBJECT_FRACTION[0] * cell), round(OBJECT_FRACTION[1] * cell) + 1))
        slack = cell - side - 2 * BOX_MARGIN  # room to move the object (and its box) inside the cell
        x = column * cell + BOX_MARGIN + int(rng.integers(0, slack + 1))
        y = row * cell + BOX_MARGIN + int(rng.integers(0, slack + 1))
        objects.append(SynthObject(obj_shape, obj_colour, (column, row), x, y, side))
    background = int(rng.integers(BACKGROUND_LEVELS[0], BACKGROUND_LEVELS[1] + 1))
    return Scene(columns, rows, cell, background, tuple(objects), exemplar=0)


def _outline(obj: SynthObject) -> list[tuple[float, float]]:
    """The corners of a triangle or diamond."""
    x0, y0, x1, y1 = obj.x, obj.y, obj.x + obj.side - 1, obj.y + obj.side - 1
    mid_x, mid_y = (x0 + x1) / 2, (y0 + y1) / 2
    if obj.shape == "triangle":
        return [(mid_x, y0), (x1, y1), (x0, y1)]
    if obj.shape == "diamond":
        return [(mid_x, y0), (x1, mid_y), (mid_x, y1), (x0, mid_y)]
    raise ValueError(f"a {obj.shape} has no polygon outline")


def render(scene: Scene) -> Image.Image:
    """The scene as an RGB image (no box: the visual rendering draws it when a doc is read)."""
    image = Image.new("RGB", (scene.width, scene.height), (scene.background,) * 3)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        fill = COLOURS[obj.colour]
        corners = [obj.x, obj.y, obj.x + obj.side - 1, obj.y + obj.side - 1]
        if obj.shape == "circle":
            draw.ellipse(corners, fill=fill)
        elif obj.shape == "square":
            draw.rectangle(corners, fill=fill)
        else:
            draw.polygon(_outline(obj), fill=fill)
    return image


def scene_doc(scene: Scene, doc_id: str) -> dict:
    """The PointQA doc of ``scene`` (fields as in docs/architecture.md, "PointQA docs")."""
    target = scene.target
    shapes = plural(target.shape)
    return {
        "id": doc_id,
        "image": render(scene),
        "image_width": scene.width,
        "image_height": scene.height,
        "bbox": target.bbox(),
        "answer": scene.answer,
        "general_question": QUESTIONS["general"],
        "obj_question": QUESTIONS["object"].format(colour=target.colour, shapes=shapes),
        "super_question": QUESTIONS["super"].format(shapes=shapes),
        "object": f"{target.colour} {target.shape}",
        "supercategory": target.shape,
        "source": SOURCE,
    }


def doc_id(seed: int, split: str, index: int) -> str:
    return f"synth-s{seed}-{split}-{index:06d}"


def generate_docs(seed: int, split: str, n_docs: int, start: int = 0) -> Iterator[dict]:
    """Docs ``start .. start + n_docs - 1`` of ``split`` under ``seed``."""
    check_split(split, n_docs)
    for index in range(start, start + n_docs):
        yield scene_doc(make_scene(seed, split, index), doc_id(seed, split, index))


def check_split(split: str, n_docs: int) -> None:
    if not split or not all(ch.isalnum() or ch in "_-" for ch in split):
        raise VisheadsError(f"split name '{split}' must be letters, digits, '_' or '-' (e.g. test, train)")
    if n_docs < 1:
        raise VisheadsError(f"split '{split}' asks for {n_docs} docs; give a positive number, e.g. {split}=210")
