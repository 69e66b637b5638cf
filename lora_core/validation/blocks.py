"""The per-line stage: a block of consecutive lines → JSON → header/shape → record rules → block result.

Everything here depends on one line at a time, plus the file's shape, which the caller passes in as a hint (the
shape fixed before the block, as far as it knew). What needs every earlier line (`duplicate_id`,
`duplicate_example`, the cap on listed issues, the totals) is left to the merge in validator.py, which takes the
blocks in line order. Blocks can therefore be checked in worker processes (parallel.py) and the merged report is
the one a single pass gives; the in-process path runs the very same code, one block after another.
"""

from __future__ import annotations

import gc
import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from lora_core.validation.codes import KEPT_LINE_ISSUES, WARNING_CODES
from lora_core.validation.limits import ValidationLimits
from lora_core.validation.reader import over_limit
from lora_core.validation.rules import RecordRules, json_type, quoted
from lora_core.validation.stats import ExampleCounter, ExampleTotals
from lora_core.validation.tokens import TokenCounter

DEFAULT_FORMAT = "brightrun_lora_v4"
# The shapes each format accepts (FORMAT.md "Formats and line shapes"); the keys are settings.DATASET_FORMATS.
FORMAT_SHAPES: dict[str, tuple[str, ...]] = {
    "brightrun_lora_v4": ("pair", "conversation"),
    "brightrun_lora_v3": ("pair", "conversation"),
    "openai_chat": ("messages",),
}
# The format to suggest for a line of a shape the chosen format does not accept.
SHAPE_FORMAT = {"pair": "brightrun_lora_v4", "conversation": "brightrun_lora_v4", "messages": "openai_chat"}
SHAPE_WORDS = {
    "pair": "a BrightRun training pair (`target_response`, `current_user_input`, …)",
    "conversation": "a conversation with `turns`",
    "messages": "OpenAI chat (`messages`)",
}
PAIR_KEYS = frozenset({"target_response", "current_user_input", "conversation_history", "turn_number", "system_prompt"})

# A note in a block's issue stream, beside the issues themselves (tuples that start with their code, a str):
COUNT_NOTE = 2  # (COUNT_NOTE, code): the first issue of `code` in the block that was counted, not listed

# A shape hint: (shape, line that fixed it), or (None, 0) when no line has fixed the shape yet.
ShapeHint = tuple["str | None", int]
# A block to check: reader.RawBlock (first line number, whole lines as bytes, whether an over-long line follows)
# and the file's first non-blank line.
BlockJob = tuple[int, bytes, bool, "int | None"]


def size_words(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):,.1f} MiB"
    return f"{size:,} bytes"


# In a line the standard library parses, strings and the constants it accepts beyond JSON (NaN, Infinity).
# An unterminated string runs to the end of the text: a pattern that needed its closing quote would fail there and
# be tried again from every later quote (quadratic: 3 s for 32 KB of escaped quotes).
_STRING_OR_CONSTANT = re.compile(r'"(?:[^"\\]|\\.?)*(?:"|\Z)|-?Infinity|NaN')
# In a JSON string: an escaped surrogate pair, a lone surrogate escape (group 1), or another escape.
_ESCAPE = re.compile(
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)"
)


def _first_refusal(text: str, before: int) -> tuple[int, str | None] | None:
    """The first thing before character `before` of a line that the standard library parses (up to there) but JSON
    forbids, which orjson would have reported had a number too large for a double not stopped it first: (position,
    the constant) for NaN or Infinity, (position, None) for a lone surrogate escape."""
    # The whole text is scanned (a string cut at `before` would not match as one, and its inside would be read as
    # tokens); what starts at or past `before` does not count.
    for token in _STRING_OR_CONSTANT.finditer(text):
        if token.start() >= before:
            break
        if token[0][0] != '"':
            return token.start(), token[0]
        for escape in _ESCAPE.finditer(token[0]):
            if escape[1] is not None and token.start() + escape.start() < before:
                return token.start() + escape.start(), None
    return None


class BlockIssues:
    """A block's issues and notes, in the order a single pass would add them.

    Only the first `room` issues of each kind (errors, warnings) are listed: the report lists the first
    KEPT_LINE_ISSUES line issues of the file, and the caller passes how many of those are still free when the
    block is handed out (an upper bound of what the merge can take from it). The rest are counted in
    `dropped`, after a COUNT_NOTE at the first of each code, so that the counts keep the order codes first appear in.
    """

    def __init__(self, room: tuple[int, int] = (KEPT_LINE_ISSUES, KEPT_LINE_ISSUES)) -> None:
        self.stream: list[tuple[Any, ...]] = []
        # What the merge needs to raise `duplicate_id` and `duplicate_example`, flat, three items per note: where
        # in `stream` the note falls (len(stream) then), its line, and a pair's id or an example's digest. Flat
        # lists of ints and strs are cheap to send back from a worker, and the merge checks them in bulk.
        self.id_notes: list[Any] = []
        self.example_notes: list[Any] = []
        self.dropped: dict[str, int] = {}
        self._room = {False: room[0], True: room[1]}  # is a warning → how many more can be listed

    def add(
        self,
        code: str,
        line: int | None,
        field: str | None,
        message: str,
        suggestion: str,
        *,
        column: int | None = None,
        offset: int | None = None,
    ) -> None:
        warning = code in WARNING_CODES
        room = self._room[warning]
        if room:
            self._room[warning] = room - 1
            self.stream.append((code, line, field, message, suggestion, column, offset))
        else:
            self.counted(code)

    def counted(self, code: str) -> bool:
        """`add` for an issue that cannot be listed any more, without its words: count it and say True; False when
        it can still be listed (then `add` it)."""
        if self._room[code in WARNING_CODES]:
            return False
        if code in self.dropped:
            self.dropped[code] += 1
        else:
            self.dropped[code] = 0
            self.stream.append((COUNT_NOTE, code))
        return True

    def note_id(self, line: int, record_id: str) -> None:
        self.id_notes += (len(self.stream), line, record_id)

    def note_example(self, line: int, digest: int) -> None:
        self.example_notes += (len(self.stream), line, digest)


@dataclass(slots=True)
class BlockResult:
    """What the merge needs of one checked block; small, since it travels back from a worker process.

    `hint` is the shape the block was checked against. When it was (None, 0), the block fixes its own shape
    (`first_fix`), and `cid_before_fix` and `mixed` tell the merge whether the block's findings still hold when an
    earlier block turns out to have fixed the shape first (see `_Validation._holds` in validator.py).
    """

    first_number: int
    hint: ShapeHint
    stream: list[tuple[Any, ...]]
    id_notes: list[Any]
    example_notes: list[Any]
    dropped: dict[str, int]
    totals: ExampleTotals
    lines: int = 0  # physical lines checked, a skipped over-long last line included
    record_lines: int = 0
    has_header: bool = False
    first_fix: ShapeHint | None = None
    cid_before_fix: bool = False
    mixed: bool = False
    # (pid, peak RSS in KiB) of the worker process that checked the block; None when checked in-process.
    worker: tuple[int, int] | None = field(default=None)


class BlockChecker:
    """Checks blocks of lines of one file; keeps only a token memo from one block to the next."""

    def __init__(self, fmt: str, limits: ValidationLimits) -> None:
        self.fmt = fmt
        self.limits = limits
        self.accepted = FORMAT_SHAPES[fmt]
        # A line whose only known key is `conversation_id`, before any line fixed the shape: checked as a
        # conversation (as `messages` in openai_chat, whose only shape it is).
        self.bare_id_shape = "conversation" if "conversation" in self.accepted else self.accepted[0]
        self.count_tokens = TokenCounter()

    def check_bytes(
        self,
        first_number: int,
        data: bytes,
        too_long_last: bool,
        first_nonblank: int | None,
        hint: ShapeHint,
        room: tuple[int, int] = (KEPT_LINE_ISSUES, KEPT_LINE_ISSUES),
    ) -> BlockResult:
        """`check` on a block as the reader gives it (reader.LineReader.blocks): whole lines in one `bytes`, each
        ending with b"\\n", then, when `too_long_last`, a line over the limit that was skipped unread."""
        # Not data.split(b"\\n"): that compares byte by byte (~2 ns a byte, 7% of a worker's time), where find()
        # runs memchr.
        lines: list[bytes | None] = []
        append = lines.append
        find = data.find
        start = 0
        while (end := find(b"\n", start)) >= 0:
            append(data[start:end])
            start = end + 1
        limit = self.limits.line_limit_bytes
        if len(data) > limit:
            lines = [None if line is not None and over_limit(line, limit) else line for line in lines]
        if too_long_last:
            lines.append(None)
        return self.check(first_number, lines, first_nonblank, hint, room)

    def check(
        self,
        first_number: int,
        lines: list[bytes | None],
        first_nonblank: int | None,
        hint: ShapeHint,
        room: tuple[int, int] = (KEPT_LINE_ISSUES, KEPT_LINE_ISSUES),
    ) -> BlockResult:
        """Check `lines`, numbered from `first_number` (None for a line over the line limit).

        `first_nonblank` is the file's first non-blank line (a `_meta` header is allowed there); the caller has
        already handled a first line that opens a JSON array.

        The cyclic garbage collector is paused meanwhile: parsed records hold no reference cycles, and its passes
        over the thousands of containers each block allocates cost ~10% of the time.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._check(first_number, lines, first_nonblank, hint, room)
        finally:
            if collecting:
                gc.enable()

    def _check(
        self,
        first_number: int,
        lines: list[bytes | None],
        first_nonblank: int | None,
        hint: ShapeHint,
        room: tuple[int, int],
    ) -> BlockResult:
        issues = BlockIssues(room)
        result = BlockResult(
            first_number, hint, issues.stream, issues.id_notes, issues.example_notes, issues.dropped, ExampleTotals()
        )
        result.lines = len(lines)
        self.result = result
        self.issues = issues
        self.rules = RecordRules(self.fmt, issues.add, issues.note_id, issues.counted)
        self.examples = ExampleCounter(self.count_tokens, self.limits.context_limit, issues, result.totals)
        self.shape, self.shape_line = hint
        add = issues.add
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        number = first_number - 1
        for line in lines:
            number += 1
            if line is None:
                result.record_lines += 1
                add(
                    "line_too_long",
                    number,
                    None,
                    f"This line is longer than {size_words(self.limits.line_limit_bytes)}, the longest line "
                    "allowed; it was skipped.",
                    "Shorten the example (split a long conversation into several lines), or check that the file "
                    "really has one JSON object per line.",
                )
                continue
            if line[:1] != b"{" and not line.strip(b" \t\r"):
                add(
                    "blank_line",
                    number,
                    None,
                    "This line is blank; it was skipped.",
                    "Remove empty lines: some training tools stop at the first one.",
                )
                continue
            try:
                record = loads(line)
            except decode_error as exc:
                record = self._unparseable(number, line, exc)
                if record is None:
                    result.record_lines += 1
                    continue
            if type(record) is not dict:
                result.record_lines += 1
                add(
                    "not_an_object",
                    number,
                    None,
                    f"This line is {json_type(record)}, not a JSON object.",
                    'Write each example as one JSON object, e.g. {"messages": [...]} or {"turns": [...]}.',
                )
                continue
            if "_meta" in record and self._meta(number, record, number == first_nonblank):
                continue
            result.record_lines += 1
            self.rules.line_bytes = line
            self._record(number, record)
        return result

    def _unparseable(self, number: int, line: bytes, exc: orjson.JSONDecodeError) -> Any:
        """Tell invalid UTF-8 (byte offset) from a lone surrogate from bad JSON (character column).

        Returns the parsed value instead when the line is valid JSON that orjson refuses: a number too large for a
        double (1e400), which the standard library reads as infinity (then `out_of_range` or `wrong_type`).
        """
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            self.issues.add(
                "invalid_utf8",
                number,
                None,
                f"This line has bytes that are not valid UTF-8 text (at byte {bad.start} of the line).",
                "Save the file as UTF-8; a file saved as Latin-1 or Windows-1252 breaks on accented letters.",
                offset=bad.start,
            )
            return None
        column = exc.pos + 1  # orjson's pos counts characters of the decoded line, from 0
        message = exc.msg
        surrogate = "surrogate" in message
        if "infinity" in message:
            # A number too large for a double (1e400): valid JSON, which orjson refuses and stops at. The standard
            # library reads it (as infinity, then `out_of_range` or `wrong_type`), but it also accepts NaN and lone
            # surrogates, so what orjson would have found after the number is looked for here.
            text = line.decode("utf-8")
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:  # at its position (a truncated line's is the end of the text)
                column, message = error.pos + 1, error.msg
                refusal = _first_refusal(text, error.pos)
            except (ValueError, RecursionError):
                refusal = None  # an integer of over 4,300 digits, nesting deeper than Python's: orjson's finding
            else:
                refusal = _first_refusal(text, len(text))
                if refusal is None:
                    return value
            if refusal is not None:
                column = refusal[0] + 1
                surrogate = refusal[1] is None
                message = f"{refusal[1]} is not JSON"
        if surrogate:
            self.issues.add(
                "invalid_unicode",
                number,
                None,
                f"This line has a lone surrogate escape (such as \\ud800) near character {column}: half of a "
                "character, which is not valid Unicode.",
                "Fix the text that produced it (often an emoji cut in half) or remove the escape.",
                column=column,
            )
            return None
        self.issues.add(
            "invalid_json",
            number,
            None,
            f"This line is not valid JSON: {message} at character {column}.",
            "Fix the JSON near that character: NaN and Infinity are not JSON (use null), strings need double "
            "quotes, and each example must be complete on its own line.",
            column=column,
        )
        return None

    def _meta(self, number: int, record: dict[str, Any], first_nonblank: bool) -> bool:
        """Header or misplaced `_meta`; True when the line needs nothing more (a header, or `_meta` alone)."""
        alone = len(record) == 1
        if alone and first_nonblank and self.fmt != "openai_chat":
            self.result.has_header = True
            if type(record["_meta"]) is not dict:
                self.rules.wrong_type(number, "_meta", record["_meta"], "an object")
            return True
        if self.fmt == "openai_chat":
            why = "The OpenAI chat format has no `_meta` header."
        elif alone:
            why = "A `_meta` header is only allowed as the first line of the file."
        else:
            why = "A `_meta` header must be a line of its own, holding only `_meta`."
        if not alone:
            fix = "Remove `_meta` from this line (it is not training data)."
        elif self.fmt == "openai_chat":
            fix = "Remove this line (it is not training data)."  # removing `_meta` from it would leave `{}`
        else:
            fix = "Move the `_meta` line to the top of the file, or remove it."
        self.issues.add("misplaced_meta", number, "_meta", why, fix)
        if alone:
            self.result.record_lines += 1
            return True
        return False

    def _record(self, number: int, record: dict[str, Any]) -> None:
        """Shape detection and the record rules of that shape."""
        fixes_shape = True
        if "messages" in record:
            shape = "messages"
        elif "turns" in record:
            shape = "conversation"
        elif "target_response" in record or not PAIR_KEYS.isdisjoint(record):  # one lookup for the usual pair line
            shape = "pair"
        elif "conversation_id" in record:
            # Checked as the file's shape when fixed, else as `bare_id_shape`, and never fixes the shape: a bare
            # conversation_id says too little.
            fixes_shape = False
            if self.shape is None:
                self.result.cid_before_fix = True
            shape = self.shape or self.bare_id_shape
        else:
            self._unknown_shape(number, record)
            return

        if shape not in self.accepted:
            self.issues.add(
                "wrong_format",
                number,
                None,
                f"This line is {SHAPE_WORDS[shape]}, which the format `{self.fmt}` does not accept.",
                f"This line is {SHAPE_WORDS[shape].split(' (')[0]}; choose the format `{SHAPE_FORMAT[shape]}`"
                + (" (or `brightrun_lora_v3`)." if SHAPE_FORMAT[shape] == "brightrun_lora_v4" else "."),
            )
            return
        if self.shape is None:
            if fixes_shape:
                self.shape = shape
                self.shape_line = number
                self.result.first_fix = (shape, number)
        elif shape != self.shape:
            if self.result.hint[0] is None:
                self.result.mixed = True
            self.issues.add(
                "mixed_shapes",
                number,
                None,
                f"This line is {SHAPE_WORDS[shape]}, but line {self.shape_line} made this a file of "
                f"{SHAPE_WORDS[self.shape]}; one file must use one shape.",
                "Convert every line to the same shape, or split the file in two.",
            )
            return

        if shape == "pair":
            usual = self.rules.usual_pair(record, number)
            if usual is not None:
                self.examples.add_pair(number, *usual)
                return
            # A line without a usable conversation_id is a conversation of its own (key None).
            messages, conversation_id, turns = self.rules.check_pair(record, number)
            self.examples.add_example(number, messages, conversation_id, turns)
        elif shape == "conversation":
            messages, conversation_id, turns = self.rules.check_conversation(record, number)
            self.examples.add_example(number, messages, conversation_id, turns)
        else:
            messages, turns = self.rules.check_messages(record, number)
            self.examples.add_example(number, messages, None, turns)

    def _unknown_shape(self, number: int, record: dict[str, Any]) -> None:
        keys = list(record)
        shown = ", ".join(f"`{quoted(key)}`" for key in keys[:8])
        if len(keys) > 8:
            shown += f" and {len(keys) - 8} more"
        expected = " or ".join(SHAPE_WORDS[shape] for shape in self.accepted)
        self.issues.add(
            "unknown_shape",
            number,
            None,
            f"This line has the keys {shown or '(none)'}, which match no known example shape; "
            f"the format `{self.fmt}` expects {expected}.",
            "Rename the keys to one of the expected shapes, or choose the format that matches the file.",
        )
