"""Write synthetic PointQA splits to a folder: ``<split>.parquet`` files and one ``manifest.json``.

The manifest says how each split was made (seed, command, generator version, sha256 of the file) and
what is in it (doc count, answer histogram, layouts), and lists the vocabulary and layout constants.
Writing a split into a folder that already has a manifest from this generator adds the split to it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from visheads_eval.analysis.output import write_text_atomic
from visheads_eval.data import synth
from visheads_eval.errors import VisheadsError
from visheads_eval.weights import file_sha256

MANIFEST = "manifest.json"
GENERATOR = "visheads_eval.data.synth"


def describe_generator() -> dict:
    """The generator's version, vocabulary and layout constants, as the manifest records them."""
    return {
        "generator": GENERATOR,
        "generator_version": synth.GENERATOR_VERSION,
        "source": synth.SOURCE,
        "vocabulary": {
            "shapes": list(synth.SHAPES),
            "supercategories": {shape: synth.plural(shape) for shape in synth.SHAPES},
            "colours": {name: list(rgb) for name, rgb in synth.COLOURS.items()},
            "questions": dict(synth.QUESTIONS),
            "words": synth.vocabulary(),
        },
        "layout": {
            "grid": synth.GRID,
            "layouts_columns_rows": [list(layout) for layout in synth.LAYOUTS],
            "cell_sizes": list(synth.CELL_SIZES),
            "object_fraction": list(synth.OBJECT_FRACTION),
            "box_margin": synth.BOX_MARGIN,
            "distractor_counts": list(synth.DISTRACTOR_COUNTS),
            "background_levels": list(synth.BACKGROUND_LEVELS),
        },
    }


def read_manifest(out_dir: Path) -> dict | None:
    """The folder's manifest, ``None`` if it has none; an error if it is not this generator's."""
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise VisheadsError(f"{path} is not valid JSON ({error.msg}); move it away or write to another folder") from error
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        raise VisheadsError(f"{path} was not written by `visheads data synth`; write to another folder")
    return manifest


def write_splits(out_dir: Path, seed: int, splits: dict[str, int], command: str, overwrite: bool = False) -> dict:
    """Generate ``splits`` (name -> doc count) under ``seed`` into ``out_dir``; return the manifest."""
    for split, n_docs in splits.items():
        synth.check_split(split, n_docs)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out_dir) or {}
    for split in splits:
        if (out_dir / f"{split}.parquet").exists() and not overwrite:
            raise VisheadsError(f"{out_dir / f'{split}.parquet'} exists; pass --overwrite to replace it")
    recorded = dict(manifest.get("splits", {}))
    for split, n_docs in splits.items():
        path = out_dir / f"{split}.parquet"
        answers: Counter[int] = Counter()
        layouts: Counter[str] = Counter()

        def counted(docs: Iterator[dict], answers: Counter[int] = answers, layouts: Counter[str] = layouts) -> Iterator[dict]:
            for doc in docs:
                answers[doc["answer"]] += 1
                layouts[f"{doc['image_width']}x{doc['image_height']}"] += 1
                yield doc

        from visheads_eval.data.pointqa_parquet import write_pointqa_parquet  # pyarrow, datasets: only when writing

        docs = tqdm(synth.generate_docs(seed, split, n_docs), total=n_docs, desc=f"synth {split}", unit="doc")
        write_pointqa_parquet(counted(docs), path)
        recorded[split] = {
            "file": path.name,
            "seed": seed,
            "n_docs": n_docs,
            "first_index": 0,
            "sha256": file_sha256(path),
            "answer_histogram": {str(a): answers[a] for a in sorted(answers)},
            "image_sizes": dict(sorted(layouts.items())),
            "command": command,
        }
        # Recorded after every split, so that a failure later on leaves no file without its entry.
        manifest = {**describe_generator(), "splits": dict(sorted(recorded.items()))}
        write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest
