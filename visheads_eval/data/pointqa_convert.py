"""Converting the public PointQA (LookTwice-QA) files and a Visual Genome image folder into PointQA docs.

Two layouts are read (``layout="auto"`` tells them apart):

- ``looktwice``: Mani et al. 2020's ``looktwiceqa_dataset.json``, ``{image_id: [qa, ...]}`` (a plain
  list of qa is read too). Each qa holds ``general_question``, ``obj_question``, ``super_question``
  (any capitalisation), the answer ``ans`` (or ``answer``), the exemplary object's ``bbox``
  (Visual Genome's ``{x, y, w, h, ...}`` or ``[x, y, w, h]``, pixels), its ``obj_type`` and, if
  present, its supercategory (``super_type`` / ``supercategory``). The image is ``<id>.jpg``. The
  release splits by image: ``split_images`` (e.g. ``looktwiceqa_test_imgs.json``) keeps one split.
- ``vip``: ViP-LLaVA's ``pointQA_twice_test.json``, a list of ``{id, image, bboxes, answer,
  general_question, obj_question, super_question}`` with ``image`` relative to the image folder and
  ``bboxes`` one ``[x1, y1, x2, y2]`` box in pixels.

Images are looked up at the given relative path and then by file name in the folder and in Visual
Genome's ``VG_100K`` and ``VG_100K_2``. The original image bytes are embedded unchanged. Where an
entry names no object or supercategory they are read from its questions ("How many clocks ...",
"How many of these vehicles ..."), empty if the question has another form. An entry that cannot be
converted (missing or unreadable image, a malformed field, a repeated id) is skipped and reported
with its id and reason, or stops the conversion with ``strict=True``.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

import visheads_eval
from visheads_eval.analysis.output import staged_folder
from visheads_eval.data.pointqa import DEFAULT_PRESET, QUESTION_FIELDS, get_preset
from visheads_eval.data.pointqa_parquet import doc_problem, write_pointqa_parquet
from visheads_eval.data.task_folders import (
    POINTQA_DATA,
    copy_pointqa_tasks,
)
from visheads_eval.errors import VisheadsError, did_you_mean

LAYOUTS = ("looktwice", "vip")
SOURCES = {"looktwice": "looktwiceqa", "vip": "vipllava_pointqa_twice"}
VG_SUBFOLDERS = ("", "VG_100K", "VG_100K_2")
SKIPPED_FILE = "skipped.csv"
SUMMARY_FILE = "conversion.json"

_ANSWER_KEYS = ("ans", "answer")
_OBJECT_KEYS = ("obj_type", "object", "object_type")
_SUPERCATEGORY_KEYS = ("super_type", "supercategory", "super_category", "super_obj_type")
_OBJECT_IN_QUESTION = re.compile(r"^\s*how many (?!of these\b)([a-z][\w-]*)", re.IGNORECASE)
_SUPERCATEGORY_IN_QUESTION = re.compile(r"^\s*how many of these ([a-z][\w-]*)", re.IGNORECASE)


class EntryProblem(Exception):
    """Why one entry cannot be converted; ``kind`` groups the reasons in the summary."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    """One question as read from the source file, before its image is opened."""

    id: str
    image: str  # path relative to the image folder
    bbox: list[float]  # [x, y, w, h], pixels
    answer: int
    questions: dict[str, str]  # by doc field name
    object: str
    supercategory: str


@dataclass
class ConversionSummary:
    """What a conversion did: counts, every skipped entry, where the files went."""

    out: Path
    layout: str
    entries: int = 0
    converted: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (id, kind, reason)

    def line(self) -> str:
        """The one-line summary the command prints."""
        text = f"converted {self.converted} of {self.entries} entries ({self.layout}) into {self.out / POINTQA_DATA}"
        if self.skipped:
            kinds = collections.Counter(kind for _, kind, _ in self.skipped)
            listed = ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items()))
            text += f"; skipped {len(self.skipped)} ({listed}), listed in {self.out / SKIPPED_FILE}"
        return text


def _fields(raw: dict) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in raw.items()}


def _first(fields: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((fields[key] for key in keys if key in fields), None)


def _answer(value: Any) -> int:
    if value is None:
        raise EntryProblem("malformed entry", f"missing field '{_ANSWER_KEYS[-1]}' (or '{_ANSWER_KEYS[0]}')")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise EntryProblem("malformed entry", f"answer {value!r} is not a whole number")


def _questions(fields: dict[str, Any]) -> dict[str, str]:
    questions = {}
    for name in QUESTION_FIELDS.values():
        value = fields.get(name)
        if not isinstance(value, str) or not value.strip():
            raise EntryProblem("malformed entry", f"missing or empty field '{name}'")
        questions[name] = value.strip()
    return questions


def _named(fields: dict[str, Any], keys: tuple[str, ...], question: str, pattern: re.Pattern[str]) -> str:
    value = _first(fields, keys)
    if isinstance(value, str) and value.strip():
        return value.strip()
    match = pattern.match(question)
    return match.group(1).lower() if match else ""


def _looktwice_bbox(value: Any) -> list[float]:
    if isinstance(value, dict) and all(key in value for key in "xywh"):
        value = [value["x"], value["y"], value["w"], value["h"]]
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_number(v) for v in value):
        return [float(v) for v in value]
    raise EntryProblem("malformed entry", f"bbox {value!r} is neither {{x, y, w, h}} nor [x, y, w, h]")


def _vip_bbox(value: Any) -> list[float]:
    if not (isinstance(value, list) and len(value) == 1):
        raise EntryProblem("malformed entry", f"bboxes {value!r} is not a list of one [x1, y1, x2, y2] box")
    box = value[0]
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise EntryProblem("malformed entry", f"bboxes {value!r} is not a list of one [x1, y1, x2, y2] box")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise EntryProblem("malformed entry", f"box {list(box)!r} has x2 <= x1 or y2 <= y1")
    return [x1, y1, x2 - x1, y2 - y1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entry(entry_id: str, image: str, bbox: list[float], fields: dict[str, Any]) -> Entry:
    questions = _questions(fields)
    answer = _answer(_first(fields, _ANSWER_KEYS))
    return Entry(
        id=entry_id,
        image=image,
        bbox=bbox,
        answer=answer,
        questions=questions,
        object=_named(fields, _OBJECT_KEYS, questions["obj_question"], _OBJECT_IN_QUESTION),
        supercategory=_named(fields, _SUPERCATEGORY_KEYS, questions["super_question"], _SUPERCATEGORY_IN_QUESTION),
    )


def _looktwice_items(data: Any, split_images: set[str] | None) -> Iterator[tuple[str, Any]]:
    """(fallback image id, raw qa) in file order, keeping only ``split_images`` when given."""
    if isinstance(data, dict):
        for image_id, items in data.items():
            if split_images is None or str(image_id) in split_images:
                for item in items if isinstance(items, list) else [items]:
                    yield str(image_id), item
    else:
        for item in data:
            image_id = _first(_fields(item), ("id", "image_id")) if isinstance(item, dict) else None
            image_id = "" if image_id is None else str(image_id)
            if split_images is None or image_id in split_images:
                yield image_id, item


def read_entries(data: Any, layout: str, split_images: set[str] | None = None) -> Iterator[Entry | tuple[str, EntryProblem]]:
    """Entries of a loaded source file, or ``(id, problem)`` for those that cannot be read."""
    if layout == "vip":
        for index, raw in enumerate(data):
            entry_id = str(raw.get("id", f"#{index}")) if isinstance(raw, dict) else f"#{index}"
            try:
                if not isinstance(raw, dict):
                    raise EntryProblem("malformed entry", f"entry is a {type(raw).__name__}, not an object")
                fields = _fields(raw)
                if not isinstance(fields.get("image"), str):
                    raise EntryProblem("malformed entry", "missing field 'image'")
                yield _entry(entry_id, fields["image"], _vip_bbox(fields.get("bboxes")), fields)
            except EntryProblem as problem:
                yield entry_id, problem
        return
    per_image: collections.Counter[str] = collections.Counter()
    for index, (image_id, raw) in enumerate(_looktwice_items(data, split_images)):
        entry_id = f"{image_id}-{per_image[image_id]}" if image_id else f"#{index}"
        per_image[image_id] += 1
        try:
            if not isinstance(raw, dict):
                raise EntryProblem("malformed entry", f"entry is a {type(raw).__name__}, not an object")
            if not image_id:
                raise EntryProblem("malformed entry", "missing field 'id' (the Visual Genome image id)")
            fields = _fields(raw)
            if "bbox" not in fields:
                raise EntryProblem("malformed entry", "missing field 'bbox'")
            yield _entry(entry_id, f"{image_id}.jpg", _looktwice_bbox(fields["bbox"]), fields)
        except EntryProblem as problem:
            yield entry_id, problem


def detect_layout(data: Any) -> str:
    """``looktwice`` or ``vip``, from the shape of a loaded source file."""
    if isinstance(data, dict):
        return "looktwice"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        fields = _fields(data[0])
        if "bboxes" in fields and "image" in fields:
            return "vip"
        if "bbox" in fields:
            return "looktwice"
    raise VisheadsError(
        "cannot tell the layout of the source file (expected LookTwice-QA's {image_id: [qa, ...]} or ViP-LLaVA's "
        "list of {id, image, bboxes, ...}); pass --layout looktwice or --layout vip"
    )


def find_image(images: Path, relative: str) -> Path | None:
    """The image file for ``relative``: as given under ``images``, else by name in VG's folders."""
    direct = images / relative
    if direct.is_file():
        return direct
    name = Path(relative).name
    for sub in VG_SUBFOLDERS:
        candidate = images / sub / name
        if candidate.is_file():
            return candidate
    return None


def _doc(entry: Entry, images: Path, source: str) -> dict[str, Any]:
    path = find_image(images, entry.image)
    if path is None:
        looked = ", ".join(sub or "." for sub in VG_SUBFOLDERS)
        raise EntryProblem("missing image", f"image {entry.image} not found under {images} (looked in {looked})")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
    except Exception as error:  # PIL raises many types for broken files
        raise EntryProblem("unreadable image", f"cannot read image {path}: {error}") from error
    doc = {
        "id": entry.id,
        "image": data,
        "image_width": width,
        "image_height": height,
        "bbox": entry.bbox,
        "answer": entry.answer,
        **entry.questions,
        "object": entry.object,
        "supercategory": entry.supercategory,
        "source": source,
    }
    problem = doc_problem(doc)
    if problem is not None:
        raise EntryProblem("malformed entry", problem)
    return doc


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise VisheadsError(f"{what} {path} does not exist") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VisheadsError(f"{what} {path} is not valid JSON: {error}") from error


def _nothing_converted(source: Path, summary: ConversionSummary) -> str:
    if not summary.skipped:
        return f"{source} has no entries (for the selected split); nothing to convert"
    entry_id, _, reason = summary.skipped[0]
    return f"none of the {summary.entries} entries of {source} could be converted; the first, {entry_id}: {reason}"


def convert_pointqa(
    source: Path,
    images: Path,
    out: Path,
    layout: str = "auto",
    split_images: Path | None = None,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    preset: str = DEFAULT_PRESET,
) -> ConversionSummary:
    """Convert ``source`` with the images under ``images`` into a PointQA task folder ``out``.

    ``out`` receives ``data/test.parquet``, the six PointQA task YAMLs (pass it as ``--include_path``),
    ``skipped.csv`` (id, problem, reason of every skipped entry) and ``conversion.json``. The tasks draw
    the box and word the prompt as ``preset`` says (see :mod:`visheads_eval.data.pointqa`).
    """
    get_preset(preset)
    source, images = Path(source), Path(images)
    if not images.is_dir():
        raise VisheadsError(f"image folder {images} does not exist")
    if layout not in ("auto", *LAYOUTS):
        raise VisheadsError(f"unknown layout '{layout}'{did_you_mean(layout, LAYOUTS)}; use auto, {' or '.join(LAYOUTS)}")
    data = _load_json(source, "PointQA file")
    layout = detect_layout(data) if layout == "auto" else layout
    keep = None
    if split_images is not None:
        if layout != "looktwice":
            raise VisheadsError("--split-images applies to the looktwice layout; the vip file holds one split already")
        ids = _load_json(split_images, "split image list")
        if not isinstance(ids, list):
            raise VisheadsError(f"split image list {split_images} is not a JSON list of image ids")
        keep = {str(image_id) for image_id in ids}
    summary = ConversionSummary(out=Path(out).absolute(), layout=layout)
    seen: set[str] = set()

    def docs() -> Iterator[dict[str, Any]]:
        for item in tqdm(read_entries(data, layout, keep), desc="converting PointQA", unit="entry", disable=not progress):
            summary.entries += 1
            try:
                if isinstance(item, tuple):
                    raise item[1]
                if item.id in seen:
                    raise EntryProblem("duplicate id", f"id {item.id} appeared before; the first one was kept")
                doc = _doc(item, images, SOURCES[layout])
            except EntryProblem as problem:
                entry_id = item[0] if isinstance(item, tuple) else item.id
                if strict:
                    raise VisheadsError(f"entry {entry_id}: {problem.reason} (--strict stops at the first problem)") from problem
                summary.skipped.append((entry_id, problem.kind, problem.reason))
                continue
            seen.add(item.id)
            summary.converted += 1
            yield doc

    with staged_folder(summary.out, overwrite=overwrite) as folder:
        try:
            write_pointqa_parquet(docs(), folder / POINTQA_DATA)
        except VisheadsError:
            if summary.converted == 0 and not strict:
                raise VisheadsError(_nothing_converted(source, summary)) from None
            raise
        copy_pointqa_tasks(folder, preset)
        pd.DataFrame(summary.skipped, columns=["id", "problem", "reason"]).to_csv(folder / SKIPPED_FILE, index=False)
        report = {
            "source": str(source.absolute()),
            "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "layout": layout,
            "preset": preset,
            "images": str(images.absolute()),
            "split_images": str(Path(split_images).absolute()) if split_images else None,
            "entries": summary.entries,
            "converted": summary.converted,
            "skipped": len(summary.skipped),
            "skipped_by_problem": dict(collections.Counter(kind for _, kind, _ in summary.skipped)),
            "visheads_eval_version": visheads_eval.__version__,
        }
        (folder / SUMMARY_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return summary
