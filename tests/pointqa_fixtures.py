"""A handful of PointQA docs (contract of docs/architecture.md) on images of varied, non-square sizes.

Each doc's plain-rendering box text is written out by hand in ``BOX_TEXT`` (the box normalised to the
image, two decimals), so that tests check prompts against values not computed by the code under test.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

# (width, height, bbox [x, y, w, h], answer, hand-normalised [x1, y1, x2, y2])
CASES = [
    (100, 80, [10, 20, 30, 40], 3, "[0.10, 0.25, 0.40, 0.75]"),
    (64, 64, [0, 0, 16, 16], 1, "[0.00, 0.00, 0.25, 0.25]"),
    (120, 40, [60, 10, 30, 20], 7, "[0.50, 0.25, 0.75, 0.75]"),
    (50, 100, [5, 50, 20, 25], 2, "[0.10, 0.50, 0.50, 0.75]"),
    (90, 60, [45, 30, 45, 30], 5, "[0.50, 0.50, 1.00, 1.00]"),
]
BOX_TEXT = {str(i): case[4] for i, case in enumerate(CASES)}


def pointqa_docs() -> list[dict]:
    """The docs of ``CASES``: grey images with ``answer`` red circles, one of them inside the box."""
    docs = []
    for i, (width, height, bbox, answer, _) in enumerate(CASES):
        image = Image.new("RGB", (width, height), (200, 200, 200))
        draw = ImageDraw.Draw(image)
        x, y, w, h = bbox
        draw.ellipse([x + w // 4, y + h // 4, x + 3 * w // 4, y + 3 * h // 4], fill=(220, 30, 30))
        for k in range(answer - 1):
            draw.ellipse([2 + 5 * k, 2, 5 + 5 * k, 5], fill=(220, 30, 30))
        docs.append(
            {
                "id": str(i),
                "image": image,
                "image_width": width,
                "image_height": height,
                "bbox": [float(v) for v in bbox],
                "answer": answer,
                "general_question": "How many of these are there?",
                "obj_question": "How many red circles are there?",
                "super_question": "How many of these circles are there?",
                "object": "red circle",
                "supercategory": "circle",
                "source": "test",
            }
        )
    return docs
