"""Bytes → (gunzip) → physical lines, in one pass with bounded memory.

The reader owns the FORMAT.md rules about bytes rather than records: gzip (several members, a decompressed-size
cap, `invalid_gzip`), binary sniffing (`not_text`), the BOM, splitting on b"\\n" only, and `line_too_long`, whose
line is skipped without ever being held whole.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING

from lora_core.validation.limits import ValidationLimits

if TYPE_CHECKING:  # not at run time: worker processes use the reader's `over_limit` without the report's models
    from lora_core.validation.report import PendingIssues

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 8 * 1024
# Largest piece of decompressed output produced at once, so a gzip bomb never lands in memory whole.
DECOMPRESS_BLOCK = 1024 * 1024

# (number of the first line, whole lines ending with b"\n", whether a skipped over-long line follows them)
RawBlock = tuple[int, bytes, bool]


def _binary_kind(head: bytes) -> str | None:
    """What the first bytes look like when they are not text, in words a data scientist recognises."""
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (an .xlsx workbook or a zipped dataset, perhaps)"
    if head.startswith(b"PAR1"):
        return "a Parquet file"
    if b"\x00" in head:
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "UTF-16 text"
        return "binary data (it contains NUL bytes)"
    return None


def _output_before_error(decompressor: zlib._Decompress, data: bytes) -> bytes:
    """What `decompressor` (a copy taken before the call that failed) gives from `data` before the byte that breaks
    it. zlib raises without the output of the failing call, which can be a whole MiB of good lines: a gzip member
    whose CRC or length trailer is wrong (a file cut and patched, a bad disk) fails only after all its data.
    Fed 4 KiB at a time, then byte by byte within the piece that fails; this runs once per broken file."""
    parts: list[bytes] = []
    step = 4096
    at = 0
    while at < len(data):
        piece = data[at : at + step]
        saved = decompressor.copy()
        try:
            parts.append(decompressor.decompress(piece))
        except zlib.error:
            if step == 1:
                break
            decompressor, step = saved, 1
            continue
        at += len(piece)
        if decompressor.eof:
            break
    return b"".join(parts)


class LineReader:
    """Iterate `(line_number, line)` over a byte stream; `line` is None for a line over the line limit.

    Lines are physical, 1-based, counted in the decompressed text; the b"\\n" is not part of the line, and a CR
    before it stays (JSON reads it as whitespace) but does not count toward the line limit. File-level findings go
    to `issues` as they happen. Afterwards, `stop_code` names the issue that broke the stream (`invalid_gzip`,
    `decompressed_too_large`, `not_text`) or is None. Exceptions raised by `chunks` itself propagate unchanged.
    """

    def __init__(self, chunks: Iterable[bytes], limits: ValidationLimits, issues: PendingIssues) -> None:
        self._chunks = chunks
        self._limits = limits
        self._issues = issues
        self.stop_code: str | None = None
        # `blocks` yields one line at a time while this is True: the caller looks for the file's first non-blank
        # line and may stop there (a JSON array), and must then have read no further than a line-by-line reader.
        self.line_by_line = True
        # Whether the first line skipped for being over the limit opens a JSON array (None: none skipped yet). That
        # line is never held whole, but when it is the file's first non-blank line, `json_array_file` is what the
        # file has (a list saved with `json.dump` is one line), not `line_too_long`.
        self.first_skipped_opens_array: bool | None = None

    def _skipping(self, *pieces: bytes, start: int = 0) -> None:
        """A line over the limit is being skipped; `pieces`, from `start` in the first, are what of it has been read
        (more than the limit). Only the first such line is looked at, and without joining or copying them."""
        if self.first_skipped_opens_array is not None:
            return
        for piece in pieces:
            found = _NOT_BLANK.search(piece, start)
            if found is not None:
                self.first_skipped_opens_array = found[0] == b"["
                return
            start = 0
        self.first_skipped_opens_array = False

    # -- bytes ---------------------------------------------------------------------------------------------------

    def _raw_chunks(self) -> Iterator[bytes]:
        """The input, gunzipped when it starts with the gzip magic."""
        chunks = iter(self._chunks)
        head = b""
        for chunk in chunks:
            head += chunk
            if len(head) >= len(GZIP_MAGIC):
                break
        if head.startswith(GZIP_MAGIC):
            yield from self._gunzip(chain((head,), chunks))
            return
        if head:
            yield head
        for chunk in chunks:
            if chunk:
                yield chunk

    def _gunzip(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Decompress one or several gzip members, stopping at the cap or at corrupt/truncated data."""
        cap = self._limits.decompressed_limit_bytes
        produced = 0
        decompressor = zlib.decompressobj(wbits=31)
        member_started = False
        for chunk in chunks:
            data = chunk
            while data:
                if decompressor.eof:
                    # Like gzip.GzipFile: zero padding after a member is ignored; anything else must be a member.
                    data = data.lstrip(b"\x00")
                    if not data:
                        break
                    decompressor = zlib.decompressobj(wbits=31)
                member_started = True
                before = decompressor.copy()  # a few µs per MiB: what the data gives before an error is kept
                try:
                    out = decompressor.decompress(data, DECOMPRESS_BLOCK)
                except zlib.error as exc:
                    broken = f"the compressed data is corrupt ({exc})"
                    out = _output_before_error(before, data)
                    data = b""
                else:
                    broken = None
                    data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
                if produced + len(out) > cap:
                    yield out[: cap - produced]
                    self.stop_code = "decompressed_too_large"
                    self._issues.add(
                        "decompressed_too_large",
                        None,
                        None,
                        f"The file decompresses to more than {_mib(cap)}, the limit for compressed uploads; "
                        "only the lines before that point were checked.",
                        "Split the dataset into smaller files, or ask an administrator to raise the limit.",
                    )
                    return
                produced += len(out)
                if out:
                    yield out
                if broken is not None:
                    self._gzip_broken(broken)
                    return
        if member_started and not decompressor.eof:
            self._gzip_broken("the compressed data ends too early (the file is truncated)")

    def _gzip_broken(self, why: str) -> None:
        self.stop_code = "invalid_gzip"
        self._issues.add(
            "invalid_gzip",
            None,
            None,
            f"The gzip file cannot be fully decompressed: {why}. Only the complete lines before that point were "
            "checked.",
            "Compress the dataset again (for example `gzip -k data.jsonl`) and upload the new file, or upload it "
            "uncompressed.",
        )

    # -- lines ---------------------------------------------------------------------------------------------------

    def _text_chunks(self) -> Iterator[bytes] | None:
        """The decompressed text after the binary sniff and the BOM; None when the input is not text."""
        raw = self._raw_chunks()
        head = b""
        for chunk in raw:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        kind = _binary_kind(head[:SNIFF_BYTES])
        if kind is not None:
            self.stop_code = "not_text"
            self._issues.add(
                "not_text",
                1,
                None,
                f"This file is not a text dataset: it looks like {kind}.",
                "Export the dataset as JSON Lines: UTF-8 text with one JSON object per line.",
            )
            return None
        if head.startswith(UTF8_BOM):
            head = head[len(UTF8_BOM) :]
            self._issues.add(
                "bom",
                1,
                None,
                "The file starts with a byte order mark (BOM); it was ignored.",
                "Save the file as UTF-8 without BOM; some training tools choke on it.",
            )
        return chain((head,), raw)

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        chunks = self._text_chunks()
        if chunks is not None:
            yield from self._split(chunks)

    def blocks(self, block_bytes: int, block_lines: int) -> Iterator[RawBlock | None]:
        """The text as blocks of whole lines, each one `bytes` object, so that no per-line work happens here.

        Yields `(first_line_number, data, too_long_last)`: `data` is whole lines, each ending with b"\\n" (one is
        added to a last line that lacks it), about `block_bytes` or `block_lines` lines long; `too_long_last` means
        one more line, numbered right after `data`'s, is over the line limit and was skipped unread (a block ends
        there). Lines over the limit that fit in a block whole are left to the checker (`over_limit`). While
        `line_by_line` is True, each block is one line, yielded before anything after it is read. Yields None
        once, first, when file-level issues found before line 1 (BOM, a gzip break in the first 8 KiB) are
        pending: they belong before every line's. What breaks the stream later stays pending after the last block,
        as with `__iter__`; so does the unfinished line at a break, which is dropped.
        """
        chunks = self._text_chunks()
        if self._issues.pending:
            yield None
        if chunks is None:
            return
        held_limit = self._limits.line_limit_bytes + 1  # + the CR of a CRLF line end
        number = 1  # the number of the buffer's first line
        buffer: list[bytes] = []
        buffered = 0  # bytes in `buffer`
        newlines = 0  # b"\\n" in `buffer`
        tail = 0  # bytes after the last b"\\n" in `buffer`: the unfinished line
        held: bytes | None = None  # while skipping a line over the limit: the whole lines before it
        for chunk in chunks:
            if held is not None:
                end = chunk.find(b"\n")
                if end < 0:
                    continue  # still inside the skipped line
                yield number, held, True
                number += held.count(b"\n") + 1
                held = None
                chunk = chunk[end + 1 :]
                if not chunk:
                    continue
            buffer.append(chunk)
            buffered += len(chunk)
            found = chunk.count(b"\n")
            if found:
                newlines += found
                tail = len(chunk) - 1 - chunk.rfind(b"\n")
            else:
                tail += len(chunk)
            if newlines and (buffered >= block_bytes or newlines >= (1 if self.line_by_line else block_lines)):
                data = b"".join(buffer) if len(buffer) > 1 else buffer[0]
                start = 0  # an offset, not slices of the rest: cutting many small blocks stays linear
                while newlines:
                    lines_cap = 1 if self.line_by_line else block_lines  # the caller may change it in between
                    if len(data) - start < block_bytes and newlines < lines_cap:
                        break
                    if newlines > lines_cap:
                        cut = start - 1
                        for _ in range(lines_cap):
                            cut = data.find(b"\n", cut + 1)
                        cut += 1
                        count = lines_cap
                    else:
                        cut = len(data) - tail
                        count = newlines
                    yield number, data[start:cut], False
                    number += count
                    newlines -= count
                    start = cut
                rest = data[start:]
                buffer = [rest] if rest else []
                buffered = len(rest)
            if tail > held_limit:
                data = b"".join(buffer)
                self._skipping(data, start=len(data) - tail)
                held = data[: len(data) - tail]
                buffer, buffered, newlines, tail = [], 0, 0, 0
        if held is not None:
            if held or self.stop_code is None:
                yield number, held, self.stop_code is None
        elif buffer:
            data = b"".join(buffer)
            if tail and self.stop_code is None:
                yield number, data + b"\n", False
            elif len(data) > tail:
                yield number, data[: len(data) - tail], False

    def _split(self, chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes | None]]:
        limit = self._limits.line_limit_bytes
        # A line may be one byte longer when that byte is the CR of a CRLF line end.
        held_limit = limit + 1
        pending: list[bytes] = []
        pending_size = 0
        too_long = False  # the current unfinished line is over the limit; its bytes are being dropped
        number = 0
        for chunk in chunks:
            parts = chunk.split(b"\n")
            tail = parts.pop()
            for part in parts:
                number += 1
                if too_long:
                    too_long = False
                    yield number, None
                    continue
                if pending:
                    pending.append(part)
                    part = b"".join(pending)
                    pending = []
                    pending_size = 0
                if over_limit(part, limit):
                    self._skipping(part)
                    yield number, None
                else:
                    yield number, part
            if tail and not too_long:
                pending_size += len(tail)
                if pending_size > held_limit:
                    too_long = True
                    self._skipping(*pending, tail)
                    pending = []
                    pending_size = 0
                else:
                    pending.append(tail)
        if self.stop_code is not None:
            return  # the unfinished line at a break is dropped
        if too_long:
            yield number + 1, None
        elif pending:
            part = b"".join(pending)
            if over_limit(part, limit):
                self._skipping(part)
                yield number + 1, None
            else:
                yield number + 1, part


# What is not a blank before a line's first character (JSON's other whitespace, \n, ends the line).
_NOT_BLANK = re.compile(rb"[^ \t\r]")


def opens_array(line: bytes) -> bool:
    """Whether a line, past its leading blanks (space, tab, CR), starts a JSON array."""
    found = _NOT_BLANK.search(line)
    return found is not None and found[0] == b"["


def over_limit(line: bytes, limit: int) -> bool:
    """Longer than `limit` bytes, not counting the CR of a CRLF line end."""
    return len(line) > limit and (len(line) > limit + 1 or line[-1:] != b"\r")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"
