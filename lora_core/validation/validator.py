"""One streaming pass: bytes → blocks of whole lines (reader.py) → checked in order in this process or, for a
large input, in worker processes (blocks.py, parallel.py) → merged in line order with what spans lines → report.

This process does no work per line (beyond the file's first non-blank line): a block travels as one `bytes`
object and is split into lines by whoever checks it, so on two cores the workers get nearly all the CPU. For a large
local file (`validate_file`) not even that: this process only counts newlines to cut blocks, and each worker reads
its blocks' bytes from the file itself (`run_file_validation`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lora_core.validation.blocks import (
    COUNT_NOTE,
    DEFAULT_FORMAT,
    EXAMPLE_NOTE,
    FORMAT_SHAPES,
    ID_NOTE,
    BlockChecker,
    BlockJob,
    BlockResult,
    size_words,
)
from lora_core.validation.limits import MIB, ValidationLimits
from lora_core.validation.parallel import BlockPool, read_range
from lora_core.validation.reader import GZIP_MAGIC, SNIFF_BYTES, UTF8_BOM, LineReader, _binary_kind, over_limit
from lora_core.validation.report import DatasetStats, IssueCollector, PendingIssues, ValidationReport
from lora_core.validation.rules import duplicate_id
from lora_core.validation.stats import ExampleTotals, duplicate_example

__all__ = ["DEFAULT_FORMAT", "FORMAT_SHAPES", "file_too_large_report", "validate_file", "validate_stream"]

READ_BLOCK_BYTES = 1024 * 1024
# What a local file's newlines are counted in (run_file_validation): a buffer that stays in the CPU's cache between
# being read into and being searched counts ~40% faster than a 1 MiB one.
SCAN_BYTES = 128 * 1024
DEFAULT_LIMITS = ValidationLimits()  # frozen, so one shared default is safe
FEW_EXAMPLES_BELOW = 10
# Lines are checked in blocks of about this many bytes (or this many lines, for files of tiny or blank lines): big
# enough that sending a block to a worker costs little next to checking it, small enough that the blocks in flight
# (two per worker) hold little memory.
BLOCK_BYTES = 2 * MIB
BLOCK_LINES = 20_000
# Worker processes take a fraction of a second to start (~0.25 s here): below this many bytes of lines, everything
# stays here. The pool starts there (or with the first block when the caller's size hint says the input is larger),
# and blocks are checked here until its workers are up rather than wait for them, unless the input grows by as much
# again meanwhile.
PARALLEL_FROM_BYTES = 32 * MIB


def _first_nonblank(
    first_number: int, data: bytes, too_long_last: bool, line_limit: int
) -> tuple[int | None, int | None]:
    """The number of the first non-blank line in a block, if any, and, when that line opens a JSON array, its byte
    offset in `data` (the file is then a JSON array: `json_array_file`). A line over the limit counts as non-blank
    and is not looked into."""
    number = first_number
    start = 0
    end = len(data)
    while start < end:
        stop = data.index(b"\n", start)
        line = data[start:stop]
        if over_limit(line, line_limit):
            return number, None
        if line[:1] == b"{" or line.strip(b" \t\r"):
            return number, start if line.lstrip(b" \t\r")[:1] == b"[" else None
        number += 1
        start = stop + 1
    return (number if too_long_last else None), None


class _Span(NamedTuple):
    """A block's bytes left in the local file being validated: `length` bytes from `offset` (whole lines, the file's
    last one perhaps without its b"\\n")."""

    offset: int
    length: int


def _file_blocks(
    handle: Any, start: int, block_bytes: int, block_lines: int, line_limit: int, read_bytes: int
) -> Iterator[tuple[int, int, int, bool]]:
    """reader.LineReader.blocks for a local uncompressed file, as offsets: `(first_line_number, start, end,
    too_long_last)` from `start` (after the BOM) to the end of the file, cut on the same rules (about `block_bytes`
    or exactly `block_lines` lines; a line longer than `line_limit` + 1 bytes ends a block and is skipped unread).

    Only newlines are counted here, in one reused buffer: the lines' bytes are read again by whoever checks them.
    """
    held_limit = line_limit + 1  # + the CR of a CRLF line end
    buf = bytearray(read_bytes)
    handle.seek(start)
    pos = start  # the file offset after the bytes read so far
    number = 1  # the number of the current block's first line
    block_start = start
    newlines = 0  # b"\n" in [block_start, last_end)
    last_end = start  # just after the last b"\n" read, or block_start when none since
    skipping = False  # inside a line over the limit
    while n := handle.readinto(buf):
        base = pos
        pos += n
        i = 0
        if skipping:
            j = buf.find(b"\n", 0, n)
            if j < 0:
                continue  # still inside the skipped line
            yield number, block_start, last_end, True
            number += newlines + 1
            block_start = last_end = base + j + 1
            newlines = 0
            skipping = False
            i = j + 1
        found = buf.count(b"\n", i, n)
        while newlines + found >= block_lines:
            need = block_lines - newlines
            cut = i - 1
            for _ in range(need):
                cut = buf.find(b"\n", cut + 1, n)
            cut += 1
            yield number, block_start, base + cut, False
            number += block_lines
            block_start = last_end = base + cut
            newlines = 0
            found -= need
            i = cut
        if found:
            newlines += found
            last_end = base + buf.rfind(b"\n", i, n) + 1
        if newlines and last_end - block_start >= block_bytes:
            yield number, block_start, last_end, False
            number += newlines
            block_start = last_end
            newlines = 0
        if pos - last_end > held_limit:
            skipping = True
    if skipping:
        yield number, block_start, last_end, True
    elif pos > block_start:
        yield number, block_start, pos, False


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
    return run_validation(chunks, fmt, limits)[0]


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
    return run_file_validation(path, fmt, limits)[0]


def file_too_large_report(size: int, fmt: str, limits: ValidationLimits) -> ValidationReport:
    """The report for a stored object over the upload limit: validation does not start."""
    _check_format(fmt)
    issues = IssueCollector()
    issues.add(
        "file_too_large",
        None,
        None,
        f"The file is {size_words(size)}, more than the upload limit of {size_words(limits.max_upload_bytes)}; "
        "it was not checked.",
        "Split the dataset into smaller files, compress it with gzip, or ask an administrator to raise the limit.",
    )
    return issues.build_report(fmt, None, DatasetStats(context_limit=limits.context_limit), [])


@dataclass
class RunInfo:
    """How a validation ran, for the benchmark: worker processes used, and each one's peak RSS (KiB, by pid)."""

    workers: int = 0
    worker_peak_rss_kib: dict[int, int] = field(default_factory=dict)


def run_file_validation(
    path: str | os.PathLike[str],
    fmt: str = DEFAULT_FORMAT,
    limits: ValidationLimits = DEFAULT_LIMITS,
    *,
    block_bytes: int = BLOCK_BYTES,
    block_lines: int = BLOCK_LINES,
    parallel_from_bytes: int = PARALLEL_FROM_BYTES,
    read_bytes: int | None = None,
) -> tuple[ValidationReport, RunInfo]:
    """`validate_file` without the upload limit, with `run_validation`'s knobs and how it ran.

    A file large enough for worker processes, neither gzip nor binary, is not streamed through this process: here
    only its newlines are counted to cut blocks, and each worker reads its blocks' bytes from the file itself. The
    report is the one `run_validation` gives on the file's bytes (tests/validation/test_file_ranges.py).
    """
    _check_format(fmt)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if limits.workers > 1 and size > parallel_from_bytes:
            head = os.pread(handle.fileno(), SNIFF_BYTES, 0)
            if not head.startswith(GZIP_MAGIC) and _binary_kind(head) is None:
                run = _Validation(fmt, limits, block_bytes, block_lines, parallel_from_bytes, -1)
                return run.run_file(handle, os.path.abspath(path), head, read_bytes or SCAN_BYTES), run.info
        chunks = iter(lambda: handle.read(read_bytes or READ_BLOCK_BYTES), b"")
        return run_validation(
            chunks,
            fmt,
            limits,
            block_bytes=block_bytes,
            block_lines=block_lines,
            parallel_from_bytes=parallel_from_bytes,
            size_hint=size,
        )


def run_validation(
    chunks: Iterable[bytes],
    fmt: str = DEFAULT_FORMAT,
    limits: ValidationLimits = DEFAULT_LIMITS,
    *,
    block_bytes: int = BLOCK_BYTES,
    block_lines: int = BLOCK_LINES,
    parallel_from_bytes: int = PARALLEL_FROM_BYTES,
    size_hint: int | None = None,
) -> tuple[ValidationReport, RunInfo]:
    """`validate_stream`, with the block size and the pool's threshold exposed (tests use tiny blocks to prove the
    merge exact) and how it ran. `size_hint`, the input's size when known (a stored file's), lets worker processes
    start with the first block."""
    _check_format(fmt)
    pool_from = parallel_from_bytes
    if size_hint is not None and size_hint > parallel_from_bytes:
        pool_from = -1
    run = _Validation(fmt, limits, block_bytes, block_lines, parallel_from_bytes, pool_from)
    return run.run(chunks), run.info


class _Validation:
    """The cross-line stage of one validation: reads lines, hands out blocks, merges their results in line order.

    The merge owns everything that depends on earlier lines: the file's shape (a block checked before the shape
    was known is re-checked here when its findings would differ), `duplicate_id`, `duplicate_example`, the totals,
    the samples and the cap on listed issues.
    """

    def __init__(
        self,
        fmt: str,
        limits: ValidationLimits,
        block_bytes: int,
        block_lines: int,
        parallel_from_bytes: int,
        pool_from_bytes: int,
    ) -> None:
        self.fmt = fmt
        self.limits = limits
        self.block_bytes = block_bytes
        self.block_lines = block_lines
        self.parallel_from_bytes = parallel_from_bytes
        self.pool_from_bytes = pool_from_bytes
        self.pool_ready = False  # the pool's workers are up (or the input proved large): blocks go to them
        self.workers = limits.workers if limits.workers > 1 else 0
        self.info = RunInfo()
        self.issues = IssueCollector()
        self.totals = ExampleTotals()
        self.checker = BlockChecker(fmt, limits)
        self.first_line_of_id: dict[str, int] = {}
        self.first_line_of_example: dict[int, int] = {}
        self.shape: str | None = None
        self.shape_line = 0
        self.record_lines = 0
        self.has_header = False
        self.lines_bytes = 0
        self.pool: BlockPool | None = None
        # Blocks handed to workers, oldest first, with what it takes to check them again here.
        self.in_flight: deque[tuple[Future[BlockResult | None], BlockJob]] = deque()
        # The local file whose blocks workers read themselves (run_file): its open descriptor, absolute path, and
        # (device, inode); `ranges` is False once a worker could not read it (moved or replaced meanwhile).
        self.fd = -1
        self.path = ""
        self.ident = (0, 0)
        self.ranges = False

    def run(self, chunks: Iterable[bytes]) -> ValidationReport:
        reader_issues = PendingIssues()
        reader = LineReader(chunks, self.limits, reader_issues)
        line_limit = self.limits.line_limit_bytes
        first_nonblank: int | None = None
        array_file = False
        try:
            for raw in reader.blocks(self.block_bytes, self.block_lines):
                if raw is None:
                    # File-level findings from before line 1 (BOM, an early gzip break) go before every line's.
                    reader_issues.move_to(self.issues)
                    continue
                first_number, data, too_long_last = raw
                if first_nonblank is None:
                    first_nonblank, array_at = _first_nonblank(first_number, data, too_long_last, line_limit)
                    reader.line_by_line = first_nonblank is None
                    if array_at is not None:
                        array_file = True
                        if array_at:  # the blank lines before it are checked as usual
                            self._dispatch((first_number, data[:array_at], False, first_nonblank))
                        break
                self._dispatch((first_number, data, too_long_last, first_nonblank))
            self._drain()
        finally:
            if self.pool is not None:
                self.pool.close()
        if array_file:
            self._array_file()
        reader_issues.move_to(self.issues)

        if reader.stop_code != "not_text" and not array_file:
            self._file_level(reader.stop_code is not None)
        return self._report()

    def run_file(self, handle: Any, path: str, head: bytes, read_bytes: int) -> ValidationReport:
        """`run` on a local file that is neither gzip nor binary (`head`, its first bytes, says so), its blocks as
        `_Span`s that workers read themselves. The BOM is the reader's finding; nothing else can break the stream."""
        reader_issues = PendingIssues()
        LineReader((head,), self.limits, reader_issues)._text_chunks()  # the BOM, in the reader's words
        reader_issues.move_to(self.issues)
        self.fd = handle.fileno()
        self.path = path
        stat = os.fstat(self.fd)
        self.ident = (stat.st_dev, stat.st_ino)
        self.ranges = True
        line_limit = self.limits.line_limit_bytes
        start = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
        first_nonblank: int | None = None
        array_file = False
        try:
            for first_number, begin, end, too_long_last in _file_blocks(
                handle, start, self.block_bytes, self.block_lines, line_limit, read_bytes
            ):
                job: BlockJob = (first_number, _Span(begin, end - begin), too_long_last, first_nonblank)  # type: ignore[assignment]
                if first_nonblank is None:
                    data = self._job_bytes(job)[1]
                    first_nonblank, array_at = _first_nonblank(first_number, data, too_long_last, line_limit)
                    if array_at is not None:
                        array_file = True
                        if array_at:  # the blank lines before it are checked as usual
                            self._dispatch((first_number, data[:array_at], False, first_nonblank))
                        break
                    job = (first_number, data, too_long_last, first_nonblank)
                self._dispatch(job)
            self._drain()
        finally:
            if self.pool is not None:
                self.pool.close()
        if array_file:
            self._array_file()
        else:
            self._file_level(False)
        return self._report()

    def _array_file(self) -> None:
        # FORMAT.md places it on line 1 whatever blank lines precede it: it is about the whole file.
        self.issues.add(
            "json_array_file",
            1,
            None,
            "This looks like a JSON array; a dataset must be JSON Lines: one object per line.",
            "Convert to JSON Lines, one object per line, e.g. `jq -c '.[]' data.json > data.jsonl`.",
        )

    def _report(self) -> ValidationReport:
        stats = self.totals.build(self.limits.context_limit)
        return self.issues.build_report(self.fmt, self.shape, stats, self.totals.samples)

    # -- blocks --------------------------------------------------------------------------------------------------

    def _job_bytes(self, job: BlockJob) -> BlockJob:
        """The job with its bytes, read from the file here when it is a `_Span`."""
        span = job[1]
        if type(span) is not _Span:
            return job
        data = read_range(self.fd, span.offset, span.length)
        if len(data) < span.length:
            raise OSError(f"{self.path} became shorter while it was being validated")
        if data and data[-1:] != b"\n":
            data += b"\n"  # the file's last line, which lacks its b"\n" (see reader.LineReader.blocks)
        return (job[0], data, job[2], job[3])

    def _dispatch(self, job: BlockJob) -> None:
        """Check a block here, or hand it to a worker once the input has proved large."""
        span = job[1]
        self.lines_bytes += span.length if type(span) is _Span else len(span)
        if self.pool is None and self.workers and self.lines_bytes > self.pool_from_bytes:
            self.pool = BlockPool(self.workers, self.fmt, self.limits)
            self.info.workers = self.workers
        hint = (self.shape, self.shape_line)
        if not self.pool_ready and self.pool is not None:
            self.pool_ready = self.lines_bytes > 2 * self.parallel_from_bytes or self.pool.started()
        if not self.pool_ready:
            self._merge(self.checker.check_bytes(*self._job_bytes(job), hint, self.issues.room()), job)
            return
        assert self.pool is not None
        # Two blocks per worker: one being checked, one waiting, so no worker idles while results are merged.
        while len(self.in_flight) >= 2 * self.workers:
            self._merge_oldest()
        # The issues still listable now bound what this block can add to the list: it need not send more.
        room = self.issues.room()
        if type(span) is _Span and self.ranges:
            first_number, _span, too_long_last, first_nonblank = job
            future = self.pool.submit_range(
                self.path, self.ident, span.offset, span.length, first_number, too_long_last, first_nonblank, hint, room
            )
        else:
            future = self.pool.submit(*self._job_bytes(job), hint, room)
        self.in_flight.append((future, job))

    def _merge_oldest(self) -> None:
        future, job = self.in_flight.popleft()
        self._merge(future.result(), job)

    def _drain(self) -> None:
        while self.in_flight:
            self._merge_oldest()

    def _holds(self, result: BlockResult) -> bool:
        """Whether the block's findings are those of a single pass, given the shape the earlier blocks fixed.

        A block checked without knowing the shape (its hint (None, 0)) while an earlier block, still in flight,
        fixed it, differs only if it fixed another shape (a single pass says `mixed_shapes` there), named its own
        line in `mixed_shapes`, or checked a bare-`conversation_id` line as a conversation before its first shape.
        """
        if result.hint == (self.shape, self.shape_line):
            return True
        return (
            not result.mixed
            and (result.first_fix is None or result.first_fix[0] == self.shape)
            and (not result.cid_before_fix or self.shape == self.checker.bare_id_shape)
        )

    def _merge(self, result: BlockResult | None, job: BlockJob) -> None:
        """Take a block's result into the file's, in line order; the cross-line rules are decided here.

        None is a block a worker could not read from the file: it is checked here (and the rest is sent as bytes)."""
        if result is None:
            self.ranges = False
            result = self.checker.check_bytes(*self._job_bytes(job), (self.shape, self.shape_line), self.issues.room())
        if result.worker is not None:
            pid, peak = result.worker
            peaks = self.info.worker_peak_rss_kib
            peaks[pid] = max(peaks.get(pid, 0), peak)
        if not self._holds(result):
            result = self.checker.check_bytes(*self._job_bytes(job), (self.shape, self.shape_line), self.issues.room())
        if self.shape is None and result.first_fix is not None:
            self.shape, self.shape_line = result.first_fix
        self.record_lines += result.record_lines
        self.has_header = self.has_header or result.has_header
        self.totals.merge(result.totals)

        issues = self.issues
        add = issues.add
        first_line_of_id = self.first_line_of_id
        first_line_of_example = self.first_line_of_example
        for entry in result.stream:
            kind = entry[0]
            if type(kind) is str:
                code, line, field_path, message, suggestion, column, offset = entry
                add(code, line, field_path, message, suggestion, column=column, offset=offset)
            elif kind == EXAMPLE_NOTE:
                _kind, line, digest = entry
                first = first_line_of_example.setdefault(digest, line)
                if first != line:
                    duplicate_example(add, line, first)
            elif kind == ID_NOTE:
                _kind, line, record_id = entry
                first = first_line_of_id.setdefault(record_id, line)
                if first != line:
                    duplicate_id(add, line, record_id, first)
            elif kind == COUNT_NOTE:
                issues.count_only(entry[1], 1)
        for code, number in result.dropped.items():
            if number:
                issues.count_only(code, number)

    # -- the whole file ------------------------------------------------------------------------------------------

    def _file_level(self, broken: bool) -> None:
        """Rules about the whole file, once every line is read. After a break, `file_empty` is not added."""
        add = self.issues.add
        pairs = self.totals.training_pairs
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
