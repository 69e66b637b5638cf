"""The validator as a whole: the EQ-12 figures, shapes, gzip, streaming, statistics, the report, the CLI.

Rule codes one by one are pinned in test_rule_codes.py; these tests check what holds across rules and lines.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lora_core.__main__ import main
from lora_core.validation import (
    ValidationLimits,
    ValidationReport,
    file_too_large_report,
    validate_file,
    validate_stream,
)
from lora_core.validation.stats import distribution
from tests.conftest import EQ12_PATH

EQ12 = EQ12_PATH  # the real BrightRun export the issue names: its tests fail, never skip, when it is missing
REPO = Path(__file__).resolve().parents[2]


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def jsonl(records: list[Any]) -> bytes:
    return b"".join(json.dumps(record, ensure_ascii=False).encode() + b"\n" for record in records)


def conversation(conversation_id: str, *turns: tuple[str, str]) -> dict[str, Any]:
    return {"conversation_id": conversation_id, "turns": [{"role": r, "content": c} for r, c in turns]}


def codes(issues: list[Any]) -> list[tuple[int | None, str]]:
    return [(issue.line, issue.code) for issue in issues]


@pytest.fixture(scope="module")
def eq12_bytes() -> bytes:
    return EQ12.read_bytes()


# -- the real export ---------------------------------------------------------------------------------------------


def test_eq12_export_is_ready_with_the_published_figures(eq12_bytes: bytes) -> None:
    report = validate_stream(chunked(eq12_bytes, 1024 * 1024))
    stats = report.stats
    assert report.valid is True
    assert report.shape == "pair"
    assert report.error_count == 0
    assert report.warning_counts == {"repeated_user_input": 44, "over_context_limit": 8}
    assert stats.total_examples == 44
    assert stats.total_conversations == 12
    assert stats.total_training_pairs == 44
    assert stats.total_turns == 88
    assert stats.total_tokens == 58_316
    assert stats.total_target_tokens == 16_533
    assert stats.over_context_limit == 8
    assert stats.avg_turns_per_conversation == round(88 / 12, 2)
    assert stats.avg_tokens_per_pair == round(58_316 / 44, 2)
    # Training messages of a pair: system, history without the repeated last user entry, user input, answer.
    assert stats.messages_per_role.system == 44
    assert stats.messages_per_role.assistant == stats.messages_per_role.user == 104
    first = report.samples[0]
    assert first["line"] == 2  # line 1 is the `_meta` header
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]


def test_validate_file_matches_validate_stream(eq12_bytes: bytes) -> None:
    assert validate_file(EQ12).to_dict() == validate_stream([eq12_bytes]).to_dict()


def test_context_limit_decides_over_context_limit(eq12_bytes: bytes) -> None:
    report = validate_stream([eq12_bytes], limits=ValidationLimits(context_limit=100_000))
    assert report.stats.over_context_limit == 0
    assert "over_context_limit" not in report.warning_counts
    assert report.stats.context_limit == 100_000


# -- the E02 `turns` shape -----------------------------------------------------------------------------------------


def test_e02_turns_shape_file_validates_with_its_statistics() -> None:
    records = [
        conversation("c1", ("system", "Be kind."), ("user", "Hi there"), ("assistant", "Hello! How can I help?")),
        conversation("c2", ("user", "One two"), ("assistant", "three"), ("user", "four"), ("assistant", "five six")),
    ] + [conversation(f"c{i}", ("user", f"question {i}"), ("assistant", f"answer {i}")) for i in range(3, 12)]
    report = validate_stream([jsonl(records)])
    stats = report.stats
    assert report.valid, report.errors
    assert report.shape == "conversation"
    assert stats.total_examples == 11
    assert stats.total_conversations == 11
    assert stats.total_training_pairs == 12  # every assistant turn
    assert stats.total_turns == 2 + 4 + 9 * 2  # user and assistant turns; the system turn is not a turn
    # Tokens ceil(1.3 × words): c1 "Be kind." 2 → 3, "Hi there" 2 → 3, 5 words → 7; c2: 2 → 3, 1 → 2, 1 → 2,
    # 2 → 3; the others 2 → 3 twice.
    assert stats.tokens_per_example.min == 6
    assert stats.total_tokens == 13 + 10 + 9 * 6
    assert stats.total_target_tokens == 7 + (2 + 3) + 9 * 3
    assert stats.messages_per_role.model_dump() == {"system": 1, "user": 12, "assistant": 12}
    assert report.warning_count == 0


def test_repeated_conversation_id_counts_once_with_its_largest_turn_count() -> None:
    records = [
        conversation("same", ("user", "a"), ("assistant", "b")),
        conversation("same", ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")),
    ] + [conversation(f"other{i}", ("user", "x"), ("assistant", f"y{i}")) for i in range(8)]
    stats = validate_stream([jsonl(records)]).stats
    assert stats.total_conversations == 9
    assert stats.total_turns == 4 + 8 * 2
    assert stats.total_training_pairs == 1 + 2 + 8


# -- bytes: gzip, chunk boundaries ---------------------------------------------------------------------------------


def test_gzip_gives_the_same_report_as_plain_text(eq12_bytes: bytes) -> None:
    plain = validate_stream([eq12_bytes]).to_dict()
    assert validate_stream(chunked(gzip.compress(eq12_bytes), 1000)).to_dict() == plain
    # Several members, as `cat a.gz b.gz` makes, and zero padding after the last.
    half = len(eq12_bytes) // 2
    members = gzip.compress(eq12_bytes[:half]) + gzip.compress(eq12_bytes[half:]) + b"\x00" * 16
    assert validate_stream(chunked(members, 333)).to_dict() == plain


def test_gzip_file_on_disk_is_detected_by_content(tmp_path: Path, eq12_bytes: bytes) -> None:
    path = tmp_path / "dataset.jsonl"  # no .gz suffix: the magic bytes decide
    path.write_bytes(gzip.compress(eq12_bytes))
    assert validate_file(path).stats.total_tokens == 58_316


def test_truncated_gzip_keeps_complete_lines_and_drops_the_broken_one() -> None:
    records = [conversation(f"c{i}", ("user", f"question {i}"), ("assistant", f"answer {i}")) for i in range(40)]
    data = gzip.compress(jsonl(records))
    report = validate_stream([data[: len(data) - 30]])  # trailer and last bytes cut off
    assert "invalid_gzip" in report.error_counts
    assert report.errors[0].code == "invalid_gzip" and report.errors[0].line is None
    assert "file_empty" not in report.error_counts
    assert 0 < report.stats.total_examples <= 40
    assert report.error_counts == {"invalid_gzip": 1}  # the cut line is dropped, not reported as bad JSON


def test_decompressed_cap_stops_at_the_limit_and_validates_what_came_before() -> None:
    record = jsonl([conversation("c", ("user", "question"), ("assistant", "answer"))])
    data = record * 1000
    limits = ValidationLimits(decompressed_limit_bytes=len(record) * 5 + 10)
    report = validate_stream([gzip.compress(data)], limits=limits)
    assert report.error_counts == {"decompressed_too_large": 1}
    assert report.stats.total_examples == 5  # the 6th line is cut at the cap and dropped
    assert report.warning_counts == {"duplicate_example": 4, "few_examples": 1}


def test_a_gzip_bomb_is_never_decompressed_whole() -> None:
    bomb = gzip.compress(b"a" * (256 * 1024 * 1024), compresslevel=9)  # 256 MiB in ~250 KiB
    limits = ValidationLimits(decompressed_limit_bytes=64 * 1024 * 1024, line_limit_bytes=1024 * 1024)
    tracemalloc.start()
    report = validate_stream([bomb], limits=limits)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.error_counts == {"decompressed_too_large": 1}
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 64, 4096])
def test_report_does_not_depend_on_chunk_boundaries(chunk_size: int) -> None:
    records = [
        {"messages": [{"role": "user", "content": "Ça va? “Oui” — 🙂"}, {"role": "assistant", "content": "Très bien"}]},
        {"messages": [{"role": "user", "content": "second\u2028line"}, {"role": "assistant", "content": "ok"}]},
    ]
    data = b"\xef\xbb\xbf" + jsonl(records).replace(b"\n", b"\r\n", 1) + b"\n   \n" + b'{"messages": [}\n'
    data += b'{"messages": "\xff"}\n' + jsonl(records[:1])
    whole = validate_stream([data], fmt="openai_chat").to_dict()
    assert validate_stream(chunked(data, chunk_size), fmt="openai_chat").to_dict() == whole
    lines = [(issue["line"], issue["code"]) for issue in whole["errors"] + whole["warnings"]]
    assert (1, "bom") in lines
    assert (4, "blank_line") in lines  # U+2028 inside a string did not end line 2
    assert (5, "invalid_json") in lines
    assert (6, "invalid_utf8") in lines
    assert (7, "duplicate_example") in lines


def test_over_long_line_is_skipped_without_being_held_in_memory() -> None:
    limit = 64 * 1024
    good = jsonl([conversation("c", ("user", "q"), ("assistant", "a"))])

    def stream() -> Iterator[bytes]:
        yield good
        yield b'{"conversation_id": "huge", "turns": [{"role": "user", "content": "'
        for _ in range(32 * 16):  # 32 MiB in 64 KiB pieces, far over the limit
            yield b"x" * (64 * 1024)
        yield b'"}]}\n'
        yield good.replace(b'"c"', b'"d"')

    tracemalloc.start()
    report = validate_stream(stream(), limits=ValidationLimits(line_limit_bytes=limit))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert codes(report.errors) == [(2, "line_too_long")]
    assert report.stats.total_examples == 2  # lines 1 and 3
    assert peak < 8 * 1024 * 1024


def test_line_at_the_limit_is_accepted_and_crlf_is_not_counted() -> None:
    record = json.dumps(conversation("c", ("user", "q"), ("assistant", "a"))).encode()
    limits = ValidationLimits(line_limit_bytes=len(record))
    report = validate_stream([record + b"\r\n" + record + b" \n"], limits=limits)
    assert codes(report.errors) == [(2, "line_too_long")]


def test_exceptions_from_the_byte_source_propagate_unchanged() -> None:
    class StorageDown(Exception):
        pass

    def failing() -> Iterator[bytes]:
        yield b'{"messages": []}\n'
        raise StorageDown("connection reset")

    with pytest.raises(StorageDown, match="connection reset"):
        validate_stream(failing(), fmt="openai_chat")


# -- statistics --------------------------------------------------------------------------------------------------


def test_distribution_uses_nearest_rank_and_power_of_two_bins() -> None:
    values = [0, 1, 2, 3, 3, 5, 8, 8, 9, 20]
    dist = distribution(Counter(values))
    assert (dist.min, dist.p50, dist.p90, dist.p99, dist.max) == (0, 3, 9, 20, 20)
    assert dist.histogram == [
        {"from": 0, "to": 1, "count": 1},
        {"from": 1, "to": 2, "count": 1},
        {"from": 2, "to": 4, "count": 3},
        {"from": 4, "to": 8, "count": 1},
        {"from": 8, "to": 16, "count": 3},
        {"from": 16, "to": None, "count": 1},
    ]


def test_distribution_of_nothing_is_null_with_an_empty_histogram() -> None:
    dist = distribution(Counter())
    assert dist.model_dump() == {"min": None, "p50": None, "p90": None, "p99": None, "max": None, "histogram": []}


def test_distribution_of_one_value_has_one_open_ended_last_bin() -> None:
    assert distribution(Counter({0: 3})).histogram == [{"from": 0, "to": None, "count": 3}]
    assert distribution(Counter({1: 1})).histogram == [
        {"from": 0, "to": 1, "count": 0},
        {"from": 1, "to": None, "count": 1},
    ]


def test_messages_shape_statistics_count_weighted_targets_only() -> None:
    def line(weight: int, answer: str) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "hello there"},
                {"role": "assistant", "content": "first reply", "weight": weight},
                {"role": "user", "content": "more"},
                {"role": "assistant", "content": answer},
            ]
        }

    records = [line(0, f"final answer {i}") for i in range(6)] + [line(1, f"other {i}") for i in range(6)]
    report = validate_stream([jsonl(records)], fmt="openai_chat")
    stats = report.stats
    assert report.valid, report.errors
    assert stats.total_conversations == 12  # one per line
    assert stats.total_training_pairs == 6 * 1 + 6 * 2  # weight-0 answers are context, not targets
    assert stats.total_turns == 12 * 4
    # Per line: sys 2 + "hello there" 3 + "first reply" 3 + "more" 2 + answer (3 words 4 | 2 words 3).
    assert stats.total_tokens == 6 * (2 + 3 + 3 + 2 + 4) + 6 * (2 + 3 + 3 + 2 + 3)
    assert stats.total_target_tokens == 6 * 4 + 6 * (3 + 3)
    assert stats.turns_per_conversation.p50 == 4
    assert report.samples[0]["messages"][2] == {"role": "assistant", "content": "first reply", "weight": 0}


def test_statistics_cover_lines_with_field_errors_but_not_other_shapes() -> None:
    records = [
        conversation("a", ("user", "one two"), ("assistant", "three")),
        conversation("b", ("user", "q"), ("assistant", "   ")),  # empty_content, still counted
        {"id": "x", "target_response": "pair line"},  # mixed_shapes: left out
        {"something": "else"},  # unknown_shape: left out
    ]
    report = validate_stream([jsonl(records)])
    assert report.error_counts == {"empty_content": 1, "mixed_shapes": 1, "unknown_shape": 1}
    assert report.stats.total_examples == 2
    assert report.stats.total_training_pairs == 2


def test_samples_are_the_first_three_examples_cut_to_2000_characters() -> None:
    long_answer = "word " * 1000
    records = [conversation(f"c{i}", ("user", f"q{i}"), ("assistant", long_answer + str(i))) for i in range(5)]
    samples = validate_stream([jsonl(records)]).samples
    assert [sample["line"] for sample in samples] == [1, 2, 3]
    assert len(samples[0]["messages"][1]["content"]) == 2000


# -- the report --------------------------------------------------------------------------------------------------


def test_report_lists_file_issues_first_then_the_first_100_line_issues_in_line_order() -> None:
    data = b"".join(b'{"bad json\n' if i % 2 else b'{"messages": []}\n' for i in range(300))
    report = validate_stream([data], fmt="openai_chat")
    assert report.error_count == 301
    assert report.error_counts == {"invalid_json": 150, "empty_content": 150, "no_training_pairs": 1}
    assert report.errors[0].line is None and report.errors[0].code == "no_training_pairs"
    line_issues = report.errors[1:]
    assert len(line_issues) == 100
    assert [issue.line for issue in line_issues] == list(range(1, 101))
    assert report.valid is False


def test_report_to_dict_is_json_and_omits_column_and_offset_where_they_do_not_apply() -> None:
    data = b'{"messages": [}\n{"messages": "\xff"}\n'
    report = validate_stream([data], fmt="openai_chat")
    payload = json.loads(json.dumps(report.to_dict()))
    assert set(payload) == {
        "valid",
        "format",
        "shape",
        "stats",
        "error_count",
        "warning_count",
        "error_counts",
        "warning_counts",
        "errors",
        "warnings",
        "samples",
    }
    by_code = {issue["code"]: issue for issue in payload["errors"]}
    assert by_code["invalid_json"]["column"] == 15 and "offset" not in by_code["invalid_json"]
    assert by_code["invalid_utf8"]["offset"] == 14 and "column" not in by_code["invalid_utf8"]
    assert "column" not in by_code["no_training_pairs"] and "offset" not in by_code["no_training_pairs"]
    assert ValidationReport.model_validate(payload).to_dict() == payload  # round-trips from the database


def test_every_issue_has_a_message_and_a_suggestion() -> None:
    data = b'[{"a": 1}]\n'
    for fmt, payload in (("openai_chat", data), ("brightrun_lora_v4", b'{"turns": [], "x": 1}\n{"q": 1}\n\n')):
        report = validate_stream([payload], fmt=fmt)
        for issue in report.errors + report.warnings:
            assert issue.message.strip() and issue.suggestion.strip()


def test_file_too_large_report_is_not_valid_and_has_empty_statistics() -> None:
    report = file_too_large_report(600 * 1024 * 1024, "brightrun_lora_v4", ValidationLimits())
    assert report.valid is False
    assert codes(report.errors) == [(None, "file_too_large")]
    assert report.shape is None
    assert report.stats.total_examples == 0
    assert report.stats.tokens_per_example.p50 is None


def test_validate_file_refuses_an_oversized_file_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\x00" * 2000)  # binary: reading it would give not_text instead
    report = validate_file(path, limits=ValidationLimits(max_upload_bytes=1000))
    assert report.error_counts == {"file_too_large": 1}


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown dataset format"):
        validate_stream([b""], fmt="alpaca")


def test_validate_file_raises_oserror_when_the_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        validate_file(tmp_path / "missing.jsonl")


# -- the CLI -----------------------------------------------------------------------------------------------------


def test_cli_exit_0_for_a_ready_dataset_with_a_readable_summary(eq12_bytes: bytes, capsys: Any) -> None:
    assert main(["validate", str(EQ12)]) == 0
    out = capsys.readouterr().out
    assert "READY" in out and "NOT READY" not in out
    assert "58,316" in out
    assert "line 2: repeated_user_input [conversation_history[0]]" in out


def test_cli_exit_1_and_json_report_for_a_dataset_with_errors(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"messages": [{"role": "human", "content": "hi"}]}\n')
    assert main(["validate", str(path), "--format", "openai_chat", "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["valid"] is False
    assert payload["errors"][0]["code"] == "no_training_pairs"
    assert {"line": 1, "code": "unknown_role", "field": "messages[0].role"}.items() <= payload["errors"][1].items()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04binary", b"\n\n"], ids=["empty", "zip", "blank"])
def test_cli_exit_1_for_empty_and_binary_files(tmp_path: Path, content: bytes, capsys: Any) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 1
    assert "NOT READY" in capsys.readouterr().out


def test_cli_context_limit_option(eq12_bytes: bytes, capsys: Any) -> None:
    assert main(["validate", str(EQ12), "--context-limit", "100000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["over_context_limit"] == 0


def test_cli_exit_2_with_json_error_when_the_file_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "lora_core", "validate", str(missing), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    assert "nope.jsonl" in payload["error"] and "No such file" in payload["error"]


def test_cli_exit_2_for_a_directory(tmp_path: Path, capsys: Any) -> None:
    assert main(["validate", str(tmp_path), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["valid"] is False


def test_cli_piped_into_a_reader_that_stops_early_prints_no_traceback(eq12_bytes: bytes) -> None:
    """`validate FILE | head -1` printed a BrokenPipeError traceback in most runs; the exit code is still the
    verdict's. The pipe is closed before the CLI writes, as `head` has by then."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    result = subprocess.run(
        [sys.executable, "-m", "lora_core", "validate", str(EQ12), "--json"],
        cwd=REPO,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 0  # EQ-12 is ready
