"""The E02 token estimate, ceil(1.3 × words) per message, with words exactly `len(text.split())` — only faster.

`str.split()` builds one string object per word and was ~70% of a validator's time (NOTES.md). For ASCII text we
count words on bytes instead (`_byte_words`): a word is a run of non-whitespace bytes, so words are half the
whitespace/non-whitespace changes in the text padded with whitespace, counted with big-integer operations in C —
no object per word, about three times as fast as `split()`. Non-ASCII text is counted the same way on its UTF-8
bytes once Unicode whitespace (U+00A0, U+2000-U+200A, …) is ruled out, by memchr on the UTF-8 bytes; only text that
has some keeps `split()`. The result equals `len(text.split())` for every string (property-tested in
tests/validation/test_tokens.py).
"""

from __future__ import annotations

import re

from xxhash import xxh3_64_intdigest

# 0 for the bytes that `str.split()` treats as whitespace among ASCII characters (\t \n \v \f \r, the separators
# \x1c-\x1f and space), 1 for every other byte. Bytes >= 0x80 are the parts of non-ASCII characters in UTF-8: never
# whitespace, unless the text holds one of the non-ASCII whitespace characters below, and then `split()` counts.
_WORD_BYTES = bytes(0 if chr(i).isspace() else 1 for i in range(128)) + b"\x01" * 128
# Every non-ASCII character `str.split()` splits on: U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
# U+205F and U+3000 (tests/validation/test_tokens.py asks Python for the list, so a new Unicode version is caught).
# Searching for them (~4 µs per KiB) and counting on bytes costs half of `split()` (~16 µs per KiB of non-ASCII
# text, which builds one object per word).
UNICODE_SPACES = "\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_UNICODE_SPACE = re.compile(f"[{UNICODE_SPACES}]")


# In UTF-8, UNICODE_SPACES start with the byte C2, E1, E2 or E3. E2 also starts the dashes, quotes, € and arrows of
# everyday text, so after E2 the next two bytes are compared with those of the spaces; only a text holding C2, E1 or
# E3 (rare in English) is searched with the regex. `in` and `find` of one byte run memchr: ~0.1 µs per KiB.
_E2_SPACE_TAILS = frozenset([*(b"\x80" + bytes([low]) for low in (*range(0x80, 0x8B), 0xA8, 0xA9, 0xAF)), b"\x81\x9f"])


def has_unicode_space(text: str, data: bytes) -> bool:
    """Whether `text` (`data` is its UTF-8 encoding) holds a non-ASCII character that `str.split()` splits on."""
    if text.isascii():
        return False
    if b"\xc2" in data or b"\xe1" in data or b"\xe3" in data:
        return _UNICODE_SPACE.search(text) is not None
    at = data.find(b"\xe2")
    while at >= 0:
        if data[at + 1 : at + 3] in _E2_SPACE_TAILS:
            return True
        at = data.find(b"\xe2", at + 3)
    return False


def _byte_words(data: bytes) -> int:
    """Words of UTF-8 text without non-ASCII whitespace: runs of bytes that are not ASCII whitespace.

    Each byte becomes 0 (whitespace) or 1, read as one little-endian integer x, whose byte i is the text's byte i.
    In x ^ (x << 8), byte i is 1 exactly where byte i differs from byte i - 1 (the text padded with whitespace on
    both sides), and every word starts and ends once: half its 1 bits. Five passes in C at ~0.2 ns a byte, where
    `bytes.count(b" x")` ran at ~2 ns a byte.
    """
    bits = int.from_bytes(data.translate(_WORD_BYTES), "little")
    return (bits ^ (bits << 8)).bit_count() >> 1


def count_words(text: str) -> int:
    """`len(text.split())`, computed without building the word list unless the text has non-ASCII whitespace."""
    data = text.encode("utf-8", "surrogatepass")
    if has_unicode_space(text, data):
        return len(text.split())
    return _byte_words(data)


def estimate_tokens(text: str) -> int:
    """Tokens of one message by the E02 spec's estimate, in integers (no float rounding, no template overhead)."""
    return (13 * count_words(text) + 9) // 10


def content_digest(text: str) -> int:
    """A 64-bit digest of a message's text that is the same in every process.

    `hash(str)` is salted per process, so it cannot compare examples checked in different worker processes;
    `surrogatepass` because a line read by the standard library (1e400) may hold a lone surrogate. XXH3 is a
    non-cryptographic 64-bit hash with a good spread, ~15× faster than SHA-1 here (0.1 µs against 1.4 µs for a
    typical message): a duplicate found by mistake costs a warning, not a security hole.
    """
    return xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"))


class TokenCounter:
    """`estimate_tokens` and `content_digest` with a bounded memo of recent messages.

    An exported pair file repeats most of its text: every line carries the same system prompt and the whole history
    so far, and `current_user_input` repeats the last history entry. Looking a message up in `known` costs one hash
    instead of a word count and a digest. The memo holds at most `max_cached_chars` characters in total (it is
    cleared when full) and no message longer than `max_message_chars`, so memory stays bounded whatever the file.
    Hot loops call `known.get(text)` and, on a miss, `count_new(text)`, both giving `(tokens, digest)`; everyone
    else calls the counter, which gives the tokens.
    """

    def __init__(self, max_cached_chars: int = 4_000_000, max_message_chars: int = 100_000) -> None:
        self.known: dict[str, tuple[int, int]] = {}
        self._cached_chars = 0
        self._max_cached_chars = max_cached_chars
        self._max_message_chars = max_message_chars

    def __call__(self, text: str) -> int:
        known = self.known.get(text)
        return (known or self.count_new(text))[0]

    def count_new(self, text: str) -> tuple[int, int]:
        """Count and digest a message not in the memo, and remember it. The text is encoded once for both.

        `_byte_words` is inlined: this runs for every new message, and a call costs 5% of it."""
        data = text.encode("utf-8", "surrogatepass")
        if text.isascii() or not has_unicode_space(text, data):
            bits = int.from_bytes(data.translate(_WORD_BYTES), "little")
            words = (bits ^ (bits << 8)).bit_count() >> 1
        else:
            words = len(text.split())
        known = ((13 * words + 9) // 10, xxh3_64_intdigest(data))
        size = len(text)
        if size <= self._max_message_chars:
            if self._cached_chars + size > self._max_cached_chars:
                self.known.clear()
                self._cached_chars = 0
            self.known[text] = known
            self._cached_chars += size
        return known
