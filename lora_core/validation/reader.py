"""Bytes → (gunzip) → physical lines, in one pass with bounded memory.

The reader owns the FORMAT.md rules about bytes rather than records: gzip (several members, a decompressed-size
cap, `invalid_gzip`), binary sniffing (`not_text`), the BOM, splitting on b"\\n" only, and `line_too_long`, whose
line is skipped without ever being held whole.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from itertools import chain

from lora_core.validation.limits import ValidationLimits
from lora_core.validation.report import PendingIssues

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 8 * 1024
# Largest piece of decompressed output produced at once, so a gzip bomb never lands in memory whole.
DECOMPRESS_BLOCK = 1024 * 1024


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
                try:
                    out = decompressor.decompress(data, DECOMPRESS_BLOCK)
                except zlib.error as exc:
                    self._gzip_broken(f"the compressed data is corrupt ({exc})")
                    return
                data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
                if not out:
                    continue
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
                yield out
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

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
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
            return
        if head.startswith(UTF8_BOM):
            head = head[len(UTF8_BOM) :]
            self._issues.add(
                "bom",
                1,
                None,
                "The file starts with a byte order mark (BOM); it was ignored.",
                "Save the file as UTF-8 without BOM; some training tools choke on it.",
            )
        yield from self._split(chain((head,), raw))

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
                yield number, None if _over_limit(part, limit) else part
            if tail and not too_long:
                pending_size += len(tail)
                if pending_size > held_limit:
                    too_long = True
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
            yield number + 1, None if _over_limit(part, limit) else part


def _over_limit(line: bytes, limit: int) -> bool:
    """Longer than `limit` bytes, not counting the CR of a CRLF line end."""
    return len(line) > limit and (len(line) > limit + 1 or line[-1:] != b"\r")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"
