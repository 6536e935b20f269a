"""PointQA prompts and answer parsing (shared by the tasks, the generator and the organism)."""

from __future__ import annotations

from PIL import Image

from visheads_eval.data.pointqa import bbox_to_text, draw_box, parse_count, question_text

DOC = {
    "general_question": "How many of these are there?",
    "obj_question": "How many red circles are there?",
    "super_question": "How many of these circles are there?",
    "bbox": [10, 20, 30, 40],
    "image_width": 100,
    "image_height": 80,
}


def test_first_number_is_parsed_from_digits_and_words() -> None:
    assert parse_count(" 3.") == 3
    assert parse_count("There are Three of them, not 4") == 3
    assert parse_count("7") == 7
    assert parse_count("no idea") is None
    assert parse_count("") is None


def test_plain_rendering_puts_the_normalised_box_in_the_text() -> None:
    assert bbox_to_text([10, 20, 30, 40], 100, 80) == "[0.10, 0.25, 0.40, 0.75]"
    assert question_text(DOC, "general", "plain") == (
        "How many of these are there? The object is at [0.10, 0.25, 0.40, 0.75].\nAnswer with a single number."
    )
    assert question_text(DOC, "object", "visual", post_prompt="") == "How many red circles are there?"


def test_visual_rendering_outlines_exactly_the_box() -> None:
    image = Image.new("RGB", (100, 80), (255, 255, 255))
    boxed = draw_box(image, [10, 20, 30, 40], colour="red", width=1)
    assert boxed.getpixel((10, 20)) == (255, 0, 0) and boxed.getpixel((39, 59)) == (255, 0, 0)
    assert boxed.getpixel((25, 40)) == (255, 255, 255) and boxed.getpixel((40, 60)) == (255, 255, 255)
    assert image.getpixel((10, 20)) == (255, 255, 255), "the original image is left untouched"
