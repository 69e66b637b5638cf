"""The text of a line around an issue's column or byte, with a caret under it, for people reading at a terminal.

A report names a position ("column 45", "byte 12") but holds no line text (FORMAT.md), and a line of a dataset is
often thousands of characters long: `invalid_json` at column 3,871 is hard to find by hand. The CLI's summary and
the detail page (service.issue_excerpts) therefore read the lines they need once more, through the validator's own
reader (so gzip, a BOM and line numbers are exactly as in the report), keep a short window of each and stop after
the last one they need.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lora_core.validation.limits import ValidationLimits
from lora_core.validation.reader import LineReader
from lora_core.validation.report import PendingIssues

# Characters (bytes, for a byte offset) shown before and after the marked position.
BEFORE = 50
AFTER = 30
ELLIPSIS = "…"
# How a character that is invisible or would move the caret or the terminal (a tab, a CR, a no-break space, a
# zero-width space, other control and format characters) is shown: as its escape, which names it.
ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n"}


@dataclass(frozen=True)
class Excerpt:
    """A one-line window of a line; the marked character is `text[at]` (or the end), `caret` display columns from
    the start (where a terminal shows a caret under it)."""

    text: str
    at: int
    caret: int

    def marked(self, mark: str, before: int | None = None) -> str:
        """The text with `mark` just before the marked character, for where a caret line cannot go (a table cell,
        which shows the start of its text: `before` keeps at most that many characters ahead of the mark)."""
        if before is None or self.at <= before:
            head = self.text[: self.at]
        else:
            head = ELLIPSIS + self.text[self.at - before : self.at]
        return head + mark + self.text[self.at :]


def excerpt_positions(report: Mapping[str, Any]) -> dict[int, list[tuple[str, int]]]:
    """line → the positions the report's listed errors and warnings mark: ("column", characters from 1) or
    ("offset", bytes from 0)."""
    wanted: dict[int, list[tuple[str, int]]] = {}
    for issue in [*(report.get("errors") or []), *(report.get("warnings") or [])]:
        if issue.get("line") is None:
            continue
        for kind in ("column", "offset"):
            if issue.get(kind) is not None:
                wanted.setdefault(issue["line"], []).append((kind, issue[kind]))
    return wanted


def read_excerpts(
    chunks: Iterable[bytes], wanted: Mapping[int, Sequence[tuple[str, int]]], limits: ValidationLimits
) -> dict[tuple[int, str, int], Excerpt]:
    """(line, kind, position) → its Excerpt, for the positions in `wanted` (`excerpt_positions`).

    Reads `chunks` (the file's bytes, as the validator read them) only up to the last wanted line; memory holds one
    line at a time (at most the line limit) and the windows.
    """
    found: dict[tuple[int, str, int], Excerpt] = {}
    if not wanted:
        return found
    last = max(wanted)
    for number, line in LineReader(chunks, limits, PendingIssues()):
        if number > last:
            break
        if line is None or number not in wanted:
            continue
        for kind, position in wanted[number]:
            excerpt = column_excerpt(line, position) if kind == "column" else byte_excerpt(line, position)
            found[number, kind, position] = excerpt
    return found


def column_excerpt(line: bytes, column: int) -> Excerpt:
    """The window around character `column` (from 1) of a line; a column one past the end marks the end."""
    text = line.removesuffix(b"\r").decode("utf-8", "replace")  # the CR of a CRLF line end is not shown
    at = min(max(column - 1, 0), len(text))
    start = max(0, at - BEFORE)
    end = min(len(text), at + AFTER)
    return _excerpt(text[start:at], text[at:end], start > 0, end < len(text))


def byte_excerpt(line: bytes, offset: int) -> Excerpt:
    """The window around byte `offset` of a line, bytes that are not UTF-8 shown as \\xNN; both edges of the window
    fall between characters, so that no character cut in two looks like more bad bytes."""
    line = line.removesuffix(b"\r")
    at = min(max(offset, 0), len(line))
    start = max(0, at - BEFORE)
    while start > 0 and _continues(line, start):
        start -= 1
    end = min(len(line), at + AFTER)
    while at < end < len(line) and _continues(line, end):
        end -= 1
    before = line[start:at].decode("utf-8", "backslashreplace")
    after = line[at:end].decode("utf-8", "backslashreplace")
    return _excerpt(before, after, start > 0, end < len(line))


def _continues(line: bytes, index: int) -> bool:
    """Whether byte `index` of UTF-8 text continues a character (10xxxxxx) rather than starting one."""
    return 0x80 <= line[index] < 0xC0


def _excerpt(before: str, after: str, cut_before: bool, cut_after: bool) -> Excerpt:
    shown_before = (ELLIPSIS if cut_before else "") + _visible(before)
    text = shown_before + _visible(after) + (ELLIPSIS if cut_after else "")
    return Excerpt(text, len(shown_before), display_width(shown_before))


def _visible(text: str) -> str:
    return "".join(char if char == " " or unicodedata.category(char)[0] not in "CZ" else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    return ESCAPES.get(char) or (f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")


def display_width(text: str) -> int:
    """Terminal columns `text` takes: two for wide East Asian characters, none for the marks drawn on the character
    before them (accents, Thai vowel signs, variation selectors: Unicode categories Mn and Me)."""
    width = 0
    for char in text:
        if unicodedata.category(char) in ("Mn", "Me"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width
