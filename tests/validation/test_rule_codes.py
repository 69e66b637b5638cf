"""Every rule code of the dataset validator, pinned to /work/shared/FORMAT.md (the contract).

Each test feeds bytes to `validate_stream` in small chunks (so records and multi-byte characters straddle chunk
boundaries the way they straddle storage reads) and asserts what a data scientist acts on: the code, whether it
is an error or a warning, the physical line, the field path, and whether the dataset is ready (`valid`).

Records are built from one valid baseline per shape (`pair`, `conversation`, `messages`) and one field is changed
per test, so an unexpected extra issue on the line shows up as a failure too.
"""

from __future__ import annotations

import copy
import gzip
import itertools
import json
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from lora_core.validation import ValidationLimits, file_too_large_report, validate_stream
from lora_core.validation import rules as rules_module
from tests.conftest import EQ12_PATH

MIB = 1024 * 1024
V4 = "brightrun_lora_v4"
V3 = "brightrun_lora_v3"
OPENAI = "openai_chat"
CHUNK_SIZE = 7
DEFAULT_LIMITS: dict[str, int] = {
    "context_limit": 2048,
    "line_limit_bytes": 16 * MIB,
    "decompressed_limit_bytes": 4 * 500 * MIB,
    "max_upload_bytes": 500 * MIB,
}
SCAFFOLDING_KEYS = ("persona_archetype", "emotional_arc", "emotional_arc_key", "training_topic", "training_topic_key")
EQ12 = EQ12_PATH  # the real BrightRun export (CC-BY-4.0, © 2025 BrightRun); required, so never skipped

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, OS unknown

DELETE = object()  # sentinel for `changed`: remove the key instead of setting it
UNCHECKED = object()  # sentinel for `expect_*`: do not compare the field path

Line = str | bytes | dict[str, Any] | list[Any]


# --------------------------------------------------------------------------------------------------- feeding


def encode_line(line: Line) -> bytes:
    """bytes and str go in verbatim (so broken JSON stays broken); dicts and lists are dumped as compact JSON."""
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode("utf-8")
    return json.dumps(line, ensure_ascii=False).encode("utf-8")


def to_jsonl(lines: list[Line], *, line_end: bytes = b"\n", final_newline: bool = True) -> bytes:
    data = line_end.join(encode_line(line) for line in lines)
    return data + line_end if final_newline and lines else data


def limits(**overrides: int) -> ValidationLimits:
    return ValidationLimits(**{**DEFAULT_LIMITS, **overrides})


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class BytesSource:
    """A byte source (validation.sources.ByteSource) over bytes in memory, counting its reads; picklable, so
    worker processes read their spans of it too. A read before what was released fails the test: a spool has
    freed those bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.reads = 0
        self.released = 0

    def read(self, offset: int, length: int) -> bytes:
        assert offset >= self.released, f"read at {offset}, after bytes before {self.released} were released"
        self.reads += 1
        return self.data[offset : offset + length]

    def chunks(self, offset: int, chunk_bytes: int) -> Iterator[bytes]:
        return chunked(self.data[offset:], chunk_bytes)

    def for_worker(self, reach: int) -> BytesSource:
        return self

    def release(self, offset: int) -> None:
        self.released = max(self.released, offset)


def validate_bytes(data: bytes, fmt: str = V4, *, chunk_size: int = CHUNK_SIZE, **limit_overrides: int) -> dict:
    report = validate_stream(chunked(data, chunk_size), fmt=fmt, limits=limits(**limit_overrides))
    return report.to_dict()


def run(lines: list[Line], fmt: str = V4, **limit_overrides: int) -> dict:
    """Validate `lines` joined with `\\n` (plus one final `\\n`, which must not start a new line)."""
    return validate_bytes(to_jsonl(lines), fmt, **limit_overrides)


# --------------------------------------------------------------------------------------------------- reading


def all_issues(d: dict) -> list[dict]:
    return d["errors"] + d["warnings"]


def describe(d: dict) -> str:
    return "\n".join(
        f"  {'E' if i in d['errors'] else 'W'} line={i['line']} {i['code']} field={i['field']!r}: {i['message']}"
        for i in all_issues(d)
    )


def codes_at(d: dict, line: int | None) -> list[str]:
    """Codes of every issue (errors and warnings) on `line`, sorted."""
    return sorted(i["code"] for i in all_issues(d) if i["line"] == line)


def error_codes_at(d: dict, line: int | None) -> list[str]:
    return sorted(i["code"] for i in d["errors"] if i["line"] == line)


def file_codes(d: dict) -> list[str]:
    return codes_at(d, None)


def line_issues(d: dict) -> list[dict]:
    return [i for i in all_issues(d) if i["line"] is not None]


def issue(d: dict, code: str) -> dict:
    """The single issue with `code`, wherever it is."""
    found = [i for i in all_issues(d) if i["code"] == code]
    assert len(found) == 1, f"expected exactly one {code}, got {len(found)}:\n{describe(d)}"
    return found[0]


def _expect(d: dict, code: str, line: int | None, field: object, *, severity: str) -> dict:
    bucket, other = ("errors", "warnings") if severity == "error" else ("warnings", "errors")
    found = [i for i in d[bucket] if i["code"] == code and i["line"] == line]
    assert len(found) == 1, f"expected one {severity} {code} on line {line}, got {len(found)}:\n{describe(d)}"
    assert not any(i["code"] == code for i in d[other]), f"{code} must be a {severity} only:\n{describe(d)}"
    found_issue = found[0]
    if field is not UNCHECKED:
        assert found_issue["field"] == field, f"{code} on line {line}: field {found_issue['field']!r} != {field!r}"
    assert isinstance(found_issue["message"], str) and found_issue["message"].strip(), "every issue needs a message"
    assert isinstance(found_issue["suggestion"], str) and found_issue["suggestion"].strip(), "and a suggestion"
    if severity == "error":
        assert d["valid"] is False
    return found_issue


def expect_error(d: dict, code: str, line: int | None, field: object = UNCHECKED) -> dict:
    """Exactly one error `code` on `line` (with `field` when given); the code is never a warning; not valid."""
    return _expect(d, code, line, field, severity="error")


def expect_warning(d: dict, code: str, line: int | None, field: object = UNCHECKED) -> dict:
    """Exactly one warning `code` on `line` (with `field` when given); the code is never an error."""
    return _expect(d, code, line, field, severity="warning")


def expect_ready(d: dict) -> None:
    assert d["errors"] == [], f"expected no errors:\n{describe(d)}"
    assert d["error_count"] == 0
    assert d["valid"] is True


def mentions_line(text: str, line: int) -> bool:
    return re.search(rf"(?<![\d.]){line}(?![\d.])", text) is not None


def sample_messages(sample: Any) -> list[dict]:
    """A sample's training messages as role/content pairs (the sample may be the list or wrap it in `messages`)."""
    messages = sample["messages"] if isinstance(sample, dict) else sample
    return [{"role": m["role"], "content": m["content"]} for m in messages]


# --------------------------------------------------------------------------------------------------- builders


def pair(i: int = 1) -> dict:
    """A valid v4 pair line as the BrightRun exporter writes it; `i` keeps ids and contents distinct."""
    return {
        "id": f"pair-{i}",
        "conversation_id": f"conv-{i}",
        "turn_number": 2,
        "conversation_metadata": {
            "client_persona": "Marcus Chen - The Overwhelmed Avoider",
            "persona_archetype": "overwhelmed_avoider",
            "emotional_arc": "Overwhelm → Clarity",
            "emotional_arc_key": "overwhelm_to_clarity",
            "training_topic": "Emergency Fund",
            "training_topic_key": "emergency_fund",
        },
        "system_prompt": "You are a calm, kind financial planning assistant.",
        "conversation_history": [
            {"turn": 1, "role": "user", "content": f"I keep putting off question {i} about my budget."},
            {
                "turn": 2,
                "role": "assistant",
                "content": f"That is very common; let us look at question {i} together.",
                "emotional_state": {"primary": "reassurance", "intensity": 0.4},
            },
        ],
        "current_user_input": f"Where do I even start with question {i}?",
        "emotional_context": {"detected_emotions": {"primary": "anxiety", "intensity": 0.6}},
        "target_response": f"Start by writing down what comes in and goes out each month for question {i}.",
        "training_metadata": {"quality_score": 4, "human_reviewed": False},
    }


def conversation(i: int = 1) -> dict:
    """A valid `conversation` line: system, then two user/assistant exchanges."""
    return {
        "conversation_id": f"conv-{i}",
        "turns": [
            {"role": "system", "content": "You are a calm, kind financial planning assistant."},
            {"role": "user", "content": f"Question {i}: how big should my emergency fund be?"},
            {"role": "assistant", "content": f"For case {i}, three to six months of expenses is a common goal."},
            {"role": "user", "content": f"And where should I keep it, for case {i}?"},
            {"role": "assistant", "content": f"Somewhere safe and easy to reach for case {i}, like savings."},
        ],
    }


def messages(i: int = 1) -> dict:
    """A valid OpenAI chat `messages` line: system, then two user/assistant exchanges."""
    return {
        "messages": [
            {"role": "system", "content": "You are a calm, kind financial planning assistant."},
            {"role": "user", "content": f"Question {i}: how big should my emergency fund be?"},
            {"role": "assistant", "content": f"For case {i}, three to six months of expenses is a common goal."},
            {"role": "user", "content": f"And where should I keep it, for case {i}?"},
            {"role": "assistant", "content": f"Somewhere safe and easy to reach for case {i}, like savings."},
        ]
    }


BUILDERS = {"pair": pair, "conversation": conversation, "messages": messages}


def _path_tokens(path: str) -> list[str | int]:
    return [int(index) if index else key for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)]


def changed(record: dict, path: str, value: Any) -> dict:
    """A deep copy of `record` with `path` (e.g. `conversation_history[0].role`) set to `value`, or removed."""
    result = copy.deepcopy(record)
    *parents, last = _path_tokens(path)
    target: Any = result
    for token in parents:
        target = target[token]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return result


def with_extra_entry(record: dict, array: str, entry: Any) -> dict:
    """Append `entry` to the record's `array`: a bad entry at the end leaves the alternation of the others intact."""
    result = copy.deepcopy(record)
    result[array].append(entry)
    return result


def header() -> dict:
    return {"_meta": {"file_name": "EQ-test", "total_pairs": 3, "version": "4.0.0"}}


def padded(record: dict, size: int) -> bytes:
    """`record` as one JSON line of exactly `size` bytes (padding in an allowed extra top-level key)."""
    base = changed(record, "notes", "")
    missing = size - len(encode_line(base))
    assert missing >= 0
    line = encode_line(changed(record, "notes", "x" * missing))
    assert len(line) == size
    return line


# =================================================================================================== tests


class TestCleanFiles:
    @pytest.mark.parametrize(
        ("fmt", "shape"),
        [(V4, "pair"), (V3, "pair"), (V4, "conversation"), (V3, "conversation"), (OPENAI, "messages")],
    )
    def test_ten_distinct_valid_records_have_no_issues(self, fmt: str, shape: str) -> None:
        d = run([BUILDERS[shape](i) for i in range(1, 11)], fmt)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)
        assert d["warning_count"] == 0
        assert d["format"] == fmt
        assert d["shape"] == shape
        assert d["stats"]["total_examples"] == 10

    def test_exporter_header_is_not_a_record(self) -> None:
        d = run([header()] + [pair(i) for i in range(1, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)
        assert d["stats"]["total_examples"] == 10

    def test_header_is_allowed_with_the_conversation_shape(self) -> None:
        d = run([header()] + [conversation(i) for i in range(1, 11)], V3)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)
        assert d["shape"] == "conversation"


class TestPairFieldErrors:
    @pytest.mark.parametrize(
        ("path", "value", "code"),
        [
            ("target_response", DELETE, "missing_field"),
            ("current_user_input", DELETE, "missing_field"),
            ("conversation_history[0].content", DELETE, "missing_field"),
            ("id", 17, "wrong_type"),
            ("conversation_id", ["conv-1"], "wrong_type"),
            ("turn_number", True, "wrong_type"),
            ("turn_number", 2.0, "wrong_type"),
            ("turn_number", "2", "wrong_type"),
            ("turn_number", 0, "out_of_range"),
            ("turn_number", -3, "out_of_range"),
            ("system_prompt", 5, "wrong_type"),
            ("system_prompt", None, "wrong_type"),
            ("conversation_history", "I asked about budgets.", "wrong_type"),
            ("conversation_history[0].content", 42, "wrong_type"),
            ("current_user_input", 3, "wrong_type"),
            ("target_response", None, "wrong_type"),
            ("target_response", ["Start", "here"], "wrong_type"),
            ("conversation_metadata", None, "wrong_type"),
            ("emotional_context", "calm", "wrong_type"),
            ("training_metadata", [], "wrong_type"),
            ("training_metadata.quality_score", True, "wrong_type"),
            ("training_metadata.quality_score", "4", "wrong_type"),
            ("training_metadata.quality_score", 0.5, "out_of_range"),
            ("training_metadata.quality_score", 0, "out_of_range"),
            ("training_metadata.quality_score", 6, "out_of_range"),
            ("training_metadata.quality_score", 5.5, "out_of_range"),
            ("id", "", "empty_content"),
            ("conversation_id", "", "empty_content"),
            ("current_user_input", "", "empty_content"),
            ("target_response", "  \n\t ", "empty_content"),
            ("conversation_history[0].content", "", "empty_content"),
        ],
    )
    def test_one_bad_field_is_one_error_on_its_line(self, path: str, value: Any, code: str) -> None:
        d = run([pair(1), changed(pair(2), path, value), pair(3)])
        expect_error(d, code, 2, field=path)
        assert error_codes_at(d, 2) == [code], describe(d)
        assert error_codes_at(d, 1) == error_codes_at(d, 3) == []

    @pytest.mark.parametrize("score", [2.5, 3, 4.75, 5, 5.0])
    def test_quality_scores_from_two_and_a_half_to_five_are_accepted_silently(self, score: float) -> None:
        d = run([changed(pair(i), "training_metadata.quality_score", score) for i in range(1, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_quality_score_is_optional(self) -> None:
        d = run([changed(pair(i), "training_metadata", {"human_reviewed": True}) for i in range(1, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    @pytest.mark.parametrize("turn_number", [1, 2, 40])
    def test_positive_integer_turn_numbers_are_accepted(self, turn_number: int) -> None:
        d = run([changed(pair(i), "turn_number", turn_number) for i in range(1, 11)])
        expect_ready(d)

    def test_unknown_extra_keys_are_allowed(self) -> None:
        record = changed(pair(1), "exported_by", "brightrun")
        record["conversation_history"][0]["sentiment"] = "worried"
        d = run([record] + [pair(i) for i in range(2, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_several_bad_fields_on_one_line_are_all_reported(self) -> None:
        record = changed(changed(pair(1), "turn_number", 0), "target_response", "")
        d = run([record])
        expect_error(d, "out_of_range", 1, field="turn_number")
        expect_error(d, "empty_content", 1, field="target_response")


class TestPairWarnings:
    def test_empty_system_prompt_is_a_warning_and_no_system_message_is_trained(self) -> None:
        d = run([changed(pair(1), "system_prompt", "")] + [pair(i) for i in range(2, 11)])
        expect_ready(d)
        expect_warning(d, "empty_system_prompt", 1, field="system_prompt")
        assert codes_at(d, 1) == ["empty_system_prompt"]
        assert d["stats"]["messages_per_role"]["system"] == 9
        assert [m["role"] for m in sample_messages(d["samples"][0])] == ["user", "assistant", "user", "assistant"]

    def test_a_system_prompt_of_spaces_is_not_empty_and_is_trained(self) -> None:
        """FORMAT.md: "empty is a warning"; only `target_response` and assistant content are judged after trimming."""
        d = run([changed(pair(1), "system_prompt", " ")] + [pair(i) for i in range(2, 11)])
        expect_ready(d)
        assert "empty_system_prompt" not in d["warning_counts"], describe(d)
        assert d["stats"]["messages_per_role"]["system"] == 10
        assert sample_messages(d["samples"][0])[0] == {"role": "system", "content": " "}

    @pytest.mark.parametrize("name", ["conversation_metadata", "emotional_context", "training_metadata"])
    def test_each_missing_metadata_object_is_a_warning_naming_it(self, name: str) -> None:
        d = run([pair(1), changed(pair(2), name, DELETE)] + [pair(i) for i in range(3, 11)])
        expect_ready(d)
        expect_warning(d, "missing_metadata", 2, field=name)
        assert codes_at(d, 2) == ["missing_metadata"]

    def test_all_three_missing_metadata_objects_are_three_warnings(self) -> None:
        record = pair(1)
        for name in ("conversation_metadata", "emotional_context", "training_metadata"):
            record = changed(record, name, DELETE)
        d = run([record])
        expect_ready(d)
        fields = sorted(i["field"] for i in d["warnings"] if i["code"] == "missing_metadata" and i["line"] == 1)
        assert fields == ["conversation_metadata", "emotional_context", "training_metadata"]

    def test_missing_scaffolding_is_one_warning_per_line_naming_the_missing_keys(self) -> None:
        record = changed(
            changed(pair(2), "conversation_metadata.persona_archetype", DELETE),
            "conversation_metadata.training_topic_key",
            DELETE,
        )
        d = run([pair(1), record] + [pair(i) for i in range(3, 11)])
        expect_ready(d)
        found = expect_warning(d, "missing_scaffolding", 2)
        assert codes_at(d, 2) == ["missing_scaffolding"]
        assert found["field"] is None or found["field"].startswith("conversation_metadata")
        text = found["message"] + " " + found["suggestion"]
        assert "persona_archetype" in text and "training_topic_key" in text
        assert "emotional_arc_key" not in text

    def test_all_scaffolding_missing_is_still_one_warning(self) -> None:
        d = run([changed(pair(1), "conversation_metadata", {"client_persona": "Marcus"})])
        found = expect_warning(d, "missing_scaffolding", 1)
        for key in SCAFFOLDING_KEYS:
            assert key in found["message"] + " " + found["suggestion"]

    def test_scaffolding_is_not_checked_in_v3(self) -> None:
        d = run([changed(pair(i), "conversation_metadata", {"client_persona": "Marcus"}) for i in range(1, 11)], V3)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_scaffolding_is_not_reported_when_conversation_metadata_is_missing(self) -> None:
        d = run([changed(pair(1), "conversation_metadata", DELETE)])
        expect_warning(d, "missing_metadata", 1, field="conversation_metadata")
        assert "missing_scaffolding" not in d["warning_counts"]

    @pytest.mark.parametrize("score", [1, 2, 2.0, 2.49])
    def test_quality_below_two_and_a_half_is_low_quality(self, score: float) -> None:
        d = run([pair(1), changed(pair(2), "training_metadata.quality_score", score)] + [pair(i) for i in range(3, 11)])
        expect_ready(d)
        expect_warning(d, "low_quality", 2, field="training_metadata.quality_score")
        assert codes_at(d, 2) == ["low_quality"]

    def test_exporter_repeated_user_input_is_a_warning_and_trained_once(self) -> None:
        record = pair(1)
        record["conversation_history"].append({"turn": 3, "role": "user", "content": record["current_user_input"]})
        d = run([record])
        expect_ready(d)
        expect_warning(d, "repeated_user_input", 1)
        assert codes_at(d, 1) == ["repeated_user_input"]
        expected = [
            {"role": "system", "content": record["system_prompt"]},
            {"role": "user", "content": record["conversation_history"][0]["content"]},
            {"role": "assistant", "content": record["conversation_history"][1]["content"]},
            {"role": "user", "content": record["current_user_input"]},
            {"role": "assistant", "content": record["target_response"]},
        ]
        assert sample_messages(d["samples"][0]) == expected
        assert d["stats"]["messages_per_role"] == {"system": 1, "user": 2, "assistant": 2}

    def test_last_history_user_message_that_differs_is_role_order(self) -> None:
        record = pair(1)
        record["conversation_history"].append({"turn": 3, "role": "user", "content": "Something else entirely."})
        d = run([record])
        expect_error(d, "role_order", 1)
        assert "repeated_user_input" not in codes_at(d, 1)

    @pytest.mark.parametrize("suffix", [" ", "\n", "\u3000"])
    @pytest.mark.parametrize("fmt", [V4, V3])
    def test_last_history_user_message_differing_only_in_whitespace_is_role_order(self, suffix: str, fmt: str) -> None:
        """FORMAT.md asks for an entry *equal* to the input: one that differs by a trailing space is another message
        (a trainer would send both), whichever path checks the line."""
        record = pair(1)
        record["conversation_history"].append(
            {"turn": 3, "role": "user", "content": record["current_user_input"] + suffix}
        )
        d = run([record], fmt)
        expect_error(d, "role_order", 1, field="conversation_history[2].role")
        assert "repeated_user_input" not in codes_at(d, 1)

    @pytest.mark.parametrize(
        ("path", "value", "code"),
        [
            ("current_user_input", DELETE, "missing_field"),
            ("current_user_input", 5, "wrong_type"),
            ("conversation_history[2].content", 5, "wrong_type"),
            ("conversation_history[2].content", DELETE, "missing_field"),
        ],
    )
    @pytest.mark.parametrize("fmt", [V4, V3])
    def test_a_history_ending_with_a_user_entry_is_no_role_order_when_one_side_is_unusable(
        self, path: str, value: Any, code: str, fmt: str
    ) -> None:
        """Neither a missing input nor an entry without usable content can "differ": each is reported, left out of
        the training messages, and puts no two user messages in a row (a second error for one problem, before)."""
        record = pair(1)
        record["conversation_history"].append({"turn": 3, "role": "user", "content": "Something else entirely."})
        d = run([changed(record, path, value)], fmt)
        assert error_codes_at(d, 1) == [code], describe(d)
        roles = [message["role"] for message in d["samples"][0]["messages"]]
        assert all(a != b for a, b in itertools.pairwise(roles))  # the training messages alternate


class TestPairRoles:
    @pytest.mark.parametrize(
        ("role", "mapped"),
        [("human", "user"), ("gpt", "assistant"), ("tool", None), ("function", None), ("User", None)],
    )
    def test_unknown_roles_in_history(self, role: str, mapped: str | None) -> None:
        record = with_extra_entry(pair(2), "conversation_history", {"role": role, "content": "Hello there."})
        d = run([pair(1), record])
        found = expect_error(d, "unknown_role", 2, field="conversation_history[2].role")
        assert error_codes_at(d, 2) == ["unknown_role"]
        if mapped:
            assert mapped in found["suggestion"]

    def test_system_in_pair_history_is_unknown_role_even_first(self) -> None:
        record = pair(1)
        record["conversation_history"].insert(0, {"role": "system", "content": "Be kind."})
        d = run([record])
        expect_error(d, "unknown_role", 1, field="conversation_history[0].role")
        assert error_codes_at(d, 1) == ["unknown_role"]

    def test_history_starting_with_assistant_is_role_order(self) -> None:
        record = changed(pair(1), "conversation_history", [{"role": "assistant", "content": "Welcome back!"}])
        d = run([record])
        expect_error(d, "role_order", 1, field="conversation_history[0].role")
        assert error_codes_at(d, 1) == ["role_order"]

    def test_only_the_first_role_order_of_the_history_is_reported(self) -> None:
        history = [
            {"role": "user", "content": "First."},
            {"role": "user", "content": "Second."},
            {"role": "assistant", "content": "Third."},
            {"role": "assistant", "content": "Fourth."},
        ]
        d = run([changed(pair(1), "conversation_history", history)])
        expect_error(d, "role_order", 1, field="conversation_history[1].role")
        assert error_codes_at(d, 1) == ["role_order"]

    def test_entries_reported_for_their_role_are_skipped_by_the_alternation_check(self) -> None:
        record = pair(1)
        record["conversation_history"].insert(1, {"role": "human", "content": "Also this."})
        d = run([record])
        expect_error(d, "unknown_role", 1, field="conversation_history[1].role")
        assert error_codes_at(d, 1) == ["unknown_role"]

    def test_entries_reported_for_their_type_are_skipped_by_the_alternation_check(self) -> None:
        record = pair(1)
        record["conversation_history"].insert(1, "I also asked this.")
        d = run([record])
        expect_error(d, "wrong_type", 1, field="conversation_history[1]")
        assert error_codes_at(d, 1) == ["wrong_type"]

    def test_history_entry_without_role_is_missing_field(self) -> None:
        record = with_extra_entry(pair(1), "conversation_history", {"content": "Who said this?"})
        d = run([record])
        expect_error(d, "missing_field", 1, field="conversation_history[2].role")
        assert error_codes_at(d, 1) == ["missing_field"]

    def test_empty_history_is_allowed(self) -> None:
        d = run([changed(pair(i), "conversation_history", []) for i in range(1, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)


class TestConversationShape:
    def test_empty_turns_is_empty_content_and_nothing_else(self) -> None:
        d = run([conversation(1), changed(conversation(2), "turns", []), conversation(3)])
        expect_error(d, "empty_content", 2, field="turns")
        assert codes_at(d, 2) == ["empty_content"]

    @pytest.mark.parametrize(
        ("path", "value", "code"),
        [
            ("conversation_id", DELETE, "missing_field"),
            ("conversation_id", "", "empty_content"),
            ("conversation_id", 5, "wrong_type"),
            ("turns", "Hello", "wrong_type"),
            ("turns", {"role": "user"}, "wrong_type"),
            ("turns[2].content", 5, "wrong_type"),
            ("turns[2].content", None, "wrong_type"),
            ("turns[2].content", DELETE, "missing_field"),
            ("turns[2].content", "  \n ", "empty_content"),
            ("turns[4].content", "", "empty_content"),
        ],
    )
    def test_one_bad_field_is_one_error_on_its_line(self, path: str, value: Any, code: str) -> None:
        d = run([conversation(1), changed(conversation(2), path, value), conversation(3)])
        expect_error(d, code, 2, field=path)
        assert error_codes_at(d, 2) == [code], describe(d)

    def test_turn_that_is_not_an_object_is_wrong_type(self) -> None:
        d = run([with_extra_entry(conversation(1), "turns", "Thanks!")])
        expect_error(d, "wrong_type", 1, field="turns[5]")
        assert error_codes_at(d, 1) == ["wrong_type"]

    def test_turn_without_role_is_missing_field(self) -> None:
        d = run([with_extra_entry(conversation(1), "turns", {"content": "Thanks!"})])
        expect_error(d, "missing_field", 1, field="turns[5].role")
        assert error_codes_at(d, 1) == ["missing_field"]

    @pytest.mark.parametrize(
        ("role", "mapped"),
        [("human", "user"), ("gpt", "assistant"), ("tool", None), ("function", None), ("User", None)],
    )
    def test_unknown_roles(self, role: str, mapped: str | None) -> None:
        d = run([with_extra_entry(conversation(1), "turns", {"role": role, "content": "Thanks!"})])
        found = expect_error(d, "unknown_role", 1, field="turns[5].role")
        assert error_codes_at(d, 1) == ["unknown_role"]
        if mapped:
            assert mapped in found["suggestion"]

    def test_system_turn_not_first_is_role_order(self) -> None:
        record = conversation(1)
        record["turns"].insert(3, {"role": "system", "content": "Stay on topic."})
        d = run([record])
        expect_error(d, "role_order", 1, field="turns[3].role")
        assert error_codes_at(d, 1) == ["role_order"]

    def test_assistant_after_system_is_role_order(self) -> None:
        record = conversation(1)
        del record["turns"][1]
        d = run([record])
        expect_error(d, "role_order", 1, field="turns[1].role")

    def test_conversation_may_start_without_system_turn(self) -> None:
        records = [conversation(i) for i in range(1, 11)]
        for record in records:
            del record["turns"][0]
        d = run(records)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_only_the_first_role_order_is_reported(self) -> None:
        turns = [
            {"role": "user", "content": "One."},
            {"role": "user", "content": "Two."},
            {"role": "user", "content": "Three."},
            {"role": "assistant", "content": "Four."},
            {"role": "assistant", "content": "Five."},
        ]
        d = run([changed(conversation(1), "turns", turns)])
        expect_error(d, "role_order", 1, field="turns[1].role")
        assert error_codes_at(d, 1) == ["role_order"]

    def test_no_assistant_turn_is_no_assistant_message(self) -> None:
        turns = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello?"}]
        d = run([conversation(1), changed(conversation(2), "turns", turns)])
        expect_error(d, "no_assistant_message", 2)
        assert error_codes_at(d, 2) == ["no_assistant_message"]
        expect_warning(d, "trailing_user_turn", 2)  # FORMAT.md: a trailing user turn is one, with no exception

    def test_trailing_user_turn_is_a_warning(self) -> None:
        record = with_extra_entry(conversation(2), "turns", {"role": "user", "content": "One more thing?"})
        d = run([conversation(1), record] + [conversation(i) for i in range(3, 11)])
        expect_ready(d)
        expect_warning(d, "trailing_user_turn", 2)
        assert codes_at(d, 2) == ["trailing_user_turn"]

    def test_other_keys_top_level_or_in_a_turn_are_allowed(self) -> None:
        records = [changed(conversation(i), "source", "E02") for i in range(1, 11)]
        records[0]["turns"][1]["emotional_state"] = {"primary": "worry"}
        d = run(records)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)


class TestMessagesShape:
    def test_empty_messages_is_empty_content_and_nothing_else(self) -> None:
        d = run([messages(1), {"messages": []}, messages(3)], OPENAI)
        expect_error(d, "empty_content", 2, field="messages")
        assert codes_at(d, 2) == ["empty_content"]

    @pytest.mark.parametrize(
        ("path", "value", "code"),
        [
            ("messages", "Hello", "wrong_type"),
            ("messages[4].content", None, "wrong_type"),
            ("messages[4].content", [{"type": "text", "text": "Savings."}], "wrong_type"),
            ("messages[4].content", 12, "wrong_type"),
            ("messages[4].content", DELETE, "missing_field"),
            ("messages[4].content", " ", "empty_content"),
            ("messages[1].name", 5, "wrong_type"),
            ("messages[2].weight", True, "wrong_type"),
            ("messages[2].weight", False, "wrong_type"),
            ("messages[2].weight", 1.0, "wrong_type"),
            ("messages[2].weight", 0.0, "wrong_type"),
            ("messages[2].weight", "1", "wrong_type"),
            ("messages[2].weight", 2, "out_of_range"),
            ("messages[2].weight", -1, "out_of_range"),
        ],
    )
    def test_one_bad_field_is_one_error_on_its_line(self, path: str, value: Any, code: str) -> None:
        d = run([messages(1), changed(messages(2), path, value), messages(3)], OPENAI)
        expect_error(d, code, 2, field=path)
        assert error_codes_at(d, 2) == [code], describe(d)

    @pytest.mark.parametrize("weight", [0, 1])
    def test_weight_zero_or_one_on_assistant_is_accepted(self, weight: int) -> None:
        d = run([changed(messages(i), "messages[2].weight", weight) for i in range(1, 11)], OPENAI)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_name_string_is_accepted(self) -> None:
        d = run([changed(messages(i), "messages[1].name", "marcus") for i in range(1, 11)], OPENAI)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    @pytest.mark.parametrize("index", [0, 1, 3])
    def test_weight_on_a_non_assistant_message_is_unknown_key(self, index: int) -> None:
        d = run([messages(1), changed(messages(2), f"messages[{index}].weight", 1)], OPENAI)
        expect_ready(d)
        expect_warning(d, "unknown_key", 2, field=f"messages[{index}].weight")
        assert codes_at(d, 2) == ["unknown_key"]

    @pytest.mark.parametrize("key", ["tool_calls", "emotion", "refusal"])
    def test_other_message_keys_are_unknown_key(self, key: str) -> None:
        d = run([messages(1), changed(messages(2), f"messages[2].{key}", [])], OPENAI)
        expect_ready(d)
        expect_warning(d, "unknown_key", 2, field=f"messages[2].{key}")
        assert codes_at(d, 2) == ["unknown_key"]

    def test_other_top_level_keys_are_allowed_metadata(self) -> None:
        d = run([changed(messages(i), "metadata", {"source": "support"}) for i in range(1, 11)], OPENAI)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    @pytest.mark.parametrize(("role", "mapped"), [("human", "user"), ("gpt", "assistant"), ("tool", None)])
    def test_unknown_roles(self, role: str, mapped: str | None) -> None:
        d = run([with_extra_entry(messages(1), "messages", {"role": role, "content": "Thanks!"})], OPENAI)
        found = expect_error(d, "unknown_role", 1, field="messages[5].role")
        assert error_codes_at(d, 1) == ["unknown_role"]
        if mapped:
            assert mapped in found["suggestion"]

    def test_system_not_first_is_role_order(self) -> None:
        record = messages(1)
        record["messages"].insert(3, {"role": "system", "content": "Stay on topic."})
        d = run([record], OPENAI)
        expect_error(d, "role_order", 1, field="messages[3].role")
        assert error_codes_at(d, 1) == ["role_order"]

    def test_no_assistant_message(self) -> None:
        record = {"messages": [{"role": "user", "content": "Hello?"}]}
        d = run([messages(1), record], OPENAI)
        expect_error(d, "no_assistant_message", 2)
        assert error_codes_at(d, 2) == ["no_assistant_message"]
        expect_warning(d, "trailing_user_turn", 2)  # FORMAT.md: a trailing user turn is one, with no exception

    def test_trailing_user_turn_is_a_warning(self) -> None:
        record = with_extra_entry(messages(1), "messages", {"role": "user", "content": "One more?"})
        d = run([record], OPENAI)
        expect_ready(d)
        expect_warning(d, "trailing_user_turn", 1)


class TestShapesAndFormats:
    @pytest.mark.parametrize("fmt", [V4, V3])
    def test_messages_line_in_brightrun_is_wrong_format_naming_openai_chat(self, fmt: str) -> None:
        d = run([pair(1), messages(2), pair(3)], fmt)
        found = expect_error(d, "wrong_format", 2, field=None)
        assert "openai_chat" in found["suggestion"]
        assert codes_at(d, 2) == ["wrong_format"]
        assert d["stats"]["total_examples"] == 2

    @pytest.mark.parametrize("builder", [pair, conversation])
    def test_brightrun_line_in_openai_chat_is_wrong_format_naming_a_brightrun_format(self, builder: Any) -> None:
        d = run([messages(1), builder(2), messages(3)], OPENAI)
        found = expect_error(d, "wrong_format", 2, field=None)
        assert "brightrun_lora_v" in found["suggestion"]
        assert codes_at(d, 2) == ["wrong_format"]
        assert d["stats"]["total_examples"] == 2

    def test_wrong_format_first_line_does_not_fix_the_shape(self) -> None:
        d = run([messages(1), pair(2), conversation(3)])
        expect_error(d, "wrong_format", 1)
        expect_error(d, "mixed_shapes", 3)
        assert d["shape"] == "pair"

    def test_file_of_only_wrong_format_lines_has_no_training_pairs(self) -> None:
        d = run([messages(i) for i in range(1, 4)])
        assert [i["line"] for i in d["errors"] if i["code"] == "wrong_format"] == [1, 2, 3]
        expect_error(d, "no_training_pairs", None)
        assert d["stats"]["total_examples"] == 0

    def test_later_line_of_the_other_accepted_shape_is_mixed_shapes(self) -> None:
        d = run([pair(1), pair(2), conversation(3), pair(4)])
        expect_error(d, "mixed_shapes", 3, field=None)
        assert codes_at(d, 3) == ["mixed_shapes"]
        assert d["shape"] == "pair"
        assert d["stats"]["total_examples"] == 3
        assert d["stats"]["total_training_pairs"] == 3

    def test_conversation_first_fixes_the_shape_for_pairs_later(self) -> None:
        d = run([conversation(1), pair(2)], V3)
        expect_error(d, "mixed_shapes", 2)
        assert d["shape"] == "conversation"

    def test_object_with_no_known_key_is_unknown_shape_naming_its_keys(self) -> None:
        d = run([pair(1), {"prompt": "Hi", "completion": "Hello"}, pair(3)])
        found = expect_error(d, "unknown_shape", 2, field=None)
        assert codes_at(d, 2) == ["unknown_shape"]
        text = found["message"] + " " + found["suggestion"]
        assert "prompt" in text and "completion" in text
        assert d["stats"]["total_examples"] == 2

    @pytest.mark.parametrize(
        "key", ["target_response", "current_user_input", "conversation_history", "turn_number", "system_prompt"]
    )
    def test_any_pair_key_makes_a_pair_line(self, key: str) -> None:
        record = {key: pair(1)[key]}
        d = run([pair(2), record])
        assert "unknown_shape" not in codes_at(d, 2) and "mixed_shapes" not in codes_at(d, 2)
        assert "missing_field" in error_codes_at(d, 2)

    def test_conversation_id_only_line_is_checked_as_the_fixed_shape(self) -> None:
        d = run([pair(1), {"conversation_id": "conv-9"}, pair(3)])
        assert "mixed_shapes" not in codes_at(d, 2)
        missing = {i["field"] for i in d["errors"] if i["line"] == 2 and i["code"] == "missing_field"}
        assert {"target_response", "current_user_input"} <= missing
        assert "turns" not in missing

    def test_conversation_id_only_first_line_is_a_conversation_and_does_not_fix_the_shape(self) -> None:
        d = run([{"conversation_id": "conv-9"}, pair(2), pair(3)])
        expect_error(d, "missing_field", 1, field="turns")
        assert error_codes_at(d, 1) == ["missing_field"]
        assert "mixed_shapes" not in d["error_counts"]
        assert d["shape"] == "pair"

    @pytest.mark.parametrize("where", ["first", "after a messages line"])
    def test_conversation_id_only_line_in_openai_chat_is_messages_missing(self, where: str) -> None:
        """openai_chat has only the `messages` shape: what the line lacks is `messages` (as `turns` under v4)."""
        lines: list[Line] = [{"conversation_id": "conv-9"}]
        if where != "first":
            lines.insert(0, messages(1))
        d = run(lines, OPENAI)
        number = len(lines)
        expect_error(d, "missing_field", number, field="messages")
        assert error_codes_at(d, number) == ["missing_field"]

    @pytest.mark.parametrize("value", ["[1, 2]", '"a string"', "42", "null", "true"])
    def test_valid_json_that_is_not_an_object(self, value: str) -> None:
        d = run([pair(1), value, pair(3)])
        expect_error(d, "not_an_object", 2, field=None)
        assert codes_at(d, 2) == ["not_an_object"]
        assert d["stats"]["total_examples"] == 2


class TestMetaHeader:
    def test_header_after_blank_lines_is_still_the_header(self) -> None:
        d = run(["", header()] + [pair(i) for i in range(1, 11)])
        expect_ready(d)
        expect_warning(d, "blank_line", 1)
        assert codes_at(d, 2) == []

    @pytest.mark.parametrize("value", ["4.0.0", None, [], 89])
    def test_header_meta_not_an_object_is_wrong_type(self, value: Any) -> None:
        d = run([{"_meta": value}, pair(1)])
        expect_error(d, "wrong_type", 1, field="_meta")
        assert codes_at(d, 1) == ["wrong_type"]
        assert d["stats"]["total_examples"] == 1

    def test_header_fields_are_not_checked_or_compared(self) -> None:
        meta = {"_meta": {"file_name": 3, "total_pairs": 89, "version": None, "extra": [1]}}
        d = run([meta] + [pair(i) for i in range(1, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_meta_key_in_a_record_is_misplaced_and_the_record_is_still_checked(self) -> None:
        record = changed(changed(pair(3), "_meta", {"version": "4.0.0"}), "target_response", DELETE)
        d = run([pair(1), pair(2), record])
        expect_error(d, "misplaced_meta", 3, field="_meta")
        expect_error(d, "missing_field", 3, field="target_response")
        assert error_codes_at(d, 3) == ["misplaced_meta", "missing_field"]
        assert d["stats"]["total_examples"] == 3

    def test_meta_with_other_keys_on_the_first_line_is_not_a_header(self) -> None:
        d = run([changed(pair(1), "_meta", {"version": "4.0.0"}), pair(2)])
        expect_error(d, "misplaced_meta", 1, field="_meta")
        assert d["stats"]["total_examples"] == 2

    def test_meta_only_line_later_is_misplaced_meta_alone_and_left_out_of_statistics(self) -> None:
        d = run([pair(i) for i in range(1, 6)] + [header()] + [pair(i) for i in range(6, 11)])
        expect_error(d, "misplaced_meta", 6, field="_meta")
        assert codes_at(d, 6) == ["misplaced_meta"]
        assert d["error_count"] == 1
        assert d["stats"]["total_examples"] == 10
        assert d["stats"]["total_training_pairs"] == 10

    def test_second_header_is_misplaced(self) -> None:
        d = run([header(), header(), pair(1)])
        expect_error(d, "misplaced_meta", 2, field="_meta")
        assert codes_at(d, 1) == []

    def test_header_in_openai_chat_is_misplaced_meta(self) -> None:
        d = run([header()] + [messages(i) for i in range(1, 11)], OPENAI)
        expect_error(d, "misplaced_meta", 1, field="_meta")
        # Removing `_meta` from it would leave `{}`, an unknown shape: the line is what goes.
        assert expect_error(d, "misplaced_meta", 1)["suggestion"] == "Remove this line (it is not training data)."
        assert codes_at(d, 1) == ["misplaced_meta"]
        assert d["stats"]["total_examples"] == 10


class TestFileLevel:
    def test_zero_byte_file_is_file_empty(self) -> None:
        d = validate_bytes(b"")
        expect_error(d, "file_empty", None, field=None)
        assert d["error_count"] == 1
        assert d["warnings"] == []

    def test_header_alone_is_file_empty(self) -> None:
        d = run([header()])
        expect_error(d, "file_empty", None, field=None)
        assert "no_training_pairs" not in d["error_counts"]

    def test_only_blank_lines_is_file_empty(self) -> None:
        d = validate_bytes(b"\n  \n\t\n")
        expect_error(d, "file_empty", None)
        assert [i["line"] for i in d["warnings"] if i["code"] == "blank_line"] == [1, 2, 3]

    def test_file_too_large_report(self) -> None:
        d = file_too_large_report(600 * MIB, V4, limits()).to_dict()
        expect_error(d, "file_too_large", None, field=None)
        assert d["error_count"] == 1
        assert d["format"] == V4
        assert d["warnings"] == []

    @pytest.mark.parametrize("n", [1, 9])
    def test_one_to_nine_training_pairs_is_few_examples(self, n: int) -> None:
        d = run([pair(i) for i in range(1, n + 1)])
        expect_ready(d)
        expect_warning(d, "few_examples", None, field=None)
        assert d["warnings"] == [issue(d, "few_examples")]

    def test_ten_training_pairs_is_enough(self) -> None:
        d = run([pair(i) for i in range(1, 11)])
        assert "few_examples" not in d["warning_counts"]

    def test_few_examples_counts_training_pairs_not_lines(self) -> None:
        d = run([conversation(i) for i in range(1, 6)])  # 5 lines, 2 assistant turns each
        assert d["stats"]["total_training_pairs"] == 10
        assert "few_examples" not in d["warning_counts"]
        assert d["warnings"] == [], describe(d)

    def test_record_lines_without_training_pairs_is_no_training_pairs(self) -> None:
        d = run([{"prompt": "Hi", "completion": "Hello"}, {"prompt": "Bye", "completion": "Bye"}])
        expect_error(d, "no_training_pairs", None, field=None)
        assert "file_empty" not in d["error_counts"]
        assert "few_examples" not in d["warning_counts"]

    def test_only_weight_zero_assistants_is_no_training_pairs(self) -> None:
        records = [changed(changed(messages(i), "messages[2].weight", 0), "messages[4].weight", 0) for i in (1, 2)]
        d = run(records, OPENAI)
        expect_error(d, "no_training_pairs", None)
        assert d["error_count"] == 1
        assert d["stats"]["total_training_pairs"] == 0


class TestBytesAndLines:
    def test_bom_is_stripped_with_a_warning_and_the_line_parses(self) -> None:
        d = validate_bytes(b"\xef\xbb\xbf" + to_jsonl([pair(i) for i in range(1, 11)]))
        expect_ready(d)
        expect_warning(d, "bom", 1, field=None)
        assert codes_at(d, 1) == ["bom"]
        assert d["stats"]["total_examples"] == 10

    def test_crlf_line_ends_are_accepted_silently(self) -> None:
        d = validate_bytes(to_jsonl([pair(i) for i in range(1, 11)], line_end=b"\r\n"))
        expect_ready(d)
        assert d["warnings"] == [], describe(d)
        assert d["stats"]["total_examples"] == 10

    def test_crlf_line_numbers_stay_physical(self) -> None:
        data = to_jsonl([pair(1), "", changed(pair(3), "turn_number", 0)], line_end=b"\r\n")
        d = validate_bytes(data)
        expect_warning(d, "blank_line", 2)
        expect_error(d, "out_of_range", 3, field="turn_number")

    @pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085"])
    def test_unicode_line_separators_inside_strings_do_not_split_lines(self, separator: str) -> None:
        first = changed(pair(1), "target_response", f"First part.{separator}Second part.")
        d = run([first, pair(2), changed(pair(3), "turn_number", 0)])
        expect_error(d, "out_of_range", 3, field="turn_number")
        assert error_codes_at(d, 3) == ["out_of_range"]
        assert d["error_count"] == 1
        assert d["stats"]["total_examples"] == 3

    def test_final_newline_does_not_start_a_new_line(self) -> None:
        d = validate_bytes(to_jsonl([pair(i) for i in range(1, 11)]))
        assert d["warnings"] == [], describe(d)

    def test_missing_final_newline_is_fine(self) -> None:
        d = validate_bytes(to_jsonl([pair(i) for i in range(1, 11)], final_newline=False))
        expect_ready(d)
        assert d["warnings"] == [], describe(d)
        assert d["stats"]["total_examples"] == 10

    def test_a_second_final_newline_is_a_blank_line(self) -> None:
        d = validate_bytes(to_jsonl([pair(i) for i in range(1, 11)]) + b"\n")
        expect_warning(d, "blank_line", 11)
        assert d["warning_count"] == 1

    def test_each_blank_or_whitespace_line_is_a_warning_and_line_numbers_stay_physical(self) -> None:
        lines: list[Line] = [pair(1), "", "   ", "\t", "\r", " \t\r", changed(pair(7), "turn_number", 0)]
        d = run(lines + [pair(i) for i in range(8, 16)])
        assert [i["line"] for i in d["warnings"] if i["code"] == "blank_line"] == [2, 3, 4, 5, 6]
        assert d["warning_counts"] == {"blank_line": 5}
        expect_error(d, "out_of_range", 7, field="turn_number")
        assert d["stats"]["total_examples"] == 10

    @pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 4096])
    def test_multibyte_characters_split_across_chunks_are_valid(self, chunk_size: int) -> None:
        records = [changed(pair(i), "target_response", f"Café — budget 💶 {i} naïve “quotes”") for i in range(1, 11)]
        d = validate_bytes(to_jsonl(records), chunk_size=chunk_size)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_invalid_utf8_reports_the_byte_offset_in_the_line(self) -> None:
        bad = b'{"id": "x\xffy", "target_response": "\xfe"}'
        d = run([pair(1), bad, changed(pair(3), "turn_number", 0)])
        found = expect_error(d, "invalid_utf8", 2, field=None)
        assert found["offset"] == 9
        assert codes_at(d, 2) == ["invalid_utf8"]
        expect_error(d, "out_of_range", 3, field="turn_number")

    def test_invalid_utf8_offset_counts_bytes_not_characters(self) -> None:
        bad = '{"é—": "'.encode() + b"\xc3("  # a lead byte followed by ASCII
        d = run([bad])
        found = expect_error(d, "invalid_utf8", 1)
        assert found["offset"] == len('{"é—": "'.encode())

    def test_encoded_surrogate_bytes_are_invalid_utf8(self) -> None:
        bad = b'{"id": "\xed\xa0\x80"}'  # CESU-8 for U+D800: not UTF-8
        d = run([pair(1), bad])
        found = expect_error(d, "invalid_utf8", 2)
        assert found["offset"] == 8

    @pytest.mark.parametrize(
        ("text", "column"),
        [
            ('{"a": NaN}', 7),
            ('{"a": Infinity}', 7),
            ('{"é": NaN}', 7),
            ('{"éé": 1 2}', 10),
            ('{"id": "p", "turn_number": 1', 29),
            ('{"id": "p"} trailing', 13),
            ('{"a": "b" "c"}', 11),
        ],
    )
    def test_unparseable_json_reports_the_character_column(self, text: str, column: int) -> None:
        d = run([pair(1), text, changed(pair(3), "turn_number", 0)])
        found = expect_error(d, "invalid_json", 2, field=None)
        assert found["column"] == column
        assert codes_at(d, 2) == ["invalid_json"]
        expect_error(d, "out_of_range", 3, field="turn_number")
        assert d["stats"]["total_examples"] == 2

    def test_negative_infinity_is_invalid_json(self) -> None:
        d = run([pair(1), '{"a": -Infinity}'])
        found = expect_error(d, "invalid_json", 2)
        assert isinstance(found["column"], int) and found["column"] >= 7

    def test_truncated_string_is_invalid_json(self) -> None:
        line = encode_line(pair(2))[:-40]
        d = run([pair(1), line, pair(3)])
        expect_error(d, "invalid_json", 2)
        assert codes_at(d, 2) == ["invalid_json"]

    def test_nul_byte_after_the_first_8_kib_is_invalid_json(self) -> None:
        lines: list[Line] = [pair(i) for i in range(1, 20)]
        assert len(to_jsonl(lines)) > 8 * 1024
        nul_line = json.dumps(pair(20), ensure_ascii=False).replace("Start by", "Start\x00by")
        d = run([*lines, nul_line, changed(pair(21), "turn_number", 0)])
        found = expect_error(d, "invalid_json", 20, field=None)
        assert found["column"] == nul_line.index("\x00") + 1
        assert "not_text" not in d["error_counts"]
        expect_error(d, "out_of_range", 21, field="turn_number")

    @pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud83d x"])
    def test_lone_surrogate_escape_is_invalid_unicode(self, escape: str) -> None:
        line = json.dumps(pair(2)).replace("Start by", f"Start {escape} by")
        d = run([pair(1), line, changed(pair(3), "turn_number", 0)])
        expect_error(d, "invalid_unicode", 2, field=None)
        assert codes_at(d, 2) == ["invalid_unicode"]
        expect_error(d, "out_of_range", 3, field="turn_number")

    def test_surrogate_pair_escape_is_valid(self) -> None:
        records = [json.dumps(pair(i)).replace("Start by", "Start \\ud83d\\ude00 by") for i in range(1, 11)]
        d = run(records)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_line_too_long_is_skipped_and_later_lines_keep_their_numbers(self) -> None:
        long_line = padded(pair(2), 5000)
        d = run([pair(1), long_line, changed(pair(3), "turn_number", 0), pair(4)], line_limit_bytes=2000)
        expect_error(d, "line_too_long", 2, field=None)
        assert codes_at(d, 2) == ["line_too_long"]
        expect_error(d, "out_of_range", 3, field="turn_number")
        assert d["stats"]["total_examples"] == 3
        assert d["stats"]["total_training_pairs"] == 3

    def test_huge_line_is_line_too_long(self) -> None:
        long_line = padded(pair(2), 3 * MIB)
        d = validate_bytes(to_jsonl([pair(1), long_line, pair(3)]), chunk_size=65536, line_limit_bytes=2000)
        expect_error(d, "line_too_long", 2)
        assert d["error_count"] == 1

    def test_line_limit_is_inclusive_and_excludes_the_line_end(self) -> None:
        at_limit, over_limit = padded(pair(1), 2000), padded(pair(2), 2001)
        data = to_jsonl([at_limit, over_limit, at_limit.replace(b"pair-1", b"pair-3")], line_end=b"\r\n")
        d = validate_bytes(data, line_limit_bytes=2000)
        expect_error(d, "line_too_long", 2)
        assert codes_at(d, 1) == []
        assert d["error_counts"] == {"line_too_long": 1}

    @pytest.mark.parametrize(
        "prefix",
        [b"", b"   ", b"\xef\xbb\xbf", b"\xef\xbb\xbf \t"],
    )
    def test_one_line_json_array_is_json_array_file_once_and_validation_stops(self, prefix: bytes) -> None:
        array = prefix + encode_line([pair(i) for i in range(1, 4)])
        d = validate_bytes(array + b"\n" + to_jsonl([changed(pair(4), "turn_number", 0)]))
        expect_error(d, "json_array_file", 1, field=None)
        assert [i["code"] for i in d["errors"] if i["line"] is not None] == ["json_array_file"]

    def test_pretty_printed_json_array_is_json_array_file_once(self) -> None:
        data = json.dumps([pair(1), pair(2)], indent=2).encode()
        d = validate_bytes(data)
        expect_error(d, "json_array_file", 1, field=None)
        assert [i["code"] for i in line_issues(d) if i["code"] != "bom"] == ["json_array_file"]

    @pytest.mark.parametrize(
        ("data", "looks_like"),
        [
            (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"dataset.jsonl" * 10, "zip"),
            (b"PAR1\x15\x04\x15\x10\x15\x14L" + b"\x00" * 50 + b"PAR1", "parquet"),
        ],
    )
    def test_zip_and_parquet_are_not_text_naming_what_they_look_like(self, data: bytes, looks_like: str) -> None:
        d = validate_bytes(data)
        found = expect_error(d, "not_text", 1, field=None)
        assert looks_like in found["message"].lower()
        assert [i["code"] for i in line_issues(d)] == ["not_text"]
        assert "file_empty" not in d["error_counts"]

    def test_nul_byte_in_the_first_8_kib_is_not_text_on_line_1(self) -> None:
        data = to_jsonl([pair(1), pair(2)]) + b'{"id": "\x00"}\n' + to_jsonl([changed(pair(4), "turn_number", 0)])
        d = validate_bytes(data)
        expect_error(d, "not_text", 1, field=None)
        assert [i["code"] for i in line_issues(d)] == ["not_text"]

    @pytest.mark.parametrize(("offset", "code"), [(8191, "not_text"), (8192, "invalid_json")])
    def test_nul_byte_detection_window_is_exactly_8_kib(self, offset: int, code: str) -> None:
        lines: list[Line] = [pair(i) for i in range(1, 8)]
        filler = to_jsonl(lines)
        prefix = b'{"id": "'
        pad = offset - len(filler) - len(prefix)
        assert pad > 0
        data = filler + prefix + b"x" * pad + b"\x00" + b'"}\n' + to_jsonl([pair(9)])
        assert data.index(b"\x00") == offset
        d = validate_bytes(data)
        found = expect_error(d, code, 1 if code == "not_text" else 8, field=None)
        if code == "invalid_json":
            assert found["column"] == len(prefix) + pad + 1
            assert d["stats"]["total_examples"] == 8

    def test_binary_inside_gzip_is_not_text(self) -> None:
        d = validate_bytes(gzip.compress(b"PK\x03\x04" + b"\x00" * 100))
        found = expect_error(d, "not_text", 1)
        assert "zip" in found["message"].lower()


class TestGzip:
    def test_single_member_gzip_validates_like_plain_text(self) -> None:
        plain = to_jsonl([pair(i) for i in range(1, 11)] + [changed(pair(11), "turn_number", 0)])
        d = validate_bytes(gzip.compress(plain))
        expect_error(d, "out_of_range", 11, field="turn_number")
        assert d["error_count"] == 1
        assert d["stats"] == validate_bytes(plain)["stats"]

    def test_multi_member_gzip_split_mid_line(self) -> None:
        plain = to_jsonl([pair(i) for i in range(1, 11)] + [changed(pair(11), "turn_number", 0)])
        middle = len(plain) // 2 + 3
        d = validate_bytes(gzip.compress(plain[:middle]) + gzip.compress(plain[middle:]))
        expect_error(d, "out_of_range", 11, field="turn_number")
        assert d["error_count"] == 1
        assert d["stats"]["total_examples"] == 11

    def test_bom_inside_gzip_is_stripped(self) -> None:
        d = validate_bytes(gzip.compress(b"\xef\xbb\xbf" + to_jsonl([pair(i) for i in range(1, 11)])))
        expect_ready(d)
        expect_warning(d, "bom", 1)

    def test_truncated_gzip_keeps_complete_lines_and_drops_the_broken_one(self) -> None:
        plain = to_jsonl([pair(i) for i in range(1, 6)])
        cut = len(to_jsonl([pair(i) for i in range(1, 4)])) + 30  # 3 complete lines, part of line 4
        second_member = gzip.compress(plain[cut:])
        d = validate_bytes(gzip.compress(plain[:cut]) + second_member[:14])  # header and a few bytes: no output
        expect_error(d, "invalid_gzip", None, field=None)
        assert d["stats"]["total_examples"] == 3
        assert d["stats"]["total_training_pairs"] == 3
        expect_warning(d, "few_examples", None)
        assert "file_empty" not in d["error_counts"]
        assert "invalid_json" not in d["error_counts"]
        assert d["error_count"] == 1

    def test_truncated_gzip_stream_mid_deflate(self) -> None:
        plain = to_jsonl([pair(i) for i in range(1, 40)])
        compressed = gzip.compress(plain)
        d = validate_bytes(compressed[: len(compressed) * 2 // 3])
        expect_error(d, "invalid_gzip", None)
        assert "invalid_json" not in d["error_counts"]
        assert "file_empty" not in d["error_counts"]
        assert 0 <= d["stats"]["total_examples"] < 39
        assert d["error_count"] == 1

    @pytest.mark.parametrize("lines", [1, 12, 3000])  # 3000 lines: over 1 MiB, more than one decompressed block
    @pytest.mark.parametrize("trailer", ["crc", "length"])
    def test_bad_trailer_keeps_every_line_before_it(self, lines: int, trailer: str) -> None:
        """FORMAT.md: "the complete lines before the break are validated and counted". A wrong CRC or length
        breaks only after all the data; zlib raises without the output of that call, which used to be lost."""
        plain = to_jsonl([pair(i) for i in range(1, lines + 1)])
        compressed = bytearray(gzip.compress(plain))
        at = len(compressed) - (8 if trailer == "crc" else 4)
        compressed[at : at + 4] = bytes(4) if trailer == "crc" else (len(plain) + 1).to_bytes(4, "little")
        d = validate_bytes(bytes(compressed), chunk_size=len(compressed))  # one read, as from a file or S3
        expect_error(d, "invalid_gzip", None, field=None)
        assert d["stats"]["total_examples"] == lines
        assert d["error_count"] == 1
        assert d["stats"] == validate_bytes(plain)["stats"]

    def test_corrupt_gzip_with_nothing_readable_is_invalid_gzip_not_file_empty(self) -> None:
        d = validate_bytes(GZIP_HEADER + b"\x07" + b"this is not deflate data" * 20)  # 0b111: reserved block type
        expect_error(d, "invalid_gzip", None)
        assert "file_empty" not in d["error_counts"]

    def test_garbage_after_a_good_member_is_invalid_gzip_after_counting_its_lines(self) -> None:
        plain = to_jsonl([pair(i) for i in range(1, 13)])
        d = validate_bytes(gzip.compress(plain) + GZIP_HEADER + b"\x07garbage-garbage-garbage")
        expect_error(d, "invalid_gzip", None)
        assert d["stats"]["total_examples"] == 12
        assert "few_examples" not in d["warning_counts"]

    def test_decompressed_size_cap_stops_validation_after_complete_lines(self) -> None:
        lines: list[Line] = [pair(i) for i in range(1, 21)]
        cap = len(to_jsonl(lines[:12])) + 5
        d = validate_bytes(gzip.compress(to_jsonl(lines)), decompressed_limit_bytes=cap)
        expect_error(d, "decompressed_too_large", None, field=None)
        assert d["stats"]["total_examples"] == 12
        assert d["error_count"] == 1
        assert "file_empty" not in d["error_counts"]
        assert "few_examples" not in d["warning_counts"]

    def test_decompressed_cap_before_the_first_line_ends(self) -> None:
        d = validate_bytes(gzip.compress(to_jsonl([pair(1), pair(2)])), decompressed_limit_bytes=100)
        expect_error(d, "decompressed_too_large", None)
        assert "file_empty" not in d["error_counts"]
        assert d["stats"]["total_examples"] == 0


class TestJsonDetails:
    """JSON as RFC 8259 writes it: what parses, what a number is, and what is not a blank line."""

    def test_duplicate_keys_are_not_detected_and_the_last_value_wins(self) -> None:
        line = encode_line(pair(1))[:-1] + b', "turn_number": 0, "turn_number": 2}'
        d = run([line] + [pair(i) for i in range(2, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_escaped_nul_is_text_not_a_nul_byte(self) -> None:
        records = [json.dumps(pair(i)).replace("Start by", "Start\\u0000by") for i in range(1, 11)]
        d = run(records)
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_whitespace_around_the_object_is_fine(self) -> None:
        d = run([b" \t" + encode_line(pair(i)) + b" \t" for i in range(1, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_form_feed_line_is_not_a_blank_line(self) -> None:
        d = run([pair(1), "\x0c", pair(3)])
        expect_error(d, "invalid_json", 2, field=None)
        assert "blank_line" not in d["warning_counts"]

    def test_json_array_after_blank_lines_is_still_reported_on_line_1(self) -> None:
        d = validate_bytes(b"\n\n" + encode_line([pair(1)]) + b"\n")
        expect_error(d, "json_array_file", 1, field=None)
        assert d["error_counts"] == {"json_array_file": 1}

    def test_invalid_json_column_after_a_bom_counts_from_the_first_character(self) -> None:
        d = validate_bytes(b"\xef\xbb\xbf" + b'{"a": NaN}\n')
        expect_warning(d, "bom", 1)
        assert expect_error(d, "invalid_json", 1)["column"] == 7

    @pytest.mark.parametrize("turn_number", [2**63, 2**64, 10**20])
    def test_integer_turn_number_beyond_64_bits_is_still_an_integer(self, turn_number: int) -> None:
        d = run([changed(pair(i), "turn_number", turn_number) for i in range(1, 11)])
        expect_ready(d)
        assert d["warnings"] == [], describe(d)

    def test_negative_integer_beyond_64_bits_is_out_of_range(self) -> None:
        d = run([changed(pair(1), "turn_number", -(10**20))])
        expect_error(d, "out_of_range", 1, field="turn_number")
        assert error_codes_at(d, 1) == ["out_of_range"]

    def test_integer_weight_beyond_64_bits_is_out_of_range(self) -> None:
        d = run([changed(messages(1), "messages[2].weight", 2**64)], OPENAI)
        expect_error(d, "out_of_range", 1, field="messages[2].weight")
        assert error_codes_at(d, 1) == ["out_of_range"]

    def test_huge_quality_score_is_a_number_out_of_range(self) -> None:
        line = json.dumps(pair(1)).replace('"quality_score": 4', '"quality_score": 1e400')
        d = run([line])
        expect_error(d, "out_of_range", 1, field="training_metadata.quality_score")
        assert error_codes_at(d, 1) == ["out_of_range"]
        message = expect_error(d, "out_of_range", 1)["message"]
        assert message == "`quality_score` is a number too large to represent; it must be from 1 to 5."  # not "inf"

    @pytest.mark.parametrize(
        ("written", "said"),
        [
            ("1e400", "a number too large to represent"),
            ("-1e400", "a negative number too large to represent"),
            ("1e300", "a number written with a decimal point or exponent"),
            ("2.0", "a number written with a decimal point or exponent"),
            ("2.5", "a number with a fraction"),
        ],
    )
    def test_a_turn_number_that_is_no_json_integer_says_how_it_is_written(self, written: str, said: str) -> None:
        line = json.dumps(pair(1)).replace('"turn_number": 2', f'"turn_number": {written}')
        found = expect_error(run([line]), "wrong_type", 1, field="turn_number")
        assert found["message"].startswith(f"`turn_number` is {said};")

    def test_a_number_of_hundreds_of_digits_is_described_not_quoted(self) -> None:
        d = run([changed(pair(1), "turn_number", -(10**400))])
        found = expect_error(d, "out_of_range", 1, field="turn_number")
        assert found["message"] == "`turn_number` is a negative whole number of 401 digits; turns are numbered from 1."

    def test_a_turn_number_of_400_digits_gives_a_report_not_a_crash(self) -> None:
        """FORMAT.md bounds no turn_number; the average of such turns is past a float, and is left out (None)."""
        d = run([changed(pair(i), "turn_number", 10**400) for i in range(1, 11)])
        expect_ready(d)
        assert d["stats"]["total_turns"] == 10 * 10**400 and d["stats"]["avg_turns_per_conversation"] is None
        assert d["stats"]["turns_per_conversation"]["max"] == 10**400

    def test_a_line_of_many_huge_weights_is_parsed_again_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Integers past 64 bits are read again with the standard library: once per line, not once per value (a
        line of 4,000 such weights took 9 s, growing with the square of its length)."""
        record = messages(1)
        weighted = [i for i, message in enumerate(record["messages"]) if message["role"] == "assistant"]
        for index in weighted:
            record["messages"][index]["weight"] = 10**20  # orjson gives a float past 2**64
        calls: list[int] = []

        def counting_loads(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return json.loads(*args, **kwargs)

        monkeypatch.setattr(rules_module, "json", SimpleNamespace(loads=counting_loads))
        d = run([record, record], OPENAI)
        assert [issue["field"] for issue in d["errors"]] == [f"messages[{index}].weight" for index in weighted] * 2
        assert d["error_counts"] == {"out_of_range": 2 * len(weighted)} and len(weighted) == 2
        assert len(calls) == 2  # one per line, for its two weights

    # After a number too large for a double, orjson stops and the standard library reads the line: what orjson
    # would have reported further on must still be found, at its own column.
    @pytest.mark.parametrize("escape", ["\\ud800", "\\udc00\\ud800"])
    def test_lone_surrogate_after_a_huge_number_is_invalid_unicode(self, escape: str) -> None:
        line = json.dumps(pair(1)).replace('"turn_number": 2', '"turn_number": 1e400')
        assert line.index("1e400") < line.index("Start by")
        line = line.replace("Start by", f"Start {escape} by")
        d = run([line])
        found = expect_error(d, "invalid_unicode", 1, field=None)
        assert found["column"] == line.index(escape[:6]) + 1
        assert codes_at(d, 1) == ["invalid_unicode"]

    def test_escaped_backslash_before_u_is_not_a_surrogate(self) -> None:
        line = json.dumps(pair(1)).replace('"turn_number": 2', '"turn_number": 1e400')
        d = run([line.replace("Start by", "Start \\\\ud800 by")])
        expect_error(d, "wrong_type", 1, field="turn_number")  # read as infinity: a float, not an integer
        assert error_codes_at(d, 1) == ["wrong_type"]

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_constant_after_a_huge_number_is_invalid_json_at_the_constant(self, constant: str) -> None:
        line = f'{{"n": 1e400, "messages": [], "x": {constant}}}'
        d = run([line], OPENAI)
        found = expect_error(d, "invalid_json", 1, field=None)
        assert found["column"] == line.index(constant) + 1
        assert constant in found["message"]

    def test_truncated_line_after_a_huge_number_is_invalid_json(self) -> None:
        """The standard library puts an unexpected end at the end of the text: that is not "parsed" (a review found
        the line skipped without an issue, and the file passed as ready)."""
        line = json.dumps(changed(messages(2), "messages[2].weight", 1)).replace('"weight": 1', '"weight": 1e400')
        d = run([messages(1), line[:-1]] + [messages(i) for i in range(3, 11)], OPENAI)
        found = expect_error(d, "invalid_json", 2, field=None)
        assert found["column"] == len(line)  # the end of the truncated line
        assert d["valid"] is False

    @pytest.mark.parametrize("value", ["9" * 5000, "[" * 3000 + "]" * 3000])
    def test_what_the_standard_library_cannot_read_after_a_huge_number_is_invalid_json(self, value: str) -> None:
        """An integer of over 4,300 digits, or nesting deeper than Python's recursion: no crash of the validation."""
        d = run([f'{{"n": 1e400, "x": {value}, "messages": []}}'], OPENAI)
        expect_error(d, "invalid_json", 1, field=None)

    def test_many_escaped_quotes_after_a_huge_number_take_linear_time(self) -> None:
        line = '{"n": 1e400, "b": "' + '\\"' * 400_000  # an unterminated string of 800 KB
        started = time.perf_counter()
        found = expect_error(run([line], OPENAI), "invalid_json", 1, field=None)
        assert time.perf_counter() - started < 5  # quadratic, it took about an hour; linear, well under a second
        assert found["column"] == line.index('"b"') + 6  # the string that does not end

    def test_syntax_error_after_a_huge_number_is_invalid_json_at_the_error(self) -> None:
        line = '{"n": 1e400, "messages": [1,}'
        found = expect_error(run([line], OPENAI), "invalid_json", 1, field=None)
        assert found["column"] == line.index("}") + 1


class TestDatasetWide:
    def test_duplicate_id_is_on_the_later_line_naming_the_first(self) -> None:
        d = run([pair(1), pair(2), changed(pair(3), "id", "pair-1")])
        found = expect_error(d, "duplicate_id", 3, field="id")
        assert mentions_line(found["message"], 1)
        assert codes_at(d, 1) == []

    def test_duplicate_example_names_the_first_line(self) -> None:
        copy_a = changed(changed(pair(1), "id", "copy-a"), "conversation_id", "conv-a")
        copy_b = changed(changed(pair(1), "id", "copy-b"), "conversation_id", "conv-b")
        d = run([pair(1), pair(2), copy_a, copy_b])
        expect_ready(d)
        for line in (3, 4):
            found = expect_warning(d, "duplicate_example", line)
            assert mentions_line(found["message"], 1), found["message"]
        assert codes_at(d, 1) == []

    def test_training_messages_decide_duplicates_not_metadata(self) -> None:
        other = changed(changed(pair(1), "id", "copy"), "training_metadata.quality_score", 5)
        other = changed(other, "emotional_context", {"detected_emotions": {"primary": "joy"}})
        d = run([pair(1), other])
        expect_warning(d, "duplicate_example", 2)

    def test_repeated_user_entry_is_not_part_of_the_training_messages(self) -> None:
        repeated = changed(pair(1), "id", "repeated")
        repeated["conversation_history"].append({"role": "user", "content": repeated["current_user_input"]})
        d = run([pair(1), repeated])
        expect_warning(d, "repeated_user_input", 2)
        expect_warning(d, "duplicate_example", 2)

    def test_a_history_answer_equal_to_another_lines_target_is_a_duplicate(self) -> None:
        """FORMAT.md compares role and content (and, for `messages`, weight), not which message is the target: a
        pair line without input and target trains the same messages as one whose target is its history's answer."""
        record = pair(1)
        no_target = changed(
            changed(changed(record, "id", "no-target"), "current_user_input", DELETE), "target_response", DELETE
        )
        no_target["conversation_history"] = [
            {"role": "user", "content": record["current_user_input"]},
            {"role": "assistant", "content": record["target_response"]},
        ]
        with_target = changed(record, "conversation_history", [])
        for order in ([no_target, with_target], [with_target, no_target]):
            d = run(order, V3)
            expect_warning(d, "duplicate_example", 2)

    def test_different_system_prompt_is_not_a_duplicate(self) -> None:
        d = run([pair(1), changed(changed(pair(1), "id", "copy"), "system_prompt", "You are brief.")])
        assert "duplicate_example" not in d["warning_counts"]

    def test_duplicate_conversations(self) -> None:
        d = run([conversation(1), changed(conversation(1), "conversation_id", "conv-copy")])
        expect_warning(d, "duplicate_example", 2)

    def test_messages_weight_is_part_of_the_comparison(self) -> None:
        d = run([messages(1), changed(messages(1), "messages[2].weight", 0)], OPENAI)
        assert "duplicate_example" not in d["warning_counts"]

    def test_invalid_weight_counts_as_one_for_duplicates(self) -> None:
        d = run(
            [changed(messages(1), "messages[2].weight", 1), changed(messages(1), "messages[2].weight", True)], OPENAI
        )
        expect_error(d, "wrong_type", 2, field="messages[2].weight")
        expect_warning(d, "duplicate_example", 2)

    def test_over_context_limit_is_strictly_more_tokens(self) -> None:
        user = {"role": "user", "content": "hi"}  # 1 word -> 2 tokens
        at_limit = {"messages": [user, {"role": "assistant", "content": "a b c d e f"}]}  # 2 + 8 = 10
        over_limit = {"messages": [user, {"role": "assistant", "content": "a b c d e f g"}]}  # 2 + 10 = 12
        d = run([at_limit, over_limit], OPENAI, context_limit=10)
        expect_ready(d)
        expect_warning(d, "over_context_limit", 2)
        assert "over_context_limit" not in codes_at(d, 1)

    def test_over_context_limit_is_per_example_in_pairs(self) -> None:
        d = run([pair(1), pair(2)], context_limit=30)
        assert [i["line"] for i in d["warnings"] if i["code"] == "over_context_limit"] == [1, 2]


class TestReport:
    def test_at_most_100_line_issues_per_list_in_line_order_with_complete_counts(self) -> None:
        records = [
            changed(changed(pair(i), "turn_number", 0), "training_metadata.quality_score", 2) for i in range(1, 151)
        ]
        d = run(records)
        assert d["valid"] is False
        assert d["error_count"] == 150 and d["error_counts"] == {"out_of_range": 150}
        assert d["warning_count"] == 150 and d["warning_counts"] == {"low_quality": 150}
        assert [i["line"] for i in d["errors"]] == list(range(1, 101))
        assert [i["line"] for i in d["warnings"]] == list(range(1, 101))
        assert d["stats"]["total_examples"] == 150

    def test_file_level_issues_come_first_and_are_never_cut(self) -> None:
        d = run([{"prompt": f"q{i}"} for i in range(1, 151)])
        assert d["error_count"] == 151
        assert d["error_counts"] == {"unknown_shape": 150, "no_training_pairs": 1}
        assert len(d["errors"]) == 101
        assert d["errors"][0]["code"] == "no_training_pairs" and d["errors"][0]["line"] is None
        assert [i["line"] for i in d["errors"][1:]] == list(range(1, 101))

    def test_file_level_warning_comes_before_line_warnings(self) -> None:
        d = validate_bytes(to_jsonl([pair(1)]) + b"\n" * 150)
        assert d["warning_count"] == 151
        assert d["warning_counts"] == {"blank_line": 150, "few_examples": 1}
        assert d["warnings"][0]["code"] == "few_examples" and d["warnings"][0]["line"] is None
        assert [i["line"] for i in d["warnings"][1:]] == list(range(2, 102))

    def test_issues_on_several_lines_are_in_line_order(self) -> None:
        d = run([changed(pair(1), "turn_number", 0), "not json", pair(3), {"prompt": "x"}, changed(pair(5), "id", "")])
        assert [i["line"] for i in d["errors"]] == [1, 2, 4, 5]
        assert [i["code"] for i in d["errors"]] == ["out_of_range", "invalid_json", "unknown_shape", "empty_content"]

    def test_issue_has_line_code_field_message_suggestion(self) -> None:
        d = run([changed(pair(1), "turn_number", True)])
        found = issue(d, "wrong_type")
        assert {"line", "code", "field", "message", "suggestion"} <= set(found)
        assert found["line"] == 1 and found["field"] == "turn_number"


class TestStatistics:
    def test_turns_count_only_messages_of_well_typed_content(self) -> None:
        """Statistics use "whatever of it is well-typed": a message whose content is null is not a turn, as it is
        not a training message in messages_per_role."""
        record = changed(messages(1), "messages[2].content", None)
        d = run([record], OPENAI)
        expect_error(d, "wrong_type", 1, field="messages[2].content")
        assert d["stats"]["messages_per_role"] == {"system": 1, "user": 2, "assistant": 1}
        assert d["stats"]["total_turns"] == 3

    def test_pair_statistics(self) -> None:
        first = changed(pair(1), "conversation_history", [])
        first.update(
            turn_number=1, system_prompt="s1 s2 s3", current_user_input="u1 u2", target_response="a1 a2 a3 a4 a5"
        )
        second = changed(
            pair(2),
            "conversation_history",
            [{"role": "user", "content": "h1 h2 h3 h4"}, {"role": "assistant", "content": "r1"}],
        )
        second.update(
            conversation_id="conv-1",
            turn_number=3,
            system_prompt="t1 t2 t3",
            current_user_input="v1 v2",
            target_response="b1 b2 b3 b4 b5",
        )
        third = changed(pair(3), "conversation_history", [])
        third.update(turn_number=2, system_prompt="", current_user_input="w1 w2", target_response="c1 c2 c3 c4 c5")
        d = run([first, second, third])
        stats = d["stats"]
        # tokens per message: 3 words -> 4, 2 -> 3, 5 -> 7, 4 -> 6, 1 -> 2
        assert stats["total_examples"] == 3
        assert stats["total_conversations"] == 2
        assert stats["total_training_pairs"] == 3
        assert stats["total_turns"] == 3 + 2  # highest turn_number per conversation
        assert stats["avg_turns_per_conversation"] == 2.5
        assert stats["total_tokens"] == 14 + 22 + 10
        assert stats["total_target_tokens"] == 21
        assert stats["avg_tokens_per_pair"] == 15.33
        assert stats["messages_per_role"] == {"system": 2, "user": 4, "assistant": 4}
        tokens = stats["tokens_per_example"]
        assert (tokens["min"], tokens["p50"], tokens["p90"], tokens["p99"], tokens["max"]) == (10, 14, 22, 22, 22)
        assert tokens["histogram"] == [
            {"from": 0, "to": 1, "count": 0},
            {"from": 1, "to": 2, "count": 0},
            {"from": 2, "to": 4, "count": 0},
            {"from": 4, "to": 8, "count": 0},
            {"from": 8, "to": 16, "count": 2},
            {"from": 16, "to": None, "count": 1},
        ]
        turns = stats["turns_per_conversation"]
        assert (turns["min"], turns["max"]) == (2, 3)

    def test_conversation_statistics(self) -> None:
        def turns(*roles: str, tag: str) -> list[dict]:
            return [{"role": role, "content": f"{tag}{n}"} for n, role in enumerate(roles)]

        records = [
            {"conversation_id": "x", "turns": turns("system", "user", "assistant", "user", "assistant", tag="a")},
            {"conversation_id": "x", "turns": turns("user", "assistant", tag="b")},
            {"conversation_id": "y", "turns": turns("user", "assistant", "user", tag="c")},
        ]
        d = run(records)
        stats = d["stats"]
        assert stats["total_examples"] == 3
        assert stats["total_conversations"] == 2
        assert stats["total_training_pairs"] == 2 + 1 + 1  # every assistant turn
        assert stats["total_turns"] == 4 + 3  # the largest of a repeated id
        assert stats["avg_turns_per_conversation"] == 3.5
        assert stats["total_tokens"] == 2 * 10  # one word per message -> 2 tokens
        assert stats["total_target_tokens"] == 2 * 4
        assert stats["avg_tokens_per_pair"] == 5.0
        assert stats["messages_per_role"] == {"system": 1, "user": 5, "assistant": 4}
        expect_warning(d, "trailing_user_turn", 3)

    def test_messages_statistics_weight_zero_is_not_a_training_pair_but_is_read(self) -> None:
        def message(role: str, text: str, **extra: int) -> dict:
            return {"role": role, "content": text, **extra}

        first = {
            "messages": [
                message("system", "s"),
                message("user", "u1"),
                message("assistant", "a1", weight=0),
                message("user", "u2"),
                message("assistant", "a2", weight=1),
                message("user", "  u3\t"),
                message("assistant", "a3 a3 a3"),
            ]
        }
        second = {"messages": [message("user", "v1"), message("assistant", "b1", weight=0)]}
        third = {"messages": [message("user", "w1"), message("assistant", "c1", weight=True)]}  # counts as 1
        d = run([first, second, third], OPENAI)
        stats = d["stats"]
        assert stats["total_examples"] == 3
        assert stats["total_conversations"] == 3
        assert stats["total_training_pairs"] == 2 + 0 + 1
        assert stats["total_turns"] == 6 + 2 + 2
        assert stats["avg_turns_per_conversation"] == 3.33
        assert stats["total_tokens"] == (2 * 6 + 4) + 4 + 4
        assert stats["total_target_tokens"] == 2 + 4 + 2
        assert stats["avg_tokens_per_pair"] == 8.0
        assert stats["messages_per_role"] == {"system": 1, "user": 5, "assistant": 5}
        per_conversation = stats["turns_per_conversation"]
        assert (per_conversation["min"], per_conversation["p50"], per_conversation["max"]) == (2, 2, 6)
        assert per_conversation["histogram"] == [
            {"from": 0, "to": 1, "count": 0},
            {"from": 1, "to": 2, "count": 0},
            {"from": 2, "to": 4, "count": 2},
            {"from": 4, "to": None, "count": 1},
        ]

    def test_nearest_rank_percentiles_and_histogram(self) -> None:
        # assistant of n words -> (13n + 9) // 10 tokens; the user message adds 2
        words = [5, 1, 9, 3, 7, 2, 10, 4, 8, 6]
        records = [
            {"messages": [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": " ".join(["w"] * n)}]}
            for n in words
        ]
        d = run(records, OPENAI)
        tokens = d["stats"]["tokens_per_example"]  # sorted: 4 5 6 8 9 10 12 13 14 15
        assert (tokens["min"], tokens["p50"], tokens["p90"], tokens["p99"], tokens["max"]) == (4, 9, 14, 15, 15)
        assert tokens["histogram"] == [
            {"from": 0, "to": 1, "count": 0},
            {"from": 1, "to": 2, "count": 0},
            {"from": 2, "to": 4, "count": 0},
            {"from": 4, "to": 8, "count": 3},
            {"from": 8, "to": None, "count": 7},
        ]
        assert d["stats"]["total_tokens"] == 96
        assert d["stats"]["avg_tokens_per_pair"] == 9.6

    def test_zero_token_example_is_in_the_first_bin(self) -> None:
        record = {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": ""}]}
        d = run([record], OPENAI)
        expect_error(d, "empty_content", 1, field="messages[1].content")
        assert d["stats"]["tokens_per_example"]["histogram"] == [{"from": 0, "to": None, "count": 1}]

    def test_averages_are_null_when_the_divisor_is_zero(self) -> None:
        record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 0}]}
        d = run([record], OPENAI)
        assert d["stats"]["total_training_pairs"] == 0
        assert d["stats"]["avg_tokens_per_pair"] is None
        assert d["stats"]["avg_turns_per_conversation"] == 2.0

    def test_no_examples_gives_empty_histograms_and_null_averages(self) -> None:
        d = run([{"prompt": "x"}])
        stats = d["stats"]
        assert stats["total_examples"] == 0
        assert stats["avg_turns_per_conversation"] is None
        assert stats["avg_tokens_per_pair"] is None
        assert stats["tokens_per_example"]["histogram"] == []
        assert stats["turns_per_conversation"]["histogram"] == []

    def test_lines_with_field_errors_still_count_with_whatever_is_well_typed(self) -> None:
        records = [
            changed(pair(1), "turn_number", 0),
            changed(pair(2), "target_response", ""),  # a string: still the line's assistant message
            changed(pair(3), "target_response", 7),  # not a string: no assistant message to train on
        ]
        d = run(records)
        assert d["error_count"] == 3
        assert d["stats"]["total_examples"] == 3
        assert d["stats"]["total_training_pairs"] == 2
        assert d["stats"]["messages_per_role"]["assistant"] == 2 + 2 + 1

    def test_repeated_user_entry_is_not_counted_in_tokens(self) -> None:
        record = changed(pair(1), "conversation_history", [{"role": "user", "content": "same three words"}])
        record.update(system_prompt="", current_user_input="same three words", target_response="one two")
        d = run([record])
        expect_warning(d, "repeated_user_input", 1)
        assert d["stats"]["total_tokens"] == 4 + 3  # user once (3 words -> 4), assistant (2 words -> 3)
        assert d["stats"]["total_target_tokens"] == 3
        assert d["stats"]["messages_per_role"] == {"system": 0, "user": 1, "assistant": 1}

    def test_samples_are_the_first_three_examples_cut_to_2000_characters(self) -> None:
        long_answer = "0123456789" * 500
        records: list[Line] = [{"prompt": "not an example"}, changed(pair(2), "target_response", long_answer)]
        records += [pair(i) for i in range(3, 7)]
        d = run(records)
        assert len(d["samples"]) == 3
        first = sample_messages(d["samples"][0])
        assert first[-1] == {"role": "assistant", "content": long_answer[:2000]}
        assert first[0] == {"role": "system", "content": pair(2)["system_prompt"]}
        assert sample_messages(d["samples"][1])[-1]["content"] == pair(3)["target_response"]
        assert sample_messages(d["samples"][2])[-1]["content"] == pair(4)["target_response"]


def test_eq12_exporter_sample() -> None:
    d = validate_bytes(EQ12.read_bytes(), chunk_size=4096)
    expect_ready(d)
    stats = d["stats"]
    assert d["shape"] == "pair"
    assert stats["total_conversations"] == 12
    assert stats["total_examples"] == 44
    assert stats["total_training_pairs"] == 44
    assert stats["total_tokens"] == 58316
    assert stats["total_target_tokens"] == 16533
    assert stats["total_turns"] == 88
    assert d["warning_counts"]["repeated_user_input"] == 44
    assert d["warning_counts"]["over_context_limit"] == 8


class TestQuotedValues:
    """A value of the file quoted in a message is cut: a 1 MB role made a 1 MB message on each listed line, then in
    the error banner and the owner's notification (and a report too large for PostgreSQL's JSONB)."""

    LONG = "x" * 1_000_000

    def test_a_long_role_is_cut_in_the_message(self) -> None:
        record = with_extra_entry(pair(2), "conversation_history", {"role": self.LONG, "content": "Hello there."})
        found = expect_error(run([pair(1), record]), "unknown_role", 2, field="conversation_history[2].role")
        assert len(found["message"]) < 200 and "x" * 79 + "…" in found["message"]

    def test_a_long_key_is_cut_in_the_message_and_the_field(self) -> None:
        record = messages(2)
        record["messages"][1][self.LONG] = 1
        found = expect_warning(run([messages(1), record], OPENAI), "unknown_key", 2)
        assert len(found["message"]) < 200 and len(found["field"]) < 100 and found["field"].endswith("…")

    def test_a_long_duplicate_id_and_long_unknown_keys_are_cut(self) -> None:
        first = changed(pair(1), "id", self.LONG)
        second = changed(pair(2), "id", self.LONG)
        d = run([first, second, {self.LONG: 1, "y" * 500: 2}])
        assert len(expect_error(d, "duplicate_id", 2)["message"]) < 200
        assert len(expect_error(d, "unknown_shape", 3)["message"]) < 400
