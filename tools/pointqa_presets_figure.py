"""The picture of the two PointQA rendering presets in docs/tasks.md side by side (docs/pointqa_presets.png).

    python tools/pointqa_presets_figure.py

One doc of the shipped synthetic test split, its image scaled up (nearest neighbour) to 672 pixels wide,
about the size of a Visual Genome image, so that the paper preset's line width rule shows as it would
there; each panel is titled with the prompt that preset gives for the visual general question.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from visheads_eval.data.pointqa import PRESETS, draw_box, question_text  # noqa: E402
from visheads_eval.resources import tasks_dir  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "pointqa_presets.png"
DOC_INDEX = 3
WIDTH = 672


def main() -> None:
    docs = datasets.load_dataset("parquet", data_files=str(tasks_dir() / "pointqa" / "data" / "test.parquet"), split="train")
    doc = docs[DOC_INDEX]
    scale = WIDTH / doc["image_width"]
    image = doc["image"].convert("RGB").resize((WIDTH, round(doc["image_height"] * scale)), Image.NEAREST)
    bbox = [value * scale for value in doc["bbox"]]
    scaled = {**doc, "image_width": image.width, "image_height": image.height, "bbox": bbox}
    figure, axes = plt.subplots(1, len(PRESETS), figsize=(5.2 * len(PRESETS), 5.6))
    for axis, preset in zip(axes, PRESETS.values(), strict=True):
        axis.imshow(draw_box(image, bbox, preset))
        line = f"{preset.line_width(image.size)} px, alpha {preset.box_alpha}"
        axis.set_title(f"{preset.name} ({line})\n{question_text(scaled, 'general', 'visual', preset)}", fontsize=8)
        axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
