"""The E02 token estimate, ceil(1.3 × words) per message, with words exactly `len(text.split())` — only faster.

`str.split()` builds one string object per word and was ~70% of a validator's time (NOTES.md). For text without
Unicode whitespace we count words on bytes instead: translate every whitespace byte to b" " and every other byte to
b"x", then a word starts at each b" x" (plus one if the text starts with a word). Three C passes, no objects per
word. The result equals `len(text.split())` for every string (property-tested in tests/validation/test_tokens.py).
"""

from __future__ import annotations

import re

# Bytes that `str.split()` treats as whitespace among ASCII characters: \t \n \v \f \r, the separators \x1c-\x1f and
# space. In UTF-8 every other byte (including the lead and continuation bytes of non-ASCII characters) is part of a
# word, so the same table serves UTF-8 text once Unicode whitespace has been ruled out.
_WORD_TABLE = bytes(0x20 if chr(i).isspace() else 0x78 for i in range(128)) + b"x" * 128

# UTF-8 of the non-ASCII characters that `str.split()` splits on (U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028,
# U+2029, U+202F, U+205F, U+3000). Text containing any of them takes the exact slow path.
_UNICODE_SPACE = re.compile(rb"\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80")


def count_words(text: str) -> int:
    """`len(text.split())`, computed without building the word list."""
    if text.isascii():
        data = text.encode("ascii")
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: only reachable from callers other than the validator
            return len(text.split())
        if _UNICODE_SPACE.search(data):
            return len(text.split())
    marks = data.translate(_WORD_TABLE)
    return marks.count(b" x") + (marks[:1] == b"x")


def tokens_for_words(words: int) -> int:
    """ceil(words × 1.3) in integers, so no float rounding can move a boundary."""
    return (13 * words + 9) // 10


def estimate_tokens(text: str) -> int:
    """Tokens of one message by the E02 spec's estimate (no chat-template overhead)."""
    return (13 * count_words(text) + 9) // 10


class TokenCounter:
    """`estimate_tokens` with a bounded memo of recent messages.

    An exported pair file repeats most of its text: every line carries the same system prompt and the whole history
    so far, and `current_user_input` repeats the last history entry. Looking a message up costs one hash (which the
    duplicate check reuses, as str caches its hash) instead of a word count. The memo holds at most
    `max_cached_chars` characters in total (it is cleared when full), and keeps no message longer than
    `max_message_chars`, so memory stays bounded whatever the file.
    """

    def __init__(self, max_cached_chars: int = 4_000_000, max_message_chars: int = 100_000) -> None:
        self._cache: dict[str, int] = {}
        self._cached_chars = 0
        self._max_cached_chars = max_cached_chars
        self._max_message_chars = max_message_chars

    def __call__(self, text: str) -> int:
        tokens = self._cache.get(text)
        if tokens is None:
            tokens = estimate_tokens(text)
            size = len(text)
            if size <= self._max_message_chars:
                if self._cached_chars + size > self._max_cached_chars:
                    self._cache.clear()
                    self._cached_chars = 0
                self._cache[text] = tokens
                self._cached_chars += size
        return tokens
