"""A stored file cut into spans that the workers read themselves (validator.run_source_validation) gives the report
of a single pass over its bytes, byte for byte, wherever the spans are cut.

`read_span` (the lines that start in a span, read from the source) is compared with the reader line by line for
every span size; then whole validations with worker processes reading spans are compared with a single in-process
pass, on the boundary cases of test_block_boundaries.py (CRLF, blank lines, over-long lines, a BOM, a JSON array,
no final line end) and random mixes of lines.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_core.validation import ValidationLimits
from lora_core.validation import parallel as parallel_module
from lora_core.validation import sources as sources_module
from lora_core.validation.blocks import BlockChecker
from lora_core.validation.parallel import _check_span
from lora_core.validation.reader import LineReader, over_limit
from lora_core.validation.report import PendingIssues
from lora_core.validation.sources import LocalFileSource, SourceChanged, read_span
from lora_core.validation.validator import run_file_validation, run_validation
from tests.validation.test_block_boundaries import CASES, LINE_KINDS, LONG, PAIRS
from tests.validation.test_rule_codes import V4, BytesSource, encode_line, header, pair

ONE_BLOCK = 1 << 62
LINE_LIMIT = 1100


def _single_pass(data: bytes, **limits: int) -> str:
    report, _info = run_validation(
        iter((data,)) if data else iter(()),
        V4,
        ValidationLimits(workers=0, **limits),
        block_bytes=ONE_BLOCK,
        block_lines=ONE_BLOCK,
    )
    return json.dumps(report.to_dict())


def _from_file(path: Path, *, read_bytes: int, block_bytes: int, block_lines: int, **limits: int) -> tuple[str, Any]:
    report, info = run_file_validation(
        path,
        V4,
        ValidationLimits(workers=2, **limits),
        block_bytes=block_bytes,
        block_lines=block_lines,
        parallel_from_bytes=-1,
        read_bytes=read_bytes,
    )
    return json.dumps(report.to_dict()), info


def _reader_lines(text: bytes, line_limit: int) -> list[tuple[int, bytes | None]]:
    return list(LineReader(iter((text,)), ValidationLimits(line_limit_bytes=line_limit), PendingIssues()))


def _span_lines(data: bytes, span_bytes: int, line_limit: int) -> list[tuple[int, bytes | None]]:
    """The lines `read_span` gives over spans of `span_bytes`, numbered, as the checker sees them (None: over the
    limit)."""
    source = BytesSource(data)
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # the reader drops a BOM; spans start after it
    lines: list[tuple[int, bytes | None]] = []
    number = 1
    expected_first = start
    for span_start in range(start, len(data), span_bytes):
        first, block, too_long_last = read_span(source, start, span_start, span_start + span_bytes, line_limit)
        if block or too_long_last:
            assert first == expected_first  # spans take every line once, in order
        parts: list[bytes] = block.split(b"\n")
        assert parts.pop() == b""  # whole lines, each with its line end
        for part in parts:
            lines.append((number, None if over_limit(part, line_limit) else part))
            number += 1
            expected_first += len(part) + 1
        if too_long_last:
            lines.append((number, None))
            number += 1
            newline = data.find(b"\n", expected_first)
            expected_first = len(data) if newline < 0 else newline + 1
    return lines


@pytest.mark.parametrize("name", list(CASES))
def test_spans_give_the_readers_lines(name: str) -> None:
    data = CASES[name]
    expected = _reader_lines(data, LINE_LIMIT)
    for span_bytes in (1, 2, 3, 7, 50, 64, 1000, 1500, 5000, ONE_BLOCK):
        assert _span_lines(data, span_bytes, LINE_LIMIT) == expected, span_bytes


@pytest.mark.parametrize("overlap", [1, 5, 4096])
def test_spans_read_past_their_end_as_far_as_the_line_goes(overlap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """However little is read past a span at first (SPAN_OVERLAP), its last line is finished, or skipped once over
    the limit, reading on in pieces (EXTEND_BYTES)."""
    monkeypatch.setattr(sources_module, "SPAN_OVERLAP", overlap)
    monkeypatch.setattr(sources_module, "EXTEND_BYTES", 3)
    for name, data in CASES.items():
        for span_bytes in (1, 7, 64, 1500):
            assert _span_lines(data, span_bytes, LINE_LIMIT) == _reader_lines(data, LINE_LIMIT), (name, span_bytes)


@settings(max_examples=80, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(LINE_KINDS) - 1), max_size=25),
    crlf=st.lists(st.booleans(), min_size=25, max_size=25),
    final=st.booleans(),
    span_bytes=st.integers(1, 4000),
)
def test_spans_any_lines(picks: list[int], crlf: list[bool], final: bool, span_bytes: int) -> None:
    data = b"".join(LINE_KINDS[pick] + (b"\r\n" if crlf[i] else b"\n") for i, pick in enumerate(picks))
    if not final:
        data = data.rstrip(b"\n")
    assert _span_lines(data, span_bytes, LINE_LIMIT) == _reader_lines(data, LINE_LIMIT)


def test_a_span_inside_one_long_line_reads_only_itself() -> None:
    """A span that lies inside a line which started before it has no line: it reads itself (and one byte before),
    not the rest of the line, however long."""
    data = b'{"a": 1}\n' + b"x" * 100_000 + b"\n"
    source = BytesSource(data)
    _first, block, too_long_last = read_span(source, 0, 50_000, 50_100, LINE_LIMIT)
    assert (block, too_long_last) == (b"", False)
    assert source.reads == 1


FILE_CASES = {
    **CASES,
    "header, duplicates and many lines": b"\n".join(
        [encode_line(header()), *PAIRS, *PAIRS[:3], b"", *[encode_line(pair(i)) for i in range(7, 60)]]
    )
    + b"\n",
    "a bom and an over-long last line without its line end": b"\xef\xbb\xbf" + b"\n".join(PAIRS) + b"\n" + LONG,
    "an over-long line between blocks, crlf": b"\r\n".join([*PAIRS[:3], LONG, LONG, *PAIRS[3:]]) + b"\r\n",
    "a json array on the first line": b"[" + PAIRS[0] + b",\n" + PAIRS[1] + b"]\n",
    "blank lines only": b"\n \r\n\t\n",
}


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_workers_reading_byte_ranges_give_the_single_pass_report(name: str, tmp_path: Path) -> None:
    data = FILE_CASES[name]
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    single = _single_pass(data, line_limit_bytes=LINE_LIMIT)
    for read_bytes, block_bytes, block_lines in ((7, 100, 3), (1000, 1, ONE_BLOCK)):
        got, info = _from_file(
            path, read_bytes=read_bytes, block_bytes=block_bytes, block_lines=block_lines, line_limit_bytes=LINE_LIMIT
        )
        assert got == single, (read_bytes, block_bytes, block_lines)
        if json.loads(single)["stats"]["total_examples"] > 3 and "json array" not in name:
            assert info.workers == 2 and info.worker_peak_rss_kib  # the workers did check blocks


@pytest.mark.parametrize(
    "data",
    [gzip.compress(b"\n".join(PAIRS) + b"\n"), b"PK\x03\x04" + b"\x00" * 100, b"\x00\x01" + b"\n".join(PAIRS)],
    ids=["gzip", "zip", "binary"],
)
def test_gzip_and_binary_files_keep_the_stream_path(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    got, _info = _from_file(path, read_bytes=5, block_bytes=100, block_lines=2, line_limit_bytes=LINE_LIMIT)
    assert got == _single_pass(data, line_limit_bytes=LINE_LIMIT)


def test_a_worker_that_cannot_read_the_file_leaves_its_block_to_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file replaced after it was opened: the workers find another (device, inode) at its path, and every span
    is then read from the caller's open file and checked with the same report."""
    data = FILE_CASES["header, duplicates and many lines"]
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    real_open = LocalFileSource.open.__func__  # type: ignore[attr-defined]

    def replaced_open(cls: type[LocalFileSource], fd: int, name: str) -> LocalFileSource:
        source = real_open(cls, fd, name)
        source.close()
        replaced = dataclasses.replace(source, inode=source.inode + 1)  # what the path no longer is
        sources_module._LOCAL_FDS[(replaced.path, replaced.device, replaced.inode)] = fd
        return replaced

    monkeypatch.setattr(LocalFileSource, "open", classmethod(replaced_open))
    got, info = _from_file(path, read_bytes=64, block_bytes=300, block_lines=ONE_BLOCK, line_limit_bytes=LINE_LIMIT)
    monkeypatch.undo()
    assert got == _single_pass(data, line_limit_bytes=LINE_LIMIT)
    assert info.workers == 2 and info.worker_peak_rss_kib  # the blocks were still checked by the workers
    assert not sources_module._LOCAL_FDS  # the caller forgot its descriptor when it was done


def test_check_span_refuses_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel_module, "_checker", BlockChecker(V4, ValidationLimits(line_limit_bytes=LINE_LIMIT)))
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(PAIRS) + b"\n")
    stat = os.stat(path)
    same = LocalFileSource(str(path), stat.st_dev, stat.st_ino, stat.st_size)
    args = (0, 0, 100, None, (None, 0), (100, 100))
    result = _check_span(same, *args)
    assert result is not None and result.lines == 1 and result.first_number == 1
    assert _check_span(dataclasses.replace(same, inode=stat.st_ino + 1), *args) is None
    assert _check_span(LocalFileSource(str(tmp_path / "gone.jsonl"), stat.st_dev, stat.st_ino, 10), *args) is None
    longer = LocalFileSource(str(tmp_path / "other.jsonl"), 0, 0, stat.st_size + 10)
    (tmp_path / "other.jsonl").write_bytes(path.read_bytes())
    other = os.stat(tmp_path / "other.jsonl")
    longer = dataclasses.replace(longer, device=other.st_dev, inode=other.st_ino)
    with pytest.raises(SourceChanged):  # shorter than it was when the validation started
        read_span(longer, 0, stat.st_size, stat.st_size + 10, LINE_LIMIT)
    assert _check_span(longer, 0, stat.st_size, stat.st_size + 10, None, (None, 0), (100, 100)) is None
