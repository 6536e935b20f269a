"""A word-level tokenizer over a closed vocabulary, built offline.

Words are lower-cased, split on whitespace and punctuation, and digits and punctuation marks are
single tokens, so an answer such as "3" is exactly one token and "]." is two. Unknown words map to
``<unk>``.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
CHAT_WORDS = ("user", "assistant", ":", "a", "chat", "between", "and", "the")
DIGITS = tuple(str(d) for d in range(10))
PUNCTUATION = tuple(".,?!;'\"()[]-/")


def build_tokenizer(
    words: Iterable[str], *, image_token: str = "<image>", extra_special: Iterable[str] = (), named: dict[str, str] | None = None
) -> PreTrainedTokenizerFast:
    """Return a fast tokenizer whose vocabulary is the special tokens, digits, punctuation and ``words``.

    Token ids are assigned in a fixed order (specials, digits, punctuation, then words in first-seen
    order), so the same word list always gives the same ids. ``image_token`` is the placeholder the
    processor expands (``<image>`` for LLaVA, ``<|image_pad|>`` for Qwen-VL, ...); ``extra_special`` are a
    family's other markers (``<|vision_start|>``, ``<start_of_image>``, chat-turn tokens), each one token;
    ``named`` gives some of them the attribute names a family's processor reads (``boi_token``, ...).
    """
    extra = tuple(extra_special)
    specials = (*SPECIAL_TOKENS[:-1], image_token, *extra)
    vocab: dict[str, int] = {}
    for token in (*specials, *DIGITS, *PUNCTUATION, *CHAT_WORDS, *(w.lower() for w in words)):
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Whitespace(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    core.decoder = decoders.WordPiece(prefix="##")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": image_token, **(named or {})},
        padding_side="left",
    )
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra)})
    return tokenizer
