"""A local file whose blocks the workers read themselves (validator.run_file_validation) gives the report of a
single pass over its bytes, byte for byte, wherever the newline scan's reads and the blocks are cut.

`_file_blocks` (the offsets of blocks, cut on the reader's rules) is compared with the reader line by line for every
read size and block size; then whole validations with worker processes reading byte ranges are compared with a
single in-process pass, on the boundary cases of test_block_boundaries.py (CRLF, blank lines, over-long lines, a
BOM, a JSON array, no final line end) and random mixes of lines.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_core.validation import ValidationLimits
from lora_core.validation import validator as validator_module
from lora_core.validation.parallel import _check_range
from lora_core.validation.reader import LineReader, over_limit
from lora_core.validation.report import PendingIssues
from lora_core.validation.validator import _file_blocks, run_file_validation, run_validation
from tests.validation.test_block_boundaries import CASES, LINE_KINDS, LONG, PAIRS
from tests.validation.test_rule_codes import V4, encode_line, header, pair

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


def _block_lines(path: Path, start: int, read_bytes: int, block_bytes: int, block_lines: int, line_limit: int) -> list:
    """The lines `_file_blocks` gives, numbered, as the checker sees them (None: over the limit)."""
    lines: list[tuple[int, bytes | None]] = []
    data_of_file = path.read_bytes()
    expected_number = 1
    with open(path, "rb") as handle:
        for number, begin, end, too_long_last in _file_blocks(
            handle, start, block_bytes, block_lines, line_limit, read_bytes
        ):
            assert number == expected_number
            data = data_of_file[begin:end]
            assert begin <= end
            if data and not data.endswith(b"\n"):
                data += b"\n"
            parts: list[bytes | None] = list(data.split(b"\n"))
            parts.pop()
            for part in parts:
                lines.append((number, None if part is not None and over_limit(part, line_limit) else part))
                number += 1
            if too_long_last:
                lines.append((number, None))
                number += 1
            expected_number = number
    return lines


@pytest.mark.parametrize("name", list(CASES))
def test_file_blocks_give_the_readers_lines(name: str, tmp_path: Path) -> None:
    data = CASES[name]
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    expected = _reader_lines(data, LINE_LIMIT)
    for read_bytes in (1, 2, 3, 7, 64, 1000, 5000):
        for block_bytes, block_lines in ((1, ONE_BLOCK), (50, ONE_BLOCK), (ONE_BLOCK, 1), (1500, 2), (ONE_BLOCK, 3)):
            got = _block_lines(path, start, read_bytes, block_bytes, block_lines, LINE_LIMIT)
            assert got == expected, (read_bytes, block_bytes, block_lines)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.integers(0, len(LINE_KINDS) - 1), max_size=25),
    crlf=st.lists(st.booleans(), min_size=25, max_size=25),
    final=st.booleans(),
    read_bytes=st.integers(1, 3000),
    block_bytes=st.integers(1, 4000),
    block_lines=st.integers(1, 6),
)
def test_file_blocks_any_lines(
    tmp_path: Path,
    picks: list[int],
    crlf: list[bool],
    final: bool,
    read_bytes: int,
    block_bytes: int,
    block_lines: int,
) -> None:
    data = b"".join(LINE_KINDS[pick] + (b"\r\n" if crlf[i] else b"\n") for i, pick in enumerate(picks))
    if not final:
        data = data.rstrip(b"\n")
    path = tmp_path / "any.jsonl"
    path.write_bytes(data)
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # the reader drops a BOM; run_file starts after it
    got = _block_lines(path, start, read_bytes, block_bytes, block_lines, LINE_LIMIT)
    assert got == _reader_lines(data, LINE_LIMIT)


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
    """The file moved or replaced after it was opened: the workers' (device, inode) differ, and every block is then
    checked from the caller's open file, with the same report."""
    data = FILE_CASES["header, duplicates and many lines"]
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    real_fstat = os.fstat

    def moved_fstat(fd: int) -> Any:
        stat = real_fstat(fd)
        return SimpleNamespace(st_size=stat.st_size, st_dev=stat.st_dev, st_ino=stat.st_ino + 1)

    monkeypatch.setattr(validator_module.os, "fstat", moved_fstat)
    got, _info = _from_file(path, read_bytes=64, block_bytes=300, block_lines=ONE_BLOCK, line_limit_bytes=LINE_LIMIT)
    monkeypatch.undo()
    assert got == _single_pass(data, line_limit_bytes=LINE_LIMIT)


def test_check_range_refuses_another_file(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(PAIRS) + b"\n")
    stat = os.stat(path)
    args = (0, 10, 1, False, 1, (None, 0), (100, 100))
    assert _check_range(str(path), (stat.st_dev, stat.st_ino + 1), *args) is None
    assert _check_range(str(tmp_path / "gone.jsonl"), (stat.st_dev, stat.st_ino), *args) is None
    assert _check_range(str(path), (stat.st_dev, stat.st_ino), 0, 10**9, *args[2:]) is None  # shorter than asked
