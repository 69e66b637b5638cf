"""The line loop: lines → JSON → header/shape → record rules → statistics → report, in one streaming pass."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from lora_core.validation.limits import ValidationLimits
from lora_core.validation.reader import LineReader
from lora_core.validation.report import DatasetStats, IssueCollector, ValidationReport
from lora_core.validation.rules import RecordRules, json_type
from lora_core.validation.stats import StatsAccumulator

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
READ_BLOCK_BYTES = 1024 * 1024
DEFAULT_LIMITS = ValidationLimits()  # frozen, so one shared default is safe
FEW_EXAMPLES_BELOW = 10


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_format(fmt: str) -> None:
    if fmt not in FORMAT_SHAPES:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMAT_SHAPES)}")


def validate_stream(
    chunks: Iterable[bytes], fmt: str = DEFAULT_FORMAT, limits: ValidationLimits = DEFAULT_LIMITS
) -> ValidationReport:
    """Validate a dataset given as bytes chunks of any size and boundaries, in one pass and bounded memory.

    Exceptions raised by `chunks` (storage or network errors) propagate unchanged. The stored size is not checked
    here: callers that know it check it first and use `file_too_large_report` (as `validate_file` does).
    """
    _check_format(fmt)
    return _Validation(fmt, limits).run(chunks)


def _read_blocks(handle: Any) -> Iterator[bytes]:
    while block := handle.read(READ_BLOCK_BYTES):
        yield block


def validate_file(
    path: str | os.PathLike[str], fmt: str = DEFAULT_FORMAT, limits: ValidationLimits = DEFAULT_LIMITS
) -> ValidationReport:
    """Validate a local file, refusing it unread when it is larger than the upload limit.

    Raises OSError when the file cannot be opened or read.
    """
    _check_format(fmt)
    size = os.stat(path).st_size
    if size > limits.max_upload_bytes:
        return file_too_large_report(size, fmt, limits)
    with open(path, "rb") as handle:
        return validate_stream(_read_blocks(handle), fmt, limits)


def file_too_large_report(size: int, fmt: str, limits: ValidationLimits) -> ValidationReport:
    """The report for a stored object over the upload limit: validation does not start."""
    _check_format(fmt)
    issues = IssueCollector()
    issues.add(
        "file_too_large",
        None,
        None,
        f"The file is {_size_words(size)}, more than the upload limit of {_size_words(limits.max_upload_bytes)}; "
        "it was not checked.",
        "Split the dataset into smaller files, compress it with gzip, or ask an administrator to raise the limit.",
    )
    return issues.build_report(fmt, None, DatasetStats(context_limit=limits.context_limit), [])


def _size_words(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):,.1f} MiB"
    return f"{size:,} bytes"


class _Validation:
    """State of one validation run."""

    def __init__(self, fmt: str, limits: ValidationLimits) -> None:
        self.fmt = fmt
        self.limits = limits
        self.accepted = FORMAT_SHAPES[fmt]
        self.issues = IssueCollector()
        self.stats = StatsAccumulator(limits.context_limit, self.issues)
        self.rules = RecordRules(fmt, self.issues.add)
        self.shape: str | None = None
        self.shape_line = 0
        self.record_lines = 0
        self.has_header = False

    def run(self, chunks: Iterable[bytes]) -> ValidationReport:
        add = self.issues.add
        reader = LineReader(chunks, self.limits, self.issues)
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        first_nonblank: int | None = None
        array_file = False
        for number, line in reader:
            if line is None:
                self.record_lines += 1
                first_nonblank = first_nonblank or number
                add(
                    "line_too_long",
                    number,
                    None,
                    f"This line is longer than {_size_words(self.limits.line_limit_bytes)}, the longest line "
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
            if first_nonblank is None:
                first_nonblank = number
                if line.lstrip(b" \t\r")[:1] == b"[":
                    array_file = True
                    # FORMAT.md places it on line 1 whatever blank lines precede it: it is about the whole file.
                    add(
                        "json_array_file",
                        1,
                        None,
                        "This looks like a JSON array; a dataset must be JSON Lines: one object per line.",
                        "Convert to JSON Lines, one object per line, e.g. `jq -c '.[]' data.json > data.jsonl`.",
                    )
                    break
            try:
                record = loads(line)
            except decode_error as exc:
                record = self._unparseable(number, line, exc)
                if record is None:
                    self.record_lines += 1
                    continue
            if type(record) is not dict:
                self.record_lines += 1
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
            self.record_lines += 1
            self.rules.line_bytes = line
            self._record(number, record)

        if reader.stop_code != "not_text" and not array_file:
            self._file_level(reader.stop_code is not None)
        return self.issues.build_report(self.fmt, self.shape, self.stats.build(), self.stats.samples)

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
        if "surrogate" in exc.msg:
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
        if "infinity" in exc.msg:
            try:
                return json.loads(line, parse_constant=_refuse_constant)
            except ValueError:
                pass  # also not JSON to the standard library: report orjson's finding
        self.issues.add(
            "invalid_json",
            number,
            None,
            f"This line is not valid JSON: {exc.msg} at character {column}.",
            "Fix the JSON near that character: NaN and Infinity are not JSON (use null), strings need double "
            "quotes, and each example must be complete on its own line.",
            column=column,
        )
        return None

    def _meta(self, number: int, record: dict[str, Any], first_nonblank: bool) -> bool:
        """Header or misplaced `_meta`; True when the line needs nothing more (a header, or `_meta` alone)."""
        alone = len(record) == 1
        if alone and first_nonblank and self.fmt != "openai_chat":
            self.has_header = True
            if type(record["_meta"]) is not dict:
                self.rules.wrong_type(number, "_meta", record["_meta"], "an object")
            return True
        if self.fmt == "openai_chat":
            why = "The OpenAI chat format has no `_meta` header."
        elif alone:
            why = "A `_meta` header is only allowed as the first line of the file."
        else:
            why = "A `_meta` header must be a line of its own, holding only `_meta`."
        self.issues.add(
            "misplaced_meta",
            number,
            "_meta",
            why,
            "Remove `_meta` from this line (it is not training data)."
            if self.fmt == "openai_chat" or not alone
            else "Move the `_meta` line to the top of the file, or remove it.",
        )
        if alone:
            self.record_lines += 1
            return True
        return False

    def _record(self, number: int, record: dict[str, Any]) -> None:
        """Shape detection and the record rules of that shape."""
        fixes_shape = True
        if "messages" in record:
            shape = "messages"
        elif "turns" in record:
            shape = "conversation"
        elif not PAIR_KEYS.isdisjoint(record):
            shape = "pair"
        elif "conversation_id" in record:
            # Checked as the file's shape when fixed, else as a conversation (as `messages` in openai_chat, whose
            # only shape it is), and never fixes the shape: a bare conversation_id says too little.
            fixes_shape = False
            shape = self.shape or ("conversation" if "conversation" in self.accepted else self.accepted[0])
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
        elif shape != self.shape:
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
            messages, conversation_id, turns = self.rules.check_pair(record, number)
            self.stats.add_example(number, messages, conversation_id or ("line", number), turns)
        elif shape == "conversation":
            messages, conversation_id, turns = self.rules.check_conversation(record, number)
            self.stats.add_example(number, messages, conversation_id or ("line", number), turns)
        else:
            messages, turns = self.rules.check_messages(record, number)
            self.stats.add_example(number, messages, None, turns)

    def _unknown_shape(self, number: int, record: dict[str, Any]) -> None:
        keys = list(record)
        shown = ", ".join(f"`{key}`" for key in keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        expected = " or ".join(SHAPE_WORDS[shape] for shape in self.accepted)
        self.issues.add(
            "unknown_shape",
            number,
            None,
            f"This line has the keys {shown or '(none)'}, which match no known example shape; "
            f"the format `{self.fmt}` expects {expected}.",
            "Rename the keys to one of the expected shapes, or choose the format that matches the file.",
        )

    def _file_level(self, broken: bool) -> None:
        """Rules about the whole file, once every line is read. After a break, `file_empty` is not added."""
        add = self.issues.add
        pairs = self.stats.training_pairs
        if self.record_lines == 0:
            if not broken:
                add(
                    "file_empty",
                    None,
                    None,
                    "The file has no examples." + (" It only has a `_meta` header." if self.has_header else ""),
                    "Upload a JSON Lines file with one example per line.",
                )
            return
        if pairs == 0:
            add(
                "no_training_pairs",
                None,
                None,
                "The file has no training pairs: no line has an assistant answer the model could learn from.",
                "Check the format chosen and fix the errors above; each example needs an assistant answer.",
            )
        elif pairs < FEW_EXAMPLES_BELOW:
            add(
                "few_examples",
                None,
                None,
                f"The file has only {pairs} training pair{'s' if pairs != 1 else ''}; a LoRA adapter needs "
                "many more to learn anything.",
                "Add examples: a few hundred is a common minimum for a useful adapter.",
            )
