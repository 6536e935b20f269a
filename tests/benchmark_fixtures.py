"""Tiny copies of MMBench, POPE, SEED-Bench and Q-Bench in each benchmark's Hugging Face format.

A few rows per benchmark with the columns and feature types of the published parquet files
(lmms-lab/MMBench en dev, lmms-lab-encoder/POPE, lmms-lab-encoder/SEED-Bench, q-future/Q-Bench-HF
dev), written with ``datasets`` so that images are ``Image()`` features. Option texts are words of the
tiny models' vocabulary, so that a random model's answers sometimes match one.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage

COLOURS = ("red", "green", "blue", "yellow")


def _image(index: int, size: tuple[int, int] = (48, 40)) -> PILImage.Image:
    return PILImage.new("RGB", size, (40 * index % 256, 90, 200 - 20 * index))


def _write(rows: dict[str, list], features: Features, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return path


def write_pope(path: Path) -> Path:
    answers = ["yes", "no", "yes", "no", "no", "yes"]
    features = Features(
        {
            "id": Value("string"),
            "question_id": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "image_source": Value("string"),
            "image": Image(),
            "category": Value("string"),
        }
    )
    rows = {
        "id": [str(i) for i in range(len(answers))],
        "question_id": [str(i + 1) for i in range(len(answers))],
        "question": [f"Is there a {COLOURS[i % 4]} circle in the image?" for i in range(len(answers))],
        "answer": answers,
        "image_source": [f"COCO_val2014_{i:012d}" for i in range(len(answers))],
        "image": [_image(i) for i in range(len(answers))],
        "category": ["adversarial", "popular", "random", "adversarial", "popular", "random"],
    }
    return _write(rows, features, path)


def write_mmbench(path: Path) -> Path:
    n = 5
    features = Features(
        {
            "index": Value("int64"),
            "question": Value("string"),
            "hint": Value("string"),
            "A": Value("string"),
            "B": Value("string"),
            "C": Value("string"),
            "D": Value("string"),
            "answer": Value("string"),
            "category": Value("string"),
            "image": Image(),
            "source": Value("string"),
            "L2-category": Value("string"),
            "comment": Value("string"),
            "split": Value("string"),
        }
    )
    rows = {
        "index": list(range(n)),
        "question": ["What color is the circle?"] * n,
        "hint": [None, "The circle is large.", None, None, "Look at the shape."],
        "A": ["red"] * n,
        "B": ["green"] * n,
        "C": ["blue", "blue", None, "blue", "blue"],
        "D": ["yellow", "yellow", None, "yellow", None],
        "answer": ["A", "B", "A", "C", "B"],
        "category": ["color", "color", "shape", "shape", "color"],
        "image": [_image(i) for i in range(n)],
        "source": ["synthetic"] * n,
        "L2-category": ["attribute", "attribute", "shape", "shape", "attribute"],
        "comment": [None] * n,
        "split": ["dev"] * n,
    }
    return _write(rows, features, path)


def write_seedbench(path: Path) -> Path:
    """Five image questions and one video question (several frames), which the image task leaves out."""
    data_types = ["image", "image", "video", "image", "image", "image"]
    features = Features(
        {
            "answer": Value("string"),
            "choice_a": Value("string"),
            "choice_b": Value("string"),
            "choice_c": Value("string"),
            "choice_d": Value("string"),
            "data_id": Value("string"),
            "data_type": Value("string"),
            "question": Value("string"),
            "question_id": Value("string"),
            "question_type_id": Value("int16"),
            "image": List(Image()),
            "segment": List(Value("int64")),
        }
    )
    rows = {
        "answer": ["A", "B", "C", "D", "A", "C"],
        "choice_a": ["red"] * 6,
        "choice_b": ["green"] * 6,
        "choice_c": ["blue"] * 6,
        "choice_d": ["yellow"] * 6,
        "data_id": [f"{i}.jpg" for i in range(6)],
        "data_type": data_types,
        "question": ["What color is the object?"] * 6,
        "question_id": [str(100 + i) for i in range(6)],
        "question_type_id": [1, 2, 10, 3, 4, 5],
        "image": [[_image(i), _image(i + 1)] if kind == "video" else [_image(i)] for i, kind in enumerate(data_types)],
        "segment": [[0, 8] if kind == "video" else None for kind in data_types],
    }
    return _write(rows, features, path)


def write_qbench(path: Path) -> Path:
    n = 6
    features = Features(
        {
            "id": Value("int64"),
            "image": Image(),
            "question": Value("string"),
            "option0": Value("string"),
            "option1": Value("string"),
            "option2": Value("string"),
            "option3": Value("string"),
            "question_type": Value("int64"),
            "question_concern": Value("int64"),
            "correct_choice": Value("string"),
        }
    )
    rows = {
        "id": list(range(n)),
        "image": [_image(i, (40, 48)) for i in range(n)],
        "question": [
            "Is this image blurry?",
            "How is the color?",
            "What is the main shape?",
            "Is it red?",
            "How clear is it?",
            "What color?",
        ],
        "option0": ["yes", "red", "circle", "yes", "red", "red"],
        "option1": ["no", "green", "square", "no", "green", "green"],
        "option2": ["N/A", "blue", "triangle", "N/A", "blue", "blue"],
        "option3": ["N/A", "N/A", "N/A", "N/A", "yellow", "yellow"],
        "question_type": [0, 1, 2, 0, 1, 2],
        "question_concern": [0, 1, 2, 3, 0, 1],
        "correct_choice": ["A", "B", "C", "B", "D", "A"],
    }
    return _write(rows, features, path)


WRITERS = {"mmbench": write_mmbench, "pope": write_pope, "seedbench": write_seedbench, "qbench": write_qbench}
