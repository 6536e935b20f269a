"""The offline word-level tokenizer: digits and punctuation marks are tokens of their own."""

from __future__ import annotations

from fixtures.tiny.tokenizer import build_tokenizer


def test_box_text_splits_into_known_tokens() -> None:
    tokenizer = build_tokenizer(["the", "object", "is", "at"])
    ids = tokenizer("The object is at [0.10, 0.25, 0.40, 0.75].\nAnswer")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:6] == ["<s>", "the", "object", "is", "at", "["]
    assert tokens[6:10] == ["0", ".", "1", "0"]
    # "]." is two tokens, not one unknown word; "answer" is not in this vocabulary.
    assert tokens[-3:] == ["]", ".", "<unk>"]
    assert tokens.count("<unk>") == 1
