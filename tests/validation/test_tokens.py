"""The token estimate: words are exactly `len(text.split())`, tokens ceil(1.3 × words) per message (FORMAT.md)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_core.validation.tokens import (
    _UNICODE_SPACE,
    TokenCounter,
    content_digest,
    count_words,
    estimate_tokens,
    has_unicode_space,
)

# Every character `str.split()` treats as whitespace, ASCII and not, mixed with word characters of all widths.
WHITESPACE = [chr(c) for c in range(0x110000) if chr(c).isspace()]
TRICKY = [*WHITESPACE, "a", "Z", "0", "é", "—", "“", "€", "中", "🙂", "\x00", "\x7f", "\u200b", "\ufeff"]


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from(TRICKY), max_size=40))
def test_word_count_equals_str_split_on_whitespace_heavy_text(text: str) -> None:
    assert count_words(text) == len(text.split())


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200))
def test_word_count_equals_str_split_on_any_ascii_text(text: str) -> None:
    assert count_words(text) == len(text.split())


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=200))
def test_word_count_equals_str_split_on_any_text(text: str) -> None:
    assert count_words(text) == len(text.split())


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from([*TRICKY, "\u2014", "\u201c", "\u20ac", "\u2192", "\u2060", "\u3001", "\xe9"])))
def test_the_byte_level_search_for_unicode_spaces_is_exact(text: str) -> None:
    """E2 starts dashes, quotes, € and arrows as well as the spaces U+2000-U+205F; only the spaces count."""
    expected = any(char.isspace() and ord(char) > 127 for char in text)
    assert has_unicode_space(text, text.encode("utf-8", "surrogatepass")) is expected


def test_the_list_of_unicode_spaces_is_pythons() -> None:
    """The validator's hard-coded non-ASCII whitespace is exactly what this Python's `str.split()` splits on."""
    non_ascii = "".join(char for char in WHITESPACE if ord(char) > 127)
    assert _UNICODE_SPACE.findall(non_ascii + "a\u200b\ufeff") == list(non_ascii)


def test_ascii_separators_that_are_easy_to_forget_split_words() -> None:
    # \x1c-\x1f are whitespace to str.split(); bytes.split() would not split on them.
    assert count_words("a\x1cb\x1dc\x1ed\x1fe") == 5
    assert count_words("a\x0bb\x0cc") == 3


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("one", 2),  # ceil(1.3) = 2
        ("one two three", 4),  # ceil(3.9) = 4
        (" ".join(["w"] * 10), 13),  # exactly 13: no float rounding up to 14
        (" ".join(["w"] * 100), 130),
        ("non\u00a0breaking space", 4),  # U+00A0 splits words too: 3 words
    ],
)
def test_estimate_is_ceil_of_1_3_words_in_integers(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_token_counter_memo_gives_the_same_answers_and_stays_bounded() -> None:
    counter = TokenCounter(max_entries=10)
    texts = [f"message number {i} " * (i % 4 + 1) for i in range(50)] + ["x " * 500, "caf\u00e9\u00a0au lait"]
    for _ in range(2):
        for text in texts:
            assert counter.count(text) == (estimate_tokens(text), content_digest(text))
            assert counter(text) == estimate_tokens(text)  # a memo hit gives the same
            assert 1 <= len(counter.known) <= 10
    assert set(counter.known.values()) <= {estimate_tokens(text) for text in texts}  # ints only: no text is held
