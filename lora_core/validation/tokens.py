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
    """`estimate_tokens` and `content_digest` of messages, with a bounded memo of the token counts of recent ones.

    An exported pair file repeats most of its text: every line carries the same system prompt and the whole history
    so far. The statistics compare each message with the previous example's first (stats.ExampleCounter), which
    finds the repeats of an export in order; the memo finds those further apart (a shuffled file) without counting
    their words again. It is keyed by the message's 64-bit digest, which every message needs anyway (for
    `duplicate_example`), so a lookup costs no hash of the text (hashing the str was ~4% of a worker's time) and the
    memo holds no text: at most `max_entries` ints (cleared when full), whatever the messages' lengths. Two texts
    sharing a digest would share a token count: probability ~n²/2^64, as for `duplicate_example`.
    """

    def __init__(self, max_entries: int = 65_536) -> None:
        self.known: dict[int, int] = {}  # digest → tokens
        self._max_entries = max_entries

    def __call__(self, text: str) -> int:
        return self.count(text)[0]

    def count(self, text: str) -> tuple[int, int]:
        """(tokens, digest) of a message. The text is encoded once for both.

        `_byte_words` is inlined: this runs for every message not equal to the previous example's, and a call costs
        5% of it."""
        data = text.encode("utf-8", "surrogatepass")
        digest = xxh3_64_intdigest(data)
        tokens = self.known.get(digest)
        if tokens is None:
            if text.isascii() or not has_unicode_space(text, data):
                bits = int.from_bytes(data.translate(_WORD_BYTES), "little")
                words = (bits ^ (bits << 8)).bit_count() >> 1
            else:
                words = len(text.split())
            tokens = (13 * words + 9) // 10
            if len(self.known) >= self._max_entries:
                self.known.clear()
            self.known[digest] = tokens
        return tokens, digest
