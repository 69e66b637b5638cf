"""The reader's blocks of raw bytes (reader.LineReader.blocks) give the report of a single pass, wherever blocks and
chunks are cut: inside a CRLF, around blank lines, through a line over the limit, in gzip data cut short.

Each input is validated with one chunk and one block (the reference), then with tiny chunks and tiny blocks, in
this process and in worker processes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_core.validation import ValidationLimits
from lora_core.validation.validator import run_validation
from tests.validation.test_rule_codes import V4, encode_line, pair

ONE_BLOCK = 1 << 62


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _report(data: bytes, *, chunk: int, block_bytes: int, block_lines: int, workers: int = 0, **limits: int) -> str:
    report, _info = run_validation(
        _chunks(data, chunk) if data else iter(()),
        V4,
        ValidationLimits(workers=workers, **limits),
        block_bytes=block_bytes,
        block_lines=block_lines,
        parallel_from_bytes=-1,
    )
    return json.dumps(report.to_dict())


def assert_cut_anywhere(data: bytes, *, workers: bool = False, **limits: int) -> dict:
    single = _report(data, chunk=max(len(data), 1), block_bytes=ONE_BLOCK, block_lines=ONE_BLOCK, **limits)
    for chunk in (1, 3, 64, 1000):
        for block_bytes, block_lines in ((1, ONE_BLOCK), (50, ONE_BLOCK), (ONE_BLOCK, 1), (1500, 2)):
            cut = _report(data, chunk=chunk, block_bytes=block_bytes, block_lines=block_lines, **limits)
            assert cut == single, (chunk, block_bytes, block_lines)
    if workers:
        assert _report(data, chunk=7, block_bytes=100, block_lines=3, workers=2, **limits) == single
    return json.loads(single)


PAIRS = [encode_line(pair(i)) for i in range(1, 7)]
LONG = b'{"x": "' + b"y" * 1200 + b'"}'

CASES: dict[str, bytes] = {
    "crlf everywhere": b"\r\n".join(PAIRS) + b"\r\n",
    "crlf, no final line end": b"\r\n".join(PAIRS),
    "blank lines at the edges": b"\n \n" + b"\n\n".join(PAIRS) + b"\n\t\r\n\n",
    "over-long lines spanning chunks and blocks": b"\n".join([PAIRS[0], LONG, PAIRS[1], LONG + b"\r", LONG, PAIRS[2]]),
    "over-long first and last lines": LONG + b"\n" + b"\n".join(PAIRS) + b"\n" + LONG,
    "an over-long line after blank lines only": b"\n  \n" + LONG + b"\n" + PAIRS[0] + b"\n",
    "bom and a json array after blank lines": b"\xef\xbb\xbf\n \n[" + PAIRS[0] + b"]\n" + PAIRS[1] + b"\n",
    # A list saved with json.dump is one line: over the limit, it is still a JSON array, not a line too long.
    "an over-long json array after blank lines": b"\n \n \t[" + b", ".join(PAIRS) + b"]\n" + PAIRS[0] + b"\n",
    "an over-long json array alone, no line end": b"[" + b", ".join(PAIRS) + b"]",
    "a line exactly at the limit, with and without CR": b"\n".join(
        [b'{"a": "' + b"z" * (1100 - 9) + b'"}', b'{"a": "' + b"z" * (1100 - 9) + b'"}\r', PAIRS[3]]
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_blocks_cut_anywhere_give_the_single_pass_report(name: str) -> None:
    assert_cut_anywhere(CASES[name], workers=True, line_limit_bytes=1100)


def test_the_cases_have_what_they_are_named_for() -> None:
    long = assert_cut_anywhere(CASES["over-long lines spanning chunks and blocks"], line_limit_bytes=1100)
    assert long["error_counts"] == {"line_too_long": 3}
    edges = assert_cut_anywhere(CASES["over-long first and last lines"], line_limit_bytes=1100)
    assert [issue["line"] for issue in edges["errors"]] == [1, 8]
    array = assert_cut_anywhere(CASES["bom and a json array after blank lines"])
    assert array["error_counts"] == {"json_array_file": 1} and array["warning_counts"] == {"bom": 1, "blank_line": 2}
    for name in ("an over-long json array after blank lines", "an over-long json array alone, no line end"):
        assert max(len(line) for line in CASES[name].split(b"\n")) > 2 * 1100
        long_array = assert_cut_anywhere(CASES[name], line_limit_bytes=1100)
        assert long_array["error_counts"] == {"json_array_file": 1}, name
        assert [(issue["code"], issue["line"]) for issue in long_array["errors"]] == [("json_array_file", 1)]


def test_gzip_cut_short_and_capped_at_every_point() -> None:
    data = b"\n".join([*PAIRS, LONG, b"", *PAIRS]) + b"\n"
    packed = gzip.compress(data)
    for end in range(10, len(packed), max(1, len(packed) // 25)):
        assert_cut_anywhere(packed[:end], line_limit_bytes=1100)
    for cap in (100, len(data) // 3, len(data) - 5):
        assert_cut_anywhere(packed, line_limit_bytes=1100, decompressed_limit_bytes=cap)


def test_a_json_array_stops_reading_before_a_later_gzip_cap() -> None:
    """A line-by-line reader stops at the array; reading a whole block first must not add `decompressed_too_large`."""
    data = b"\n\n[" + PAIRS[0] + b"]\n" + b"\n".join(PAIRS * 40) + b"\n"
    report = assert_cut_anywhere(gzip.compress(data), decompressed_limit_bytes=len(data) - 100)
    assert report["error_counts"] == {"json_array_file": 1}


LINE_KINDS = [*PAIRS[:3], LONG, b"", b" \t", b"\r", b"{broken", b"[1]", b"\xef\xbb\xbf{}"]


@settings(max_examples=40, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(LINE_KINDS) - 1), max_size=25),
    crlf=st.lists(st.booleans(), min_size=25, max_size=25),
    final=st.booleans(),
    gz=st.booleans(),
)
def test_any_lines_cut_anywhere(picks: list[int], crlf: list[bool], final: bool, gz: bool) -> None:
    data = b"".join(LINE_KINDS[pick] + (b"\r\n" if crlf[i] else b"\n") for i, pick in enumerate(picks))
    if not final:
        data = data.rstrip(b"\n")
    assert_cut_anywhere(gzip.compress(data) if gz else data, line_limit_bytes=1100)
