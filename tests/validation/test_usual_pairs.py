"""The usual-pair fast path (rules.RecordRules.usual_pair + stats.ExampleCounter.add_pair) changes nothing.

Every file is validated twice, with the fast path and with it switched off (every pair line through `check_pair`
and `add_example`), and the reports must be equal, byte for byte as JSON. The files are exports of a few
conversations, lines growing turn by turn as the exporter writes them, with any line replaced by one of many
near-misses of the usual line (each must fall back to the general path) or by edge cases the fast path takes
(an integer quality score, Unicode spaces), and with
lines repeated, reordered and interleaved so that the reuse of the previous example's counts meets every case.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_core.validation import ValidationLimits
from lora_core.validation.rules import RecordRules
from lora_core.validation.validator import run_validation
from tests.validation.test_rule_codes import DELETE, V3, V4, changed, to_jsonl

SYSTEM = "You are a calm, kind financial planning assistant."
USER_TEXTS = [
    "I keep putting off my budget.",
    "Where do I even start?",
    "Is \u00a0three months enough?",  # a no-break space: counted by str.split()
    "  Thanks, that helps.  ",
    "Why?",
    "Émilie asked me \u201cwhat now\u201d \u2014 and I froze.",
]
ASSISTANT_TEXTS = [
    "That is very common; let us look at it together.",
    "Start by writing down what comes in and goes out each month.",
    "Three to six months of expenses is a common goal.\n\nSome keep more.",
    "You are welcome.",
    "Because surprises happen \u2014 a car, a roof, a job.",
]


def export(conversation: int, turns: int) -> list[dict[str, Any]]:
    """A conversation's lines as the BrightRun exporter writes them: each repeats the history so far, whose last
    entry is the current user input."""
    lines = []
    history: list[dict[str, Any]] = []
    for turn in range(1, turns + 1):
        user = USER_TEXTS[(conversation + turn) % len(USER_TEXTS)]
        answer = ASSISTANT_TEXTS[(conversation * 3 + turn) % len(ASSISTANT_TEXTS)]
        history.append({"turn": 2 * turn - 1, "role": "user", "content": user})
        lines.append(
            {
                "id": f"c{conversation}-t{turn}",
                "conversation_id": f"c{conversation}",
                "turn_number": turn,
                "conversation_metadata": {
                    "persona_archetype": "overwhelmed_avoider",
                    "emotional_arc": "Overwhelm → Clarity",
                    "emotional_arc_key": "overwhelm_to_clarity",
                    "training_topic": "Emergency Fund",
                    "training_topic_key": "emergency_fund",
                },
                "system_prompt": SYSTEM,
                "conversation_history": [dict(entry) for entry in history],
                "current_user_input": user,
                "emotional_context": {"primary": "anxiety"},
                "target_response": answer,
                "training_metadata": {"quality_score": 4.5},
            }
        )
        history.append({"turn": 2 * turn, "role": "assistant", "content": answer})
    return lines


# Changes to a usual line: (path, value). Most make it unusual (the general path must take it); some keep it usual.
CHANGES: list[tuple[str, Any]] = [
    ("id", DELETE),
    ("id", ""),
    ("id", 7),
    ("conversation_id", DELETE),
    ("conversation_id", ""),
    ("conversation_id", ["c1"]),
    ("turn_number", 0),
    ("turn_number", True),
    ("turn_number", 1.0),
    ("turn_number", 10**20),
    ("turn_number", DELETE),
    ("system_prompt", ""),
    ("system_prompt", " \n "),
    ("system_prompt", DELETE),
    ("system_prompt", None),
    ("current_user_input", ""),
    ("current_user_input", DELETE),
    ("current_user_input", 3),
    ("current_user_input", "  Where do I even start?\n"),  # a history entry only after strip: role_order
    ("current_user_input", "Something else entirely."),
    ("conversation_history", []),
    ("conversation_history", DELETE),
    ("conversation_history", {"role": "user"}),
    ("conversation_history[0]", "hello"),
    ("conversation_history[0].role", "User"),
    ("conversation_history[0].role", "assistant"),
    ("conversation_history[0].role", DELETE),
    ("conversation_history[0].content", ""),
    ("conversation_history[0].content", 5),
    ("conversation_history[0].content", DELETE),
    ("target_response", ""),
    ("target_response", "\t"),
    ("target_response", DELETE),
    ("target_response", {"text": "x"}),
    ("target_response", SYSTEM),  # a text seen before in another place
    ("conversation_metadata", DELETE),
    ("conversation_metadata", "v4"),
    ("conversation_metadata.persona_archetype", None),
    ("conversation_metadata.emotional_arc", ""),
    ("conversation_metadata.training_topic_key", 0),
    ("conversation_metadata.emotional_arc_key", DELETE),
    ("emotional_context", DELETE),
    ("emotional_context", []),
    ("training_metadata", DELETE),
    ("training_metadata", 4),
    ("training_metadata.quality_score", 2.4),
    ("training_metadata.quality_score", 2.5),
    ("training_metadata.quality_score", 5),
    ("training_metadata.quality_score", 3),
    ("training_metadata.quality_score", 5.5),
    ("training_metadata.quality_score", 0),
    ("training_metadata.quality_score", "4"),
    ("training_metadata.quality_score", True),
    ("training_metadata.quality_score", None),
    ("training_metadata.quality_score", DELETE),
    ("messages", [{"role": "user", "content": "hi"}]),
    ("_meta", {"version": "4"}),
]


def report(data: bytes, fmt: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(RecordRules, "usual_pair", lambda _self, _obj, _line: None)
        result, _info = run_validation([data], fmt, ValidationLimits(workers=0, context_limit=120))
    return json.dumps(result.to_dict())


def assert_fast_path_changes_nothing(lines: list[Any], fmt: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    data = to_jsonl(lines)
    fast = report(data, fmt, True, monkeypatch)
    assert fast == report(data, fmt, False, monkeypatch)
    return json.loads(fast)


@st.composite
def files(draw: st.DrawFn) -> list[Any]:
    conversations = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    lines: list[Any] = []
    for number, turns in enumerate(conversations):
        lines += export(number, turns)
    if draw(st.booleans()):
        lines = draw(st.permutations(lines))  # shuffled: the previous example is rarely the one before
    for _ in range(draw(st.integers(0, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["change", "change", "repeat", "drop"]))
        if action == "change":
            path, value = draw(st.sampled_from(CHANGES))
            with contextlib.suppress(KeyError, IndexError, TypeError):  # the path is gone (an earlier change)
                lines[index] = changed(lines[index], path, value)
        elif action == "repeat":
            lines.insert(draw(st.integers(0, len(lines))), lines[index])
        elif len(lines) > 1:
            del lines[index]
    return lines


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=files(), fmt=st.sampled_from([V4, V3]))
def test_reports_are_the_same_without_the_fast_path(
    lines: list[Any], fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_fast_path_changes_nothing(lines, fmt, monkeypatch)


@pytest.mark.parametrize(("path", "value"), CHANGES, ids=[f"{path}={value!r}"[:60] for path, value in CHANGES])
def test_each_change_between_usual_lines(path: str, value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[Any] = export(1, 4)
    try:
        lines[2] = changed(lines[2], path, value)
    except (KeyError, IndexError, TypeError):
        pytest.skip(f"{path} is not in the line")
    assert_fast_path_changes_nothing(lines, V4, monkeypatch)


def test_the_fast_path_takes_the_usual_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """It must be used, or the tests above compare the general path with itself."""
    taken: list[int] = []
    real = RecordRules.usual_pair

    def recording(self: RecordRules, obj: dict[str, Any], line: int) -> Any:
        result = real(self, obj, line)
        if result is not None:
            taken.append(line)
        return result

    monkeypatch.setattr(RecordRules, "usual_pair", recording)
    lines: list[Any] = export(1, 3)
    lines.insert(1, changed(lines[1], "training_metadata.quality_score", 2.4))  # low_quality: not usual
    result, _info = run_validation([to_jsonl(lines)], V4, ValidationLimits(workers=0))
    assert taken == [1, 3, 4]
    assert result.stats.total_training_pairs == 4


def test_more_repeated_inputs_than_the_report_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap on listed issues, `repeated_user_input` is counted, not listed, on both paths."""
    lines: list[Any] = [line for conversation in range(40) for line in export(conversation, 4)]
    result = assert_fast_path_changes_nothing(lines, V4, monkeypatch)
    assert result["warning_counts"]["repeated_user_input"] == 160
    assert len(result["warnings"]) < 160
