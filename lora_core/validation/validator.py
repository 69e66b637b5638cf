"""One streaming pass: bytes → blocks of whole lines (reader.py) → checked in order in this process or, for a
large input, in worker processes (blocks.py, parallel.py) → merged in line order with what spans lines → report.

This process does no work per line (beyond the file's first non-blank line): a block travels as one `bytes`
object and is split into lines by whoever checks it, so on two cores the workers get nearly all the CPU. For a large
stored file (`validate_file`, `validate_download`) not even that: the file is cut at fixed byte offsets into spans,
each worker reads its span's lines from the source itself and numbers them from 1, and this process only merges,
shifting each span's line numbers by the lines the spans before it held (`run_source`).
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
    FORMAT_SHAPES,
    BlockChecker,
    BlockJob,
    BlockResult,
    size_words,
)
from lora_core.validation.limits import MIB, ValidationLimits
from lora_core.validation.parallel import BlockPool, span_block
from lora_core.validation.reader import (
    GZIP_MAGIC,
    SNIFF_BYTES,
    UTF8_BOM,
    LineReader,
    _binary_kind,
    opens_array,
    over_limit,
)
from lora_core.validation.report import DatasetStats, IssueCollector, PendingIssues, ValidationReport
from lora_core.validation.rules import duplicate_id
from lora_core.validation.sources import ByteSource, LocalFileSource, span_reach
from lora_core.validation.spool import Spool, close_chunks
from lora_core.validation.stats import SAMPLE_COUNT, AddIssue, ExampleTotals, duplicate_example

__all__ = [
    "DEFAULT_FORMAT",
    "FORMAT_SHAPES",
    "file_too_large_report",
    "validate_download",
    "validate_file",
    "validate_stream",
]

READ_BLOCK_BYTES = 1024 * 1024
# What the head of a stored file is read in, up to its first non-blank line (usually line 1).
HEAD_READ_BYTES = 64 * 1024
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


def _first_line_kind(line: bytes) -> tuple[bool, bool]:
    """(non-blank, opens a JSON array) for a line looked at while finding the file's first non-blank line."""
    if line[:1] == b"{" or line.strip(b" \t\r"):
        return True, opens_array(line)
    return False, False


def _first_nonblank(
    first_number: int, data: bytes, too_long_last: bool, line_limit: int, skipped_opens_array: bool
) -> tuple[int | None, int | None]:
    """The number of the first non-blank line in a block, if any, and, when that line opens a JSON array, its byte
    offset in `data` (the file is then a JSON array: `json_array_file`). A line over the limit counts as non-blank,
    and opens an array as any other; `skipped_opens_array` tells for the one skipped after `data` when
    `too_long_last` (reader.LineReader.first_skipped_opens_array)."""
    number = first_number
    start = 0
    end = len(data)
    while start < end:
        stop = data.index(b"\n", start)
        line = data[start:stop]
        # A line over the limit is a record line (`line_too_long`), even of blanks.
        nonblank, array = (True, opens_array(line)) if over_limit(line, line_limit) else _first_line_kind(line)
        if nonblank:
            return number, start if array else None
        number += 1
        start = stop + 1
    if too_long_last:
        return number, end if skipped_opens_array else None
    return None, None


class _Span(NamedTuple):
    """The lines of the source being validated that start in [start, end) (sources.read_span)."""

    start: int
    end: int


# A block to merge: the bytes of whole lines (the stream path) or a span of the source.
Job = BlockJob | _Span


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


def validate_download(
    chunks: Iterable[bytes],
    size: int,
    spool_dir: str | os.PathLike[str],
    fmt: str = DEFAULT_FORMAT,
    limits: ValidationLimits = DEFAULT_LIMITS,
) -> ValidationReport:
    """Validate a stored object of `size` bytes given as the chunks of one download (S3), refusing it unread when
    it is larger than the upload limit.

    A small object is checked as it streams in. A large one is spooled to a file under `spool_dir` (removed
    afterwards), whose spans worker processes check as soon as the download has passed them (spool.py). Exceptions
    raised by `chunks` propagate unchanged; an object that turns out larger or smaller than `size` is
    `SourceChanged`.

    `chunks` is taken over: it is closed (a generator's `close`, which lets its connection go) once the validation
    is done with it, by the thread that reads it, also when the validation stops early or fails. The caller must not
    close it: a spool's thread may still be inside a read.
    """
    if fmt not in FORMAT_SHAPES or size > limits.max_upload_bytes:
        close_chunks(chunks)  # not read at all
        _check_format(fmt)
        return file_too_large_report(size, fmt, limits)
    return run_download_validation(chunks, size, spool_dir, fmt, limits)[0]


def run_download_validation(
    chunks: Iterable[bytes],
    size: int,
    spool_dir: str | os.PathLike[str],
    fmt: str = DEFAULT_FORMAT,
    limits: ValidationLimits = DEFAULT_LIMITS,
) -> tuple[ValidationReport, RunInfo]:
    """`validate_download` without the upload limit, and how it ran; `chunks` is taken over as there."""
    if limits.workers <= 1 or size <= PARALLEL_FROM_BYTES:
        try:
            return run_validation(chunks, fmt, limits)
        finally:
            close_chunks(chunks)
    with Spool(chunks, size, spool_dir) as spool:  # its download thread closes `chunks`
        return run_source_validation(spool.source, fmt, limits, parallel_from_bytes=PARALLEL_FROM_BYTES)


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
    """`validate_file` without the upload limit, with `run_validation`'s knobs and how it ran: the file as a source
    (`run_source_validation`), so a file large enough for worker processes is read here only at its head, and the
    workers read their spans. The report is the one `run_validation` gives on the file's bytes
    (tests/validation/test_file_ranges.py).
    """
    _check_format(fmt)
    with open(path, "rb") as handle:
        source = LocalFileSource.open(handle.fileno(), os.fspath(path))
        try:
            return run_source_validation(
                source,
                fmt,
                limits,
                block_bytes=block_bytes,
                block_lines=block_lines,
                parallel_from_bytes=parallel_from_bytes,
                read_bytes=read_bytes,
            )
        finally:
            source.close()


def run_source_validation(
    source: ByteSource,
    fmt: str = DEFAULT_FORMAT,
    limits: ValidationLimits = DEFAULT_LIMITS,
    *,
    block_bytes: int = BLOCK_BYTES,
    block_lines: int = BLOCK_LINES,
    parallel_from_bytes: int = PARALLEL_FROM_BYTES,
    read_bytes: int | None = None,
) -> tuple[ValidationReport, RunInfo]:
    """Validate a source read at any offset (a local file, a spooled download), with `run_validation`'s knobs, and
    how it ran.

    Text is cut into spans of `block_bytes` that workers read themselves; gzip and binary data, and sources too
    small for workers, are streamed through this process in chunks of `read_bytes` (`run_validation`).
    """
    _check_format(fmt)
    head = source.read(0, SNIFF_BYTES)
    if (
        limits.workers > 1
        and source.size > parallel_from_bytes
        and not head.startswith(GZIP_MAGIC)
        and _binary_kind(head) is None
    ):
        run = _Validation(fmt, limits, block_bytes, block_lines, parallel_from_bytes, -1)
        return run.run_source(source, head, read_bytes or HEAD_READ_BYTES), run.info
    return run_validation(
        _read_once(source, read_bytes or READ_BLOCK_BYTES),
        fmt,
        limits,
        block_bytes=block_bytes,
        block_lines=block_lines,
        parallel_from_bytes=parallel_from_bytes,
        size_hint=source.size,
    )


def _read_once(source: ByteSource, chunk_bytes: int) -> Iterator[bytes]:
    """The source's bytes in order, each chunk released once read: this path reads nothing twice, so a spooled
    download (a gzip object, say) keeps within its window on disk (spool.py)."""
    offset = 0
    for chunk in source.chunks(0, chunk_bytes):
        offset += len(chunk)
        source.release(offset)  # the chunk is a copy: the file's bytes are no longer needed
        yield chunk


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


def _all_new(first_lines: dict[Any, int], flat: list[Any], shift: int) -> bool:
    """Record a block's notes (flat: position, line, key) in `first_lines`, key → first line, when no key repeats
    an earlier one or another in the block, and say so; otherwise change nothing (the in-order path decides)."""
    keys = flat[2::3]
    lines = flat[1::3]
    if shift:
        lines = [line + shift for line in lines]
    new = dict(zip(keys, lines, strict=True))
    if len(new) == len(keys) and first_lines.keys().isdisjoint(new):
        first_lines.update(new)
        return True
    return False


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
        self.in_flight: deque[tuple[Future[BlockResult | None], Job]] = deque()
        # The number of the first line of the next block to merge.
        self.next_line = 1
        # The source whose spans are checked (run_source): where its text starts (after a BOM), the offset of its
        # first non-blank line, and whether workers read spans themselves (False once one found the source
        # changed: this process, which still has the original open, then reads the spans and sends their bytes).
        self.source: ByteSource | None = None
        self.data_start = 0
        self.first_nonblank_at: int | None = None
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
                    skipped_array = reader.first_skipped_opens_array is True
                    first_nonblank, array_at = _first_nonblank(
                        first_number, data, too_long_last, line_limit, skipped_array
                    )
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

    def run_source(self, source: ByteSource, head: bytes, read_bytes: int) -> ValidationReport:
        """`run` on a source that is neither gzip nor binary (`head`, its first bytes, says so), cut into spans that
        workers read themselves. Only the head is read here, up to the first non-blank line: the BOM and a JSON
        array are the reader's findings, and nothing else can break the text."""
        self.source = source
        self.ranges = True
        self.data_start = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
        reader_issues = PendingIssues()
        offset = self.data_start
        array_file = False
        head_reader = LineReader(source.chunks(0, read_bytes), self.limits, reader_issues)
        for _number, line in head_reader:
            if line is None:  # over the limit, and skipped
                nonblank, array_file = True, head_reader.first_skipped_opens_array is True
            else:
                nonblank, array_file = _first_line_kind(line)
            if nonblank:
                self.first_nonblank_at = offset
                break
            offset += len(line) + 1
        reader_issues.move_to(self.issues)  # the BOM
        try:
            if array_file:
                if offset > self.data_start:  # the blank lines before it are checked as usual
                    self._merge(None, _Span(self.data_start, offset))
            else:
                for start in range(self.data_start, source.size, self.block_bytes):
                    self._dispatch(_Span(start, min(start + self.block_bytes, source.size)))
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

    def _span_block(self, span: _Span, first_number: int) -> BlockJob:
        """The span's lines, read here, as a block numbered from `first_number`."""
        assert self.source is not None
        return span_block(
            self.source,
            self.data_start,
            span.start,
            span.end,
            self.first_nonblank_at,
            self.limits.line_limit_bytes,
            first_number,
        )

    def _check_here(self, job: Job, first_number: int) -> BlockResult:
        """Check a block in this process, its lines numbered from `first_number`, against the shape known now."""
        block = self._span_block(job, first_number) if type(job) is _Span else job
        return self.checker.check_bytes(*block, (self.shape, self.shape_line), self.issues.room())

    def _dispatch(self, job: Job) -> None:
        """Check a block here, or hand it to a worker once the input has proved large."""
        self.lines_bytes += job.end - job.start if type(job) is _Span else len(job[1])
        if self.pool is None and self.workers and self.lines_bytes > self.pool_from_bytes:
            self.pool = BlockPool(self.workers, self.fmt, self.limits)
            self.info.workers = self.workers
        if not self.pool_ready and self.pool is not None:
            self.pool_ready = self.lines_bytes > 2 * self.parallel_from_bytes or self.pool.started()
        if not self.pool_ready:
            self._merge(None, job)  # nothing is in flight: checked here, in line order
            return
        assert self.pool is not None
        # Two blocks per worker: one being checked, one waiting, so no worker idles while results are merged.
        while len(self.in_flight) >= 2 * self.workers:
            self._merge_oldest()
        # The issues still listable now bound what this block can add to the list: it need not send more.
        hint = (self.shape, self.shape_line)
        room = self.issues.room()
        future: Future[BlockResult | None]
        if type(job) is _Span and self.ranges:
            assert self.source is not None
            # A spooled object waits here until the download has passed all the worker may read.
            source = self.source.for_worker(span_reach(job.end, self.limits.line_limit_bytes))
            first_nonblank_at = self.first_nonblank_at
            future = self.pool.submit_span(source, self.data_start, job.start, job.end, first_nonblank_at, hint, room)
        else:
            block = self._span_block(job, 1) if type(job) is _Span else job
            future = self.pool.submit(*block, hint, room)
        self.in_flight.append((future, job))

    def _merge_oldest(self) -> None:
        future, job = self.in_flight.popleft()
        result = future.result()
        if result is None:  # the worker found the source changed; this process still has the original open
            self.ranges = False
        self._merge(result, job)

    def _drain(self) -> None:
        while self.in_flight:
            self._merge_oldest()

    def _holds(self, result: BlockResult, first_number: int) -> bool:
        """Whether the block's findings are those of a single pass, given the shape the earlier blocks fixed.

        A block checked without knowing the shape (its hint (None, 0)) while an earlier block, still in flight,
        fixed it, differs only if it fixed another shape (a single pass says `mixed_shapes` there), named its own
        line in `mixed_shapes`, or checked a bare-`conversation_id` line as a conversation before its first shape.
        A block numbered from 1 in a worker that fixed its own shape and then found `mixed_shapes` named that line
        by its number in the span: it is checked again with the right numbers.
        """
        if result.mixed and result.first_number != first_number:
            return False
        if result.hint == (self.shape, self.shape_line):
            return True
        return (
            not result.mixed
            and (result.first_fix is None or result.first_fix[0] == self.shape)
            and (not result.cid_before_fix or self.shape == self.checker.bare_id_shape)
        )

    def _merge(self, result: BlockResult | None, job: Job) -> None:
        """Take a block's result into the file's, in line order; the cross-line rules are decided here.

        None is a block not checked yet, or one a worker could not read from the source: it is checked here."""
        first_number = self.next_line if type(job) is _Span else job[0]
        if result is None:
            result = self._check_here(job, first_number)
        if result.worker is not None:
            pid, peak = result.worker
            peaks = self.info.worker_peak_rss_kib
            peaks[pid] = max(peaks.get(pid, 0), peak)
        if not self._holds(result, first_number):
            result = self._check_here(job, first_number)
        shift = first_number - result.first_number  # a span checked in a worker was numbered from 1
        self.next_line = first_number + result.lines
        if self.shape is None and result.first_fix is not None:
            self.shape, self.shape_line = result.first_fix[0], result.first_fix[1] + shift
        self.record_lines += result.record_lines
        self.has_header = self.has_header or result.has_header
        if shift and len(self.totals.samples) < SAMPLE_COUNT:
            for sample in result.totals.samples:
                sample["line"] += shift
        self.totals.merge(result.totals)
        self._merge_issues(result, shift)
        if type(job) is _Span and self.source is not None:
            # Later spans read from their start - 1 on: nothing before this span's last byte is read again.
            self.source.release(job.end - 1)

    def _merge_issues(self, result: BlockResult, shift: int) -> None:
        """The block's issues, and `duplicate_id` and `duplicate_example` where its notes meet earlier lines', in
        the order a single pass adds them. The usual block, with no duplicate, is taken in bulk."""
        issues = self.issues
        add = issues.add
        notes: list[tuple[int, int, int, Any]] = []  # (stream position, line, kind, id or digest), in-order path
        for kind, flat, first_lines in (
            (0, result.id_notes, self.first_line_of_id),
            (1, result.example_notes, self.first_line_of_example),
        ):
            if flat and not _all_new(first_lines, flat, shift):
                notes += zip(flat[0::3], flat[1::3], [kind] * (len(flat) // 3), flat[2::3], strict=True)
        notes.sort(key=lambda note: note[:3])  # a line's id before its example; a line's notes before the next's
        pending = iter(notes)
        note = next(pending, None)
        for position, entry in enumerate(result.stream):
            while note is not None and note[0] <= position:
                self._duplicate(add, note, shift)
                note = next(pending, None)
            kind = entry[0]
            if type(kind) is str:
                code, line, field_path, message, suggestion, column, offset = entry
                add(code, line + shift, field_path, message, suggestion, column=column, offset=offset)
            elif kind == COUNT_NOTE:
                issues.count_only(entry[1], 1)
        while note is not None:
            self._duplicate(add, note, shift)
            note = next(pending, None)
        for code, number in result.dropped.items():
            if number:
                issues.count_only(code, number)

    def _duplicate(self, add: AddIssue, note: tuple[int, int, int, Any], shift: int) -> None:
        _position, line, kind, key = note
        line += shift
        if kind == 0:
            first = self.first_line_of_id.setdefault(key, line)
            if first != line:
                duplicate_id(add, line, key, first)
        else:
            first = self.first_line_of_example.setdefault(key, line)
            if first != line:
                duplicate_example(add, line, first)

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
                "Check the format chosen and fix the errors of the lines; each example needs an assistant answer.",
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
