"""PointQA prompts and answer parsing (shared by the tasks, the generator and the organism)."""

from __future__ import annotations

import pytest
from PIL import Image

from visheads_eval.data.pointqa import PRESETS, bbox_to_text, draw_box, parse_count, question_text

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


GREY = (200, 200, 200)


def _blend(over: tuple[int, int, int], under: tuple[int, int, int], alpha: int) -> tuple[int, ...]:
    """Source-over compositing of ``over`` at ``alpha``/255 onto an opaque ``under``, worked out by hand."""
    return tuple(round((o * alpha + u * (255 - alpha)) / 255) for o, u in zip(over, under, strict=True))


@pytest.mark.parametrize(("size", "width"), [((800, 600), 7), ((768, 1024), 9)])
def test_paper_preset_blends_a_box_that_grows_with_the_image_and_includes_its_far_edge(size: tuple[int, int], width: int) -> None:
    """ViP-LLaVA's 'constant' rectangle: red at alpha 128, max(int(3 * max(w, h) / 336), 1) pixels wide,
    drawn from x to x + w inclusive (7 px at 800 px, 9 px at 1,024)."""
    image = Image.new("RGB", size, GREY)
    x, y, w, h = 100, 150, 200, 100
    boxed = draw_box(image, [x, y, w, h], PRESETS["paper"])
    blended = _blend((255, 0, 0), GREY, 128)
    middle = y + h // 2

    def close(pixel: tuple[int, int], expected: tuple[int, ...]) -> bool:
        return all(abs(a - b) <= 1 for a, b in zip(boxed.getpixel(pixel), expected, strict=True))

    assert close((x, middle), blended) and close((x + width - 1, middle), blended), "left line, `width` pixels"
    assert boxed.getpixel((x + width, middle)) == GREY and boxed.getpixel((x - 1, middle)) == GREY
    assert close((x + w, middle), blended) and close((x + w - width + 1, middle), blended), "right line ends at x + w"
    assert boxed.getpixel((x + w - width, middle)) == GREY and boxed.getpixel((x + w + 1, middle)) == GREY
    assert close((x + w // 2, y + h), blended) and boxed.getpixel((x + w // 2, y + h + 1)) == GREY, "bottom line at y + h"
    assert image.getpixel((x, middle)) == GREY, "the original image is left untouched"


def test_visheads_preset_draws_an_opaque_3_pixel_box_inside_the_last_pixel() -> None:
    image = Image.new("RGB", (800, 600), GREY)
    boxed = draw_box(image, [100, 150, 200, 100], PRESETS["visheads"])
    assert boxed.getpixel((100, 200)) == boxed.getpixel((102, 200)) == boxed.getpixel((299, 200)) == (255, 0, 0)
    assert boxed.getpixel((103, 200)) == GREY and boxed.getpixel((300, 200)) == GREY


def test_paper_preset_words_the_prompts_as_vip_llava_does() -> None:
    paper = PRESETS["paper"]
    assert question_text(DOC, "general", "visual", paper) == (
        "How many of these are there? The exemplary object is within the rectangle.\nAnswer the question using a single word or phrase."
    )
    assert (
        question_text(DOC, "object", "plain", paper)
        == "How many red circles are there?\nAnswer the question using a single word or phrase."
    )
    assert question_text(DOC, "super", "visual") == "How many of these circles are there?\nAnswer with a single number."
