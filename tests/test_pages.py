"""The Streamlit pages through AppTest: what a user sees and does on each page, on seeded rows.

AppTest runs ui.py (never app.py's lifespan), does not simulate `run_every`, and cannot run the upload
component's JavaScript (tests/test_browser.py does); the upload steps are tested through `lora_ui.upload_flow`.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlalchemy.exc import OperationalError
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from lora_core import service
from lora_core.housekeeping import expire_abandoned_uploads
from lora_core.models import STATISTIC_COLUMNS, Dataset, DatasetStatus, Notification, NotificationKind, utcnow
from lora_core.runtime import Runtime, get_runtime, reset_runtime
from lora_core.settings import get_settings
from lora_core.validation import validate_stream
from lora_ui import upload_flow
from lora_ui.components import PENDING_DELETE_KEY, escape_markdown

ROOT = Path(__file__).resolve().parents[1]
UI_SCRIPT = str(ROOT / "ui.py")
ALICE = "alice@example.com"
BOB = "bob@example.com"


def _bins(edges: list[tuple[int, int | None, int]]) -> list[dict[str, Any]]:
    return [{"from": low, "to": high, "count": count} for low, high, count in edges]


def ready_report() -> dict[str, Any]:
    """A report of FORMAT.md's shape, with EQ-12's figures."""
    token_bins = [(0, 1, 0), (1, 2, 0), (2, 4, 0), (4, 8, 0), (8, 16, 0), (16, 32, 0), (32, 64, 0), (64, 128, 0)]
    token_bins += [(128, 256, 0), (256, 512, 4), (512, 1024, 11), (1024, 2048, 21), (2048, None, 8)]
    return {
        "valid": True,
        "format": "brightrun_lora_v4",
        "shape": "pair",
        "stats": {
            "total_examples": 44,
            "total_conversations": 12,
            "total_training_pairs": 44,
            "total_turns": 88,
            "total_tokens": 58316,
            "total_target_tokens": 16533,
            "avg_turns_per_conversation": 7.33,
            "avg_tokens_per_pair": 1325.36,
            "tokens_per_example": {
                "min": 333,
                "p50": 1195,
                "p90": 2286,
                "p99": 2806,
                "max": 2806,
                "histogram": _bins(token_bins),
            },
            "turns_per_conversation": {
                "min": 6,
                "p50": 8,
                "p90": 8,
                "p99": 8,
                "max": 8,
                "histogram": _bins([(0, 1, 0), (1, 2, 0), (2, 4, 0), (4, 8, 4), (8, None, 8)]),
            },
            "messages_per_role": {"system": 44, "user": 104, "assistant": 104},
            "over_context_limit": 8,
            "context_limit": 2048,
        },
        "error_count": 0,
        "warning_count": 52,
        "error_counts": {},
        "warning_counts": {"repeated_user_input": 44, "over_context_limit": 8},
        "errors": [],
        "warnings": [
            {
                "line": 2,
                "code": "repeated_user_input",
                "field": "conversation_history[0]",
                "message": "The last history entry repeats `current_user_input`.",
                "suggestion": "Drop the last history entry when converting.",
            },
            {
                "line": 9,
                "code": "over_context_limit",
                "field": None,
                "message": "This example has 2,286 tokens, over the context limit of 2,048.",
                "suggestion": "Shorten it or raise the trainer's max sequence length.",
            },
        ],
        "samples": [
            [
                {"role": "system", "content": "You are a **helpful** planner."},
                {"role": "user", "content": "<script>alert(1)</script> How do I save?"},
                {"role": "assistant", "content": "Start with [a budget](javascript:alert(1)) :red[today]."},
            ]
        ],
    }


def error_report(line_errors: int = 150) -> dict[str, Any]:
    """A failed report: `line_errors` missing fields in all, of which the report lists the first 100."""
    listed = [
        {
            "line": line,
            "code": "missing_field",
            "field": "target_response",
            "message": "The required field `target_response` is missing.",
            "suggestion": "Add the assistant's reply as `target_response`.",
        }
        for line in range(1, min(line_errors, 100) + 1)
    ]
    listed.insert(
        0,
        {
            "line": None,
            "code": "few_examples",
            "field": None,
            "message": "Only 3 training pairs.",
            "suggestion": "Add more examples.",
        },
    )
    report = ready_report()
    report.update(
        valid=False,
        error_count=line_errors + 1,
        error_counts={"missing_field": line_errors, "few_examples": 1},
        errors=listed,
        warning_count=0,
        warning_counts={},
        warnings=[],
    )
    return report


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir and SQLite database for the pages, with the process-wide caches cleared around it."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("LORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LORA_DATABASE_URL", f"sqlite:///{tmp_path / 'lora.db'}")
    monkeypatch.setenv("LORA_SECRET_KEY", "pages-test-secret")
    monkeypatch.setenv("LORA_AUTH_MODE", "local")
    monkeypatch.setenv("LORA_LOCAL_USER_ID", ALICE)
    monkeypatch.setattr(app_test_module, "PagesManager", _NavigationPagesManager)
    _reset()
    yield tmp_path
    _reset()


class _NavigationPagesManager(PagesManager):
    """AppTest makes Streamlit re-detect `pages/` before every run, i.e. start each run in its old multipage mode,
    where `lora_ui.navigation.require_navigation` reruns through ui.py and a plain button's click is lost. A
    served app leaves that mode for good at its first run; this makes every AppTest run start where it would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False


def _reset() -> None:
    get_settings.cache_clear()
    reset_runtime()
    st.cache_resource.clear()


@pytest.fixture
def rt(app_env: Path) -> Runtime:
    return get_runtime()


def seed(
    rt: Runtime,
    name: str,
    status: DatasetStatus,
    *,
    user_id: str = ALICE,
    report: dict[str, Any] | None = None,
    age_minutes: int = 0,
    **fields: Any,
) -> Dataset:
    dataset_id = uuid.uuid4()
    values: dict[str, Any] = {}
    if report is not None:
        stats = report["stats"]
        values = {key: stats[key] for key in STATISTIC_COLUMNS}  # as the sweep copies them
        values.update(
            error_count=report["error_count"],
            warning_count=report["warning_count"],
            training_ready=report["valid"],
            validated_at=utcnow(),
            validation_report=report,
        )
    values.update(fields)
    created = utcnow() - timedelta(minutes=age_minutes)
    dataset = Dataset(
        id=dataset_id,
        user_id=user_id,
        name=name,
        format="brightrun_lora_v4",
        status=status,
        storage_bucket="local",
        storage_path=f"{user_id}/{dataset_id}/data.jsonl",
        file_name=f"{name.split()[0].lower()}.jsonl",
        file_size=1_234_567,
        created_at=created,
        updated_at=created,
        **values,
    )
    with rt.session() as session:
        session.add(dataset)
        session.commit()
    return dataset


def open_page(path: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(UI_SCRIPT, default_timeout=30)
    at.run()
    if path != "pages/datasets.py":
        at.switch_page(path)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything the page wrote as text, Markdown, captions, alerts and metrics, for `in` checks."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "text", "title", "subheader", "error", "warning", "info", "success"):
        parts.extend(str(element.value) for element in at.get(kind))
    parts.extend(f"{m.label}={m.value}" for m in at.metric)
    return "\n".join(parts)


def dataset_names_listed(at: AppTest) -> list[str]:
    return [m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")]


# --- Datasets list ----------------------------------------------------------------------------------------------


def test_empty_state_invites_the_first_upload(app_env: Path) -> None:
    at = open_page("pages/datasets.py")
    assert "No datasets yet" in texts(at)
    links = [link.proto.label for link in at.get("page_link")]
    assert "Upload your first dataset" in links


def test_list_shows_each_dataset_with_status_stats_size_and_time(rt: Runtime) -> None:
    seed(rt, "Ready chats", DatasetStatus.READY, report=ready_report(), age_minutes=5)
    seed(rt, "Broken export", DatasetStatus.ERROR, report=error_report(), age_minutes=3)
    seed(rt, "Fresh upload", DatasetStatus.VALIDATING, age_minutes=1)
    at = open_page("pages/datasets.py")
    assert dataset_names_listed(at) == ["Fresh upload", "Broken export", "Ready chats"]  # newest first
    page = texts(at)
    assert "**44** training pairs" in page and "**58.3K** tokens" in page
    assert "151 errors" in page
    assert "1.2 MiB" in page
    assert "5 min ago" in page
    assert ":material/description: ready\\.jsonl · BrightRun LoRA v4" in page  # the file, and its format
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert any(":green-badge[" in b and "Ready" in b for b in badges)
    assert any(":red-badge[" in b and "Error" in b for b in badges)
    assert any(":yellow-badge[" in b and "Validating" in b for b in badges)
    details = [link for link in at.get("page_link") if link.proto.label == "View details"]
    assert len(details) == 3


def test_search_narrows_the_list_and_says_when_nothing_matches(rt: Runtime) -> None:
    seed(rt, "Support chats March", DatasetStatus.READY, report=ready_report())
    seed(rt, "Sales calls", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/datasets.py")
    at.text_input(key="search").input("support").run()
    assert dataset_names_listed(at) == ["Support chats March"]
    at.text_input(key="search").input("nothing like this").run()
    assert dataset_names_listed(at) == []
    assert "No datasets match this search or filter." in texts(at)


def test_status_filter_shows_only_that_status(rt: Runtime) -> None:
    seed(rt, "Good one", DatasetStatus.READY, report=ready_report())
    seed(rt, "Bad one", DatasetStatus.ERROR, report=error_report())
    seed(rt, "Busy one", DatasetStatus.UPLOADING)
    at = open_page("pages/datasets.py")
    status = at.button_group(key="status")
    status.set_value("Error").run()
    assert dataset_names_listed(at) == ["Bad one"]
    at.button_group(key="status").set_value("Uploading").run()
    assert dataset_names_listed(at) == ["Busy one"]
    at.button_group(key="status").set_value("All").run()
    assert len(dataset_names_listed(at)) == 3


def test_pagination_moves_between_pages(rt: Runtime) -> None:
    for index in range(12):
        seed(rt, f"Set {index:02d}", DatasetStatus.READY, report=ready_report(), age_minutes=index)
    at = open_page("pages/datasets.py")
    assert len(dataset_names_listed(at)) == 10
    assert "1–10 of 12 · page 1 of 2" in texts(at)
    at.button(key="page-next").click().run()
    assert dataset_names_listed(at) == ["Set 10", "Set 11"]
    assert at.button(key="page-next").disabled
    at.button(key="page-previous").click().run()
    assert dataset_names_listed(at)[0] == "Set 00"


def test_search_filter_and_page_live_in_the_url(rt: Runtime) -> None:
    """A reload or a shared link shows the same list: the search, the status filter and the page are in the URL."""
    for index in range(12):
        seed(rt, f"Sales {index:02d}", DatasetStatus.READY, report=ready_report(), age_minutes=index)
    seed(rt, "Support", DatasetStatus.READY, report=ready_report())
    seed(rt, "Sales broken", DatasetStatus.ERROR, report=error_report())
    at = AppTest.from_file(UI_SCRIPT, default_timeout=30)
    at.query_params.update(search="sales", status="Ready", page="2")  # as a reloaded or shared URL gives them
    at.run()
    assert not at.exception
    assert at.text_input(key="search").value == "sales" and at.button_group(key="status").value == "Ready"
    assert dataset_names_listed(at) == ["Sales 10", "Sales 11"]
    at.button(key="page-previous").click().run()
    assert "page" not in at.query_params and dataset_names_listed(at)[0] == "Sales 00"
    at.button(key="page-next").click().run()
    assert at.query_params["page"] == "2"


def test_the_way_back_from_a_dataset_returns_to_the_page_of_the_list_it_was_on(rt: Runtime) -> None:
    """The "All datasets" link and a delete on the dataset's page lead back to the list's page, not to its first."""
    for index in range(12):
        seed(rt, f"Set {index:02d}", DatasetStatus.READY, report=ready_report(), age_minutes=index)
    at = open_page("pages/datasets.py")
    at.button(key="page-next").click().run()
    [*_, last] = [link for link in at.get("page_link") if link.proto.label == "View details"]
    at.switch_page("pages/dataset.py")
    at.query_params["id"] = last.proto.query_string.removeprefix("id=")  # "Set 11", as its link opens it
    at.run()
    [back] = [link for link in at.get("page_link") if link.proto.label == "All datasets"]
    assert back.proto.query_string == "page=2"
    at.button(key="delete").click().run()
    at.button(key="confirm_delete").click().run()
    assert not at.exception
    # Back on the list's second page, which now holds one dataset.
    assert at.query_params["page"] == "2" and dataset_names_listed(at) == ["Set 10"]


def test_the_way_back_to_the_first_page_has_no_page_number(rt: Runtime) -> None:
    dataset = seed(rt, "Only one", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/datasets.py")
    at.switch_page("pages/dataset.py")
    at.query_params["id"] = str(dataset.id)
    at.run()
    [back] = [link for link in at.get("page_link") if link.proto.label == "All datasets"]
    assert back.proto.query_string == ""


def test_the_delete_dialog_tells_s3_users_an_opened_link_lasts_until_it_expires(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A presigned S3 link cannot be taken back: "can no longer be downloaded" alone was not true there."""
    from lora_ui import components

    on_s3 = dataclasses.replace(rt, settings=rt.settings.model_copy(update={"storage": "s3"}))
    monkeypatch.setattr(components, "runtime", lambda: on_s3)
    doomed = seed(rt, "Delete me", DatasetStatus.ERROR, report=error_report())
    at = open_page("pages/datasets.py")
    at.button(key=f"delete-{doomed.id}").click().run()
    said = " ".join(m.value for m in at.markdown)
    assert "a download link opened before keeps working until it expires, within 15 minutes" in said


def test_delete_from_the_list_asks_then_removes(rt: Runtime) -> None:
    keep = seed(rt, "Keep me", DatasetStatus.READY, report=ready_report())
    doomed = seed(rt, "Delete me", DatasetStatus.ERROR, report=error_report())
    at = open_page("pages/datasets.py")
    at.button(key=f"delete-{doomed.id}").click().run()
    assert at.session_state[PENDING_DELETE_KEY]["id"] == str(doomed.id)
    assert "Delete me" in [t.value for t in at.text]  # the dialog names it, as plain text
    at.button(key="confirm_delete").click().run()
    assert not at.exception
    assert dataset_names_listed(at) == ["Keep me"]
    with rt.session() as session:
        remaining = service.list_datasets(session, ALICE)
    assert [d.id for d in remaining.items] == [keep.id]


def test_a_delete_left_unanswered_on_the_list_never_opens_on_another_page(rt: Runtime) -> None:
    """The dialog of a request made on the list must not open over another dataset's page: its Delete button would
    remove the dataset named in it, not the one shown."""
    requested = seed(rt, "Asked on the list", DatasetStatus.READY, report=ready_report())
    shown = seed(rt, "Shown afterwards", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/dataset.py", {"id": str(shown.id)})
    at.session_state[PENDING_DELETE_KEY] = {"id": str(requested.id), "name": requested.name, "page": "datasets"}
    at.run()
    assert not at.exception
    assert PENDING_DELETE_KEY not in at.session_state
    with pytest.raises(KeyError):
        at.button(key="confirm_delete")
    with rt.session() as session:
        assert service.list_datasets(session, ALICE).total == 2


def test_the_delete_dialog_opens_on_a_list_that_refreshes_itself(rt: Runtime) -> None:
    """With a dataset still validating, the list is a self-refreshing fragment, which hands a Delete click to a run
    of the whole page once: a request already shown must not make every run start another one (an endless loop)."""
    seed(rt, "Still checking", DatasetStatus.VALIDATING)
    doomed = seed(rt, "Delete me", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/datasets.py")
    at.button(key=f"delete-{doomed.id}").click().run(timeout=10)
    assert not at.exception
    assert at.button(key="confirm_delete")  # the dialog is open
    at.run(timeout=10)  # and a later run (the fragment's timer) leaves it so, without looping
    assert at.button(key="confirm_delete")


def test_cancel_in_the_delete_dialog_keeps_the_dataset(rt: Runtime) -> None:
    dataset = seed(rt, "Still here", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/datasets.py")
    at.session_state[PENDING_DELETE_KEY] = {"id": str(dataset.id), "name": dataset.name, "page": "datasets"}
    at.run()
    at.button(key="cancel_delete").click().run()
    assert PENDING_DELETE_KEY not in at.session_state
    assert dataset_names_listed(at) == ["Still here"]


def test_user_text_is_never_markdown_or_html(rt: Runtime) -> None:
    seed(rt, "**bold** <b>x</b> :red[alert] [link](http://evil)", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/datasets.py")
    names = [m.value for m in at.markdown if "bold" in m.value]
    assert names == ["**" + escape_markdown("**bold** <b>x</b> :red[alert] [link](http://evil)") + "**"]
    assert "\\<b\\>" in names[0] and "\\:red\\[" in names[0] and "\\]\\(http" in names[0]


def test_another_user_sees_none_of_the_first_users_datasets(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = seed(rt, "Alice private", DatasetStatus.READY, report=ready_report())
    monkeypatch.setenv("LORA_LOCAL_USER_ID", BOB)
    _reset()
    at = open_page("pages/datasets.py")
    assert dataset_names_listed(at) == []
    assert "No datasets yet" in texts(at)
    detail = open_page("pages/dataset.py", {"id": str(mine.id)})
    assert "Dataset not found" in texts(detail)
    assert "Alice private" not in texts(detail)


def test_proxy_mode_scopes_pages_to_the_header_user(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(rt, "Alice private", DatasetStatus.READY, report=ready_report())
    monkeypatch.setenv("LORA_AUTH_MODE", "proxy")
    _reset()
    at = open_page("pages/datasets.py")  # AppTest sends no proxy header: nobody is signed in
    assert "You are not signed in" in texts(at)
    assert "Alice private" not in texts(at)


# --- Dataset detail ---------------------------------------------------------------------------------------------


def test_a_sample_without_training_messages_says_why_it_is_empty(rt: Runtime) -> None:
    report = error_report(3)
    report["samples"] = [{"line": 2, "messages": []}]
    dataset = seed(rt, "Roles", DatasetStatus.ERROR, report=report)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert any("This example has no training messages: nothing on line 2" in i.value for i in at.info), texts(at)


def test_ready_dataset_shows_statistics_charts_issues_and_samples(rt: Runtime) -> None:
    dataset = seed(rt, "EQ-12 demo", DatasetStatus.READY, report=ready_report(), description="Line one\n*not bold*")
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training pairs"] == "44"
    assert metrics["Conversations"] == "12"
    assert metrics["Examples"] == "44"
    assert metrics["Total tokens"] == "58.3K"
    assert metrics["Target tokens"] == "16.5K"
    assert metrics["Avg turns / conversation"] == "7.33"
    assert metrics["Avg tokens / pair"] == "1,325.36"  # two decimals, as the report
    assert metrics["Over context limit"] == "8"
    assert len(at.get("vega_lite_chart")) == 3
    assert "Ready for training." in texts(at)
    assert "Line one\n*not bold*" in [t.value for t in at.text]  # the description, as plain text
    tabs = [t.label for t in at.tabs]
    assert "Errors (0)" in tabs and "Warnings (52)" in tabs
    frames = [df.value for df in at.dataframe]
    warnings = next(f for f in frames if "line" in f.columns)
    assert list(warnings.columns) == ["line", "code", "field", "message", "suggestion"]
    assert set(warnings["code"]) == {"repeated_user_input", "over_context_limit"}
    assert not warnings.isna().any().any()  # blank cells are blank, not "None"
    counts = next(t.value for t in at.table if "repeated_user_input" in set(t.value["Code"]))
    assert dict(zip(counts["Code"], counts["Count"], strict=True)) == {
        "repeated_user_input": "44",
        "over_context_limit": "8",
    }
    # What to do about each code, readable in full once per code.
    assert all(counts["What to do"].str.len() > 20)
    assert [c.proto.name for c in at.chat_message] == ["system", "user", "assistant"]
    content = texts(at)
    assert escape_markdown("<script>alert(1)</script> How do I save?") in content
    assert "\\[a budget\\]\\(javascript\\:alert\\(1\\)\\) \\:red\\[today\\]" in content


def test_no_training_messages_is_said_not_charted(rt: Runtime) -> None:
    """A file uploaded in the wrong format has no training message: no empty chart with a tick at 0.000000."""
    report = ready_report()
    report["stats"]["messages_per_role"] = {"system": 0, "user": 0, "assistant": 0}
    dataset = seed(rt, "Wrong format", DatasetStatus.ERROR, report=report)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert "No training messages to chart." in texts(at)
    assert len(at.get("vega_lite_chart")) == 2  # tokens and turns only


@pytest.mark.parametrize("turn_number", [10**20, 10**400], ids=["1e20", "1e400"])
def test_turn_numbers_past_64_bits_are_charted_without_a_traceback(rt: Runtime, turn_number: int) -> None:
    """FORMAT.md bounds no turn_number: the turns chart took the bins' bounds, past what its Arrow table holds."""
    line = json.dumps({"id": "p1", "conversation_id": "c1", "turn_number": turn_number, "system_prompt": "s"})
    line = line[:-1] + ', "conversation_history": [], "current_user_input": "u", "target_response": "a"}'
    report = validate_stream(iter([line.encode() + b"\n"]), "brightrun_lora_v3").to_dict()
    dataset = seed(rt, "Huge turns", DatasetStatus.READY, report=report, total_turns=None)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert len(at.get("vega_lite_chart")) == 3  # tokens, turns and roles
    assert f"max {turn_number:,}" in texts(at)


def test_issue_tables_filter_by_code_and_text(rt: Runtime) -> None:
    dataset = seed(rt, "Filter me", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    at.multiselect(key="warnings-codes").select("over_context_limit").run()
    table = next(df.value for df in at.dataframe if "line" in df.value.columns and len(df.value) <= 2)
    assert list(table["code"]) == ["over_context_limit"]
    at.multiselect(key="warnings-codes").unselect("over_context_limit").run()
    at.text_input(key="warnings-search").input("history entry").run()
    table = next(df.value for df in at.dataframe if "line" in df.value.columns and len(df.value) <= 2)
    assert list(table["code"]) == ["repeated_user_input"]
    at.text_input(key="warnings-search").input("over_context").run()  # a code, as the table shows it
    table = next(df.value for df in at.dataframe if "line" in df.value.columns and len(df.value) <= 2)
    assert list(table["code"]) == ["over_context_limit"]


def test_the_count_table_renders_a_suggestion_quoting_the_file_as_text(rt: Runtime) -> None:
    """st.table renders Markdown: a role name from the file, quoted in a suggestion, must not become a link."""
    report = error_report(3)
    for issue in report["errors"]:
        if issue["code"] == "missing_field":
            issue["suggestion"] = "Rename `[x](http://e.com)` to `user`; *now* [y](http://e.com)."
    dataset = seed(rt, "Quoting", DatasetStatus.ERROR, report=report)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    counts = next(t.value for t in at.table if "missing_field" in set(t.value["Code"]))
    what = dict(zip(counts["Code"], counts["What to do"], strict=True))["missing_field"]
    assert what == "Rename `[x](http://e.com)` to `user`\\; \\*now\\* \\[y\\]\\(http\\:\\/\\/e\\.com\\)\\."


def test_the_count_table_says_whose_suggestion_it_shows_when_they_differ(rt: Runtime) -> None:
    """unknown_role suggests renaming the line's own role: the first line's advice is not every line's."""
    report = error_report(3)
    report["errors"] = [
        {
            "line": 2,
            "code": "unknown_role",
            "field": "messages[0].role",
            "message": "m",
            "suggestion": "Rename `human` to `user`.",
        },
        {
            "line": 3,
            "code": "unknown_role",
            "field": "messages[1].role",
            "message": "m",
            "suggestion": "Rename `gpt` to `assistant`.",
        },
        {"line": 4, "code": "wrong_type", "field": "messages", "message": "m", "suggestion": "Use an array."},
        {"line": 5, "code": "wrong_type", "field": "messages", "message": "m", "suggestion": "Use an array."},
    ]
    report["error_counts"] = {"unknown_role": 2, "wrong_type": 2}
    report["error_count"] = 4
    dataset = seed(rt, "Roles", DatasetStatus.ERROR, report=report)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    counts = next(t.value for t in at.table if "unknown_role" in set(t.value["Code"]))
    what = dict(zip(counts["Code"], counts["What to do"], strict=True))
    assert what["unknown_role"] == (
        "For line 2: Rename `human` to `user`\\. The other lines' suggestions differ: see each line."
    )
    assert what["wrong_type"] == "Use an array\\."


def test_a_code_past_the_listed_lines_still_says_what_to_do_and_where(rt: Runtime) -> None:
    """100 listed missing fields hid a later `invalid_json`: its row had a blank "What to do" and no line."""
    report = error_report(150)
    report["error_counts"] = {"missing_field": 800_000, "invalid_json": 1}
    report["error_count"] = 800_001
    dataset = seed(rt, "Hidden", DatasetStatus.ERROR, report=report)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    counts = next(t.value for t in at.table if "invalid_json" in set(t.value["Code"]))
    what = dict(zip(counts["Code"], counts["What to do"], strict=True))["invalid_json"]
    assert dict(zip(counts["Code"], counts["Count"], strict=True))["missing_field"] == "800,000"
    assert what.startswith("Fix the JSON of those lines")
    assert what.endswith("None of its lines is listed: the first is at or after line 100.")


def test_a_file_with_no_examples_shows_no_block_of_zeros(rt: Runtime) -> None:
    """A JSON array stops at line 1: zeros and empty charts said nothing the error does not."""
    report = error_report(1)
    for key in STATISTIC_COLUMNS:
        report["stats"][key] = 0 if key.startswith("total") else None
    report["stats"]["tokens_per_example"]["histogram"] = []
    dataset = seed(rt, "Array", DatasetStatus.ERROR, report=report)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert not at.exception
    assert "No examples were read from this file, so there are no statistics." in [i.value for i in at.info]
    assert not at.metric and not at.get("vega_lite_chart")


def test_a_report_stored_without_its_lists_says_so(rt: Runtime) -> None:
    """The sweep's last resort keeps counts without lines: a table of counts and no lines looked like a bug."""
    report = error_report(150)
    report.update(errors=[], warnings=[], samples=[], lists_dropped=True)
    dataset = seed(rt, "Dropped", DatasetStatus.ERROR, report=report)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert not at.exception
    assert any("could not be stored with this result" in i.value for i in at.info)


def test_error_dataset_shows_the_reason_and_says_only_100_are_listed(rt: Runtime) -> None:
    dataset = seed(
        rt,
        "Broken export",
        DatasetStatus.ERROR,
        report=error_report(150),
        error_message="150 lines miss `target_response` (missing_field).",
    )
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    page = texts(at)
    assert "Not ready for training." in page
    assert "150 lines miss `target_response` \\(missing\\_field\\)\\." in page  # the field as code
    assert (
        "151 errors in all. The table lists the first 100, on lines 1–100, as many as the report keeps; 1 more, "
        "about the whole file, is above. The counts per code cover every one."
    ) in page
    assert "Errors (151)" in [t.label for t in at.tabs]
    errors = next(df.value for df in at.dataframe if "line" in df.value.columns and len(df.value) > 2)
    assert len(errors) == 100 and errors["line"].notna().all()  # the line errors; the file's own is above them
    assert "**Whole file:** Only 3 training pairs\\. Add more examples\\." in [e.value for e in at.error]
    counts = next(t.value for t in at.table if "missing_field" in set(t.value["Code"]))
    assert dict(zip(counts["Code"], counts["Count"], strict=True)) == {"missing_field": "150", "few_examples": "1"}


BROKEN_CHATS = (
    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    b'{"messages": [{"role": "user", "content": "hi"} {"role": "assistant", "content": "yo"}]}\n'
    b'{"messages": [{"role": "user", "content": "Zo\xeb"}, {"role": "assistant", "content": "ok"}]}\n'
    b'{"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n'
)


def errors_table(at: AppTest) -> Any:
    return next(df.value for df in at.dataframe if "line" in df.value.columns and "code" in df.value.columns)


def test_issues_show_the_text_at_each_column_when_asked(rt: Runtime) -> None:
    report = validate_stream([BROKEN_CHATS], "openai_chat").to_dict()
    dataset = seed(rt, "Broken chats", DatasetStatus.ERROR, report=report)
    rt.store.put_stream(dataset.storage_path, iter([BROKEN_CHATS]), max_bytes=10_000)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert "near" not in errors_table(at).columns  # the file is read again only when asked
    at.button(key="errors-excerpts").click().run()
    assert not at.exception
    assert not [button for button in at.button if button.key == "errors-excerpts"]  # done: no button
    table = errors_table(at)
    near = dict(zip(table["code"], table["near"], strict=True))
    assert '"content": "hi"} ▶{"role": "assistant"' in near["invalid_json"]
    assert '"content": "Zo▶\\xeb"' in near["invalid_utf8"]
    assert near["unknown_role"] == ""  # names a field, not a column
    rt.store.delete(dataset.storage_path)
    at.run()  # kept for this dataset and validation: not read again
    assert list(errors_table(at)["near"]) == list(table["near"])


def test_the_text_at_each_column_of_a_lost_file_says_why(rt: Runtime) -> None:
    report = validate_stream([BROKEN_CHATS], "openai_chat").to_dict()
    lost = seed(rt, "Lost", DatasetStatus.ERROR, report=report)  # its file is not in storage
    at = open_page("pages/dataset.py", {"id": str(lost.id)})
    at.button(key="errors-excerpts").click().run()
    assert not at.exception
    assert service.NO_FILE_MESSAGE in [e.value for e in at.error]
    assert "near" not in errors_table(at).columns
    purged = seed(rt, "Rejected", DatasetStatus.ERROR, report=report, purged_at=utcnow())
    at = open_page("pages/dataset.py", {"id": str(purged.id)})
    assert at.button(key="errors-excerpts").disabled


def test_uploading_dataset_says_the_upload_is_not_finished(rt: Runtime) -> None:
    dataset = seed(rt, "Half sent", DatasetStatus.UPLOADING)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert "Upload not finished." in texts(at)
    assert at.button(key="prepare-download").disabled
    assert at.button(key="revalidate").disabled


def test_an_upload_housekeeping_expired_shows_why_on_its_page_and_in_the_list(rt: Runtime) -> None:
    """Left uploading (the tab was closed): once housekeeping gives up on it, it is an error that says why, and the
    list no longer shows it as uploading."""
    abandoned = seed(rt, "Never sent", DatasetStatus.UPLOADING, age_minutes=3 * 60)
    assert expire_abandoned_uploads(rt.engine, rt.store, rt.settings) == 1
    at = open_page("pages/dataset.py", {"id": str(abandoned.id)})
    page = texts(at)
    assert "Not ready for training." in page and "The upload was not completed" in page
    listed = texts(open_page("pages/datasets.py"))
    assert "**Never sent**\n:red-badge[:material/error: Error]" in listed and "Uploading]" not in listed


def test_validating_dataset_shows_live_status(rt: Runtime) -> None:
    lease = {"lease_owner": "host:1:abc", "lease_expires_at": utcnow() + timedelta(seconds=590)}
    dataset = seed(rt, "In progress", DatasetStatus.VALIDATING, **lease)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert "Validating…" in texts(at)
    assert not at.metric
    at = open_page("pages/datasets.py")
    assert "Checking every line…" in texts(at)


@pytest.mark.parametrize(
    ("fields", "age_minutes", "page_says", "list_says"),
    [
        ({}, 0, "Queued for validation.", "Queued for validation"),
        ({}, 5, "Still waiting for a validation worker**: queued 5 min ago", "Queued for validation"),
        (
            {"lease_expires_at": 40, "attempts": 1},
            1,
            "Storage was unreachable** when its validation started; it is tried again at",
            "Storage unreachable: will retry",
        ),
        (
            {"lease_expires_at": 400, "attempts": 3},
            12,
            "after 3 tries, it stops waiting at",
            "Storage unreachable: will retry",
        ),
        (
            {"lease_owner": "host:1:abc", "lease_expires_at": 200, "attempts": 1},
            8,
            "The worker checking this dataset stopped** before it finished. Another one takes it over by",
            "Worker stopped: will resume",
        ),
    ],
    ids=["queued", "queued-long", "retry-wait", "last-retry-wait", "stalled"],
)
def test_a_dataset_not_being_checked_says_why(
    rt: Runtime, fields: dict[str, Any], age_minutes: int, page_says: str, list_says: str
) -> None:
    """The page says "every line is being checked" only while a worker checks it: queued, waiting out a storage
    outage, or left by a worker that died, it says so (and, queued for long, that no worker may be running)."""
    if "lease_expires_at" in fields:
        fields = {**fields, "lease_expires_at": utcnow() + timedelta(seconds=fields["lease_expires_at"])}
    dataset = seed(rt, "Waiting", DatasetStatus.VALIDATING, age_minutes=age_minutes, **fields)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert page_says in texts(at) and "Validating…" not in texts(at)
    at = open_page("pages/datasets.py")
    assert list_says in texts(at)


def test_a_dataset_that_could_not_be_validated_is_listed_as_not_validated(rt: Runtime) -> None:
    seed(rt, "Interrupted", DatasetStatus.ERROR, error_message="Validation was interrupted 3 times …")
    assert "Not validated" in texts(open_page("pages/datasets.py"))


@pytest.mark.parametrize("dataset_id", ["", "not-a-uuid", "'; DROP TABLE datasets; --", str(uuid.uuid4())])
def test_malformed_or_unknown_id_is_not_found(rt: Runtime, dataset_id: str) -> None:
    at = open_page("pages/dataset.py", {"id": dataset_id} if dataset_id else None)
    assert "Dataset not found" in texts(at)
    assert not at.exception


def test_other_users_and_deleted_datasets_are_not_found(rt: Runtime) -> None:
    theirs = seed(rt, "Bob's secret", DatasetStatus.READY, user_id=BOB, report=ready_report())
    gone = seed(rt, "Deleted one", DatasetStatus.READY, report=ready_report(), deleted_at=utcnow())
    for dataset in (theirs, gone):
        at = open_page("pages/dataset.py", {"id": str(dataset.id)})
        page = texts(at)
        assert "Dataset not found" in page
        assert dataset.name not in page


def test_delete_from_the_detail_page_returns_to_the_list(rt: Runtime) -> None:
    dataset = seed(rt, "Short lived", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    at.button(key="delete").click().run()
    at.button(key="confirm_delete").click().run()
    assert not at.exception
    assert "Deleted" in texts(at) and "No datasets yet" in texts(at)
    with rt.session() as session:
        assert service.list_datasets(session, ALICE).total == 0


def test_download_makes_a_fresh_link(rt: Runtime) -> None:
    dataset = seed(rt, "Downloadable", DatasetStatus.READY, report=ready_report())
    rt.store.put_stream(dataset.storage_path, iter([b'{"a": 1}\n']), max_bytes=1000)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert not at.get("link_button")
    at.button(key="prepare-download").click().run()
    links = at.get("link_button")
    # Relative, so it works on whatever address the user opened the app at (not only LORA_PUBLIC_BASE_URL's).
    assert len(links) == 1 and links[0].proto.url.startswith("/api/storage/download?token=")


def test_download_of_a_missing_file_says_so(rt: Runtime) -> None:
    dataset = seed(rt, "File gone", DatasetStatus.READY, report=ready_report())
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    at.button(key="prepare-download").click().run()
    assert "no stored file" in texts(at)
    assert not at.get("link_button")


def test_a_dataset_without_a_file_offers_only_delete(rt: Runtime) -> None:
    """A rejected, abandoned or lost upload (purged_at set): Download and Revalidate would only fail; they are
    disabled, with the reason on hover, and the caption says when the dataset was created, not "uploaded"."""
    problem = "The file was never uploaded (nothing is stored for this dataset). Create the dataset again."
    dataset = seed(rt, "Never sent", DatasetStatus.ERROR, error_message=problem, purged_at=utcnow())
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert at.button(key="prepare-download").disabled and "No file is stored" in at.button(key="prepare-download").help
    assert at.button(key="revalidate").disabled  # in the Revalidate popover, itself disabled with the same help
    assert not at.button(key="delete").disabled
    assert "created just now" in texts(at) and "· uploaded" not in texts(at)
    assert "The file was never uploaded" in texts(at)


def test_revalidate_as_another_format_checks_the_same_file_as_that_format(rt: Runtime) -> None:
    """Uploaded as the wrong format (the report says which to choose): checked again as the right one, no new
    upload."""
    dataset = seed(rt, "Chat file", DatasetStatus.ERROR, report=error_report())
    rt.store.put_stream(dataset.storage_path, iter([b'{"messages": []}\n']), max_bytes=1000)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    assert at.button(key="revalidate").label == "Revalidate"
    at.selectbox(key=f"revalidate-format-{dataset.id}").select("openai_chat").run()
    assert at.button(key="revalidate").label == "Revalidate as OpenAI chat"
    at.button(key="revalidate").click().run()
    assert not at.exception
    with rt.session() as session:
        stored = service.get_dataset(session, ALICE, dataset.id)
    assert (stored.status, stored.format, stored.validation_report) == (DatasetStatus.VALIDATING, "openai_chat", None)


def test_revalidate_queues_the_dataset_again(rt: Runtime) -> None:
    dataset = seed(rt, "Check again", DatasetStatus.ERROR, report=error_report())
    rt.store.put_stream(dataset.storage_path, iter([b'{"a": 1}\n']), max_bytes=1000)
    at = open_page("pages/dataset.py", {"id": str(dataset.id)})
    at.button(key="revalidate").click().run()
    assert "Queued for validation." in texts(at)  # no sweep runs here: it waits for one
    with rt.session() as session:
        assert service.get_dataset(session, ALICE, dataset.id).status == DatasetStatus.VALIDATING


# --- Upload -----------------------------------------------------------------------------------------------------


def test_upload_page_shows_the_form_and_refuses_an_incomplete_one(rt: Runtime) -> None:
    at = open_page("pages/upload.py")
    assert at.selectbox(key="upload_format").value == "brightrun_lora_v4"
    assert at.selectbox(key="upload_format").options == [
        "BrightRun LoRA v4 (default)",
        "BrightRun LoRA v3",
        "OpenAI chat",
    ]
    at.button(key="upload_start").click().run()
    assert {e.value for e in at.error} == {"Give the dataset a name\\.", "Choose the file to upload\\."}
    with rt.session() as session:
        assert service.list_datasets(session, ALICE).total == 0


@pytest.mark.parametrize("size", [0, 10**12])
def test_an_empty_or_oversize_file_disables_upload_instead_of_a_second_message(rt: Runtime, size: int) -> None:
    """The picker says why as soon as the file is chosen; the page said it again under the form on Upload."""
    at = open_page("pages/upload.py")
    at.text_input(key="upload_name").input("Chats").run()
    at.session_state["upload_file"] = {"file": {"name": "e.jsonl", "size": size, "type": "", "picked": 1}}
    at.run()
    button = at.button(key="upload_start")
    assert button.disabled
    assert "empty" in button.help if size == 0 else "the limit is" in button.help
    assert not at.error


def test_a_name_or_description_over_the_limit_is_said_and_kept(rt: Runtime) -> None:
    """No max_chars: Streamlit dropped a paste that would pass it (the field stayed empty, without a word)."""
    at = open_page("pages/upload.py")
    at.text_input(key="upload_name").input("n" * 200 + "  ").run()  # trimmed, as the service counts
    assert not at.error
    at.text_input(key="upload_name").input("n" * 250).run()
    at.text_area(key="upload_description").input("d" * 5001).run()
    assert at.text_input(key="upload_name").value == "n" * 250  # kept, to be shortened
    name_error = escape_markdown("The name is 250 characters long; the most is 200. Shorten it to upload.")
    description_error = escape_markdown(
        "The description is 5,001 characters long; the most is 5,000. Shorten it to upload."
    )
    assert [e.value for e in at.error] == [name_error, description_error]
    at.session_state["upload_file"] = {"file": {"name": "e.jsonl", "size": 10, "type": "", "picked": 1}}
    at.button(key="upload_start").click().run()
    with rt.session() as session:
        assert service.list_datasets(session, ALICE).total == 0


def test_upload_page_says_when_the_name_is_taken_already(rt: Runtime) -> None:
    older = seed(rt, "Support chats", DatasetStatus.READY, report=ready_report(), age_minutes=90)
    seed(rt, "Support_chats", DatasetStatus.READY, report=ready_report(), age_minutes=1)
    seed(rt, "Old chats", DatasetStatus.READY, report=ready_report(), deleted_at=utcnow())
    seed(rt, "Bob's chats", DatasetStatus.READY, report=ready_report(), user_id=BOB)
    at = open_page("pages/upload.py")
    assert not at.warning
    for name in ("Other", "Old chats", "Bob's chats", "Support chat"):  # new, deleted, someone else's, a prefix
        at.text_input(key="upload_name").input(name).run()
        assert not at.warning, name
    at.text_input(key="upload_name").input("  support CHATS ").run()
    [warning] = at.warning
    assert "You already have a dataset named “Support chats” (created 1 hour ago)." in warning.value
    [link] = [link for link in at.get("page_link") if link.proto.label == "Open the existing dataset"]
    assert link.proto.query_string == f"id={older.id}"
    at.text_input(key="upload_name").input("support_CHATS").run()  # only the name with `_` itself
    assert "You already have a dataset named “Support\\_chats” (created 1 min ago)." in at.warning[0].value
    at.text_input(key="upload_name").input("Support chats").run()
    seed(rt, "SUPPORT chats", DatasetStatus.ERROR)
    at.run()
    assert "2 datasets named “SUPPORT chats” (the newest created just now)" in at.warning[0].value


def test_form_problems() -> None:
    assert upload_flow.form_problems("x", {"name": "a.jsonl", "size": 10}, 100) == []
    assert upload_flow.form_problems("  ", None, 100) == ["Give the dataset a name.", "Choose the file to upload."]
    assert upload_flow.form_problems("x", {"name": "a.jsonl", "size": 0}, 100) == [
        "The chosen file is empty (0 bytes): choose the file that holds your examples."
    ]
    assert upload_flow.form_problems("x", {"name": "a", "size": 101}, 100) == [
        "The chosen file is 101 bytes; the limit is 100 bytes. Compress it with gzip (.jsonl.gz) or split it into "
        "smaller files."
    ]


def test_upload_flow_success_queues_for_validation(rt: Runtime) -> None:
    body = b'{"messages": []}\n'
    dataset_id, job = upload_flow.start(
        rt, ALICE, name="Chats", description="", fmt="openai_chat", chosen_file={"name": "c.jsonl", "size": len(body)}
    )
    assert job["method"] == "PUT" and "/api/storage/upload?token=" in job["url"]
    assert job["file"] == {"name": "c.jsonl", "size": len(body)}
    with rt.session() as session:
        assert service.get_dataset(session, ALICE, dataset_id).status == DatasetStatus.UPLOADING
    storage_path = service.get_dataset(rt.session(), ALICE, dataset_id).storage_path
    rt.store.put_stream(service.upload_key_for(storage_path), iter([body]), 1000)  # as the browser's PUT does
    outcome = upload_flow.settle(rt, ALICE, dataset_id, {"job": job["id"], "ok": True, "status": 200})
    assert outcome == upload_flow.Outcome(dataset_id)
    with rt.session() as session:
        assert service.get_dataset(session, ALICE, dataset_id).status == DatasetStatus.VALIDATING


@pytest.mark.parametrize("arrived", [False, True], ids=["file-stopped", "file-complete"])
def test_leaving_the_upload_page_mid_upload_settles_it_on_the_next_page(rt: Runtime, arrived: bool) -> None:
    """Leaving the Upload page stops the browser's PUT and no result comes back: the next page confirms a file that
    arrived whole, or drops the dataset, and says which, instead of leaving it "uploading" for hours."""
    body = b'{"messages": []}\n'  # 17 bytes
    dataset_id, job = upload_flow.start(
        rt, ALICE, name="Half way", description="", fmt="openai_chat", chosen_file={"name": "c.jsonl", "size": 17}
    )
    if arrived:
        storage_path = service.get_dataset(rt.session(), ALICE, dataset_id).storage_path
        rt.store.put_stream(service.upload_key_for(storage_path), iter([body]), 1000)
    at = open_page("pages/upload.py")
    at.session_state[upload_flow.JOB_KEY] = {"dataset_id": str(dataset_id), "name": "Half way", "job": job}
    at.switch_page("pages/datasets.py")
    at.run()
    assert not at.exception
    assert upload_flow.JOB_KEY not in at.session_state
    [toast] = [t.value for t in at.toast]
    with rt.session() as session:
        listed = service.list_datasets(session, ALICE).items
    if arrived:
        assert toast == escape_markdown(
            "“Half way” had finished uploading when you left the Upload page; it is being validated."
        )
        assert [(d.id, d.status) for d in listed] == [(dataset_id, DatasetStatus.VALIDATING)]
    else:
        assert toast == escape_markdown(
            "The upload of “Half way” stopped when you left the Upload page; nothing was saved. Upload it again."
        )
        assert listed == []


def test_upload_flow_failed_put_says_why_and_keeps_nothing(rt: Runtime) -> None:
    dataset_id, job = upload_flow.start(
        rt, ALICE, name="Chats", description="", fmt="openai_chat", chosen_file={"name": "c.jsonl", "size": 10}
    )
    error = "The storage server refused the file as too large (HTTP 413)."
    outcome = upload_flow.settle(rt, ALICE, dataset_id, {"job": job["id"], "ok": False, "status": 413, "error": error})
    assert outcome.dataset_id is None
    assert outcome.error == f"Upload failed: {error} Nothing was saved; choose the file and try again."
    with rt.session() as session:
        assert service.list_datasets(session, ALICE).total == 0


def test_upload_flow_put_that_did_not_arrive_is_rejected_with_the_reason(rt: Runtime) -> None:
    dataset_id, job = upload_flow.start(
        rt, ALICE, name="Chats", description="", fmt="openai_chat", chosen_file={"name": "c.jsonl", "size": 10}
    )
    outcome = upload_flow.settle(rt, ALICE, dataset_id, {"job": job["id"], "ok": True, "status": 200})
    assert outcome.dataset_id == dataset_id
    assert outcome.error is not None and "never uploaded" in outcome.error
    with rt.session() as session:
        assert service.get_dataset(session, ALICE, dataset_id).status == DatasetStatus.ERROR


# --- Notifications ----------------------------------------------------------------------------------------------


def notify(
    rt: Runtime,
    dataset: Dataset,
    *,
    ok: bool = True,
    read: bool = False,
    user_id: str = ALICE,
    later: bool = False,
) -> Notification:
    """A notification about `dataset`, written with its current version as the sweep writes one (`created_at` =
    the dataset's `updated_at`), or `later` than it (the outcome of a validation the dataset does not show yet)."""
    notification = Notification(
        created_at=dataset.updated_at + timedelta(seconds=1) if later else dataset.updated_at,
        user_id=user_id,
        dataset_id=dataset.id,
        kind=NotificationKind.DATASET_READY if ok else NotificationKind.DATASET_FAILED,
        title=f"“{dataset.name}” is ready" if ok else f"“{dataset.name}” has errors",
        message="44 training pairs, 58,316 tokens." if ok else "3 errors.",
        link=f"/dataset?id={dataset.id}",
        read_at=utcnow() if read else None,
    )
    with rt.session() as session:
        session.add(notification)
        session.commit()
    return notification


def sidebar_link_labels(at: AppTest) -> list[str]:
    return [link.proto.label for link in at.sidebar.get("page_link")]


def test_sidebar_shows_the_unread_count_on_every_page(rt: Runtime) -> None:
    dataset = seed(rt, "Done", DatasetStatus.READY, report=ready_report())
    notify(rt, dataset)
    notify(rt, dataset, ok=False)
    notify(rt, dataset, read=True)
    notify(rt, dataset, user_id=BOB)
    for page in ("pages/datasets.py", "pages/upload.py", "pages/notifications.py"):
        at = open_page(page)
        assert "2 unread notifications" in sidebar_link_labels(at), page


def test_notifications_page_lists_links_and_marks_read(rt: Runtime) -> None:
    dataset = seed(rt, "Done <i>x</i>", DatasetStatus.READY, report=ready_report())
    first = notify(rt, dataset)
    notify(rt, dataset, ok=False)
    at = open_page("pages/notifications.py")
    assert f"**{escape_markdown(first.title)}**" in [m.value for m in at.markdown]
    opens = [link for link in at.get("page_link") if link.proto.label == "Open dataset"]
    assert [link.proto.query_string for link in opens] == [f"id={dataset.id}"] * 2
    at.button(key=f"read-{first.id}").click().run()
    assert "1 unread notification" in sidebar_link_labels(at)
    at.button(key="mark-all-read").click().run()
    assert "Marked 1 notification read." in texts(at)
    assert "No unread notifications" in sidebar_link_labels(at)
    with rt.session() as session:
        assert service.unread_notification_count(session, ALICE) == 0


def test_a_notification_of_a_deleted_dataset_has_no_dead_link(rt: Runtime) -> None:
    """Its "Open dataset" led to "Dataset not found"."""
    kept = seed(rt, "Kept", DatasetStatus.READY, report=ready_report())
    gone = seed(rt, "Gone", DatasetStatus.READY, report=ready_report())
    notify(rt, kept)
    notify(rt, gone)
    with rt.session() as session:
        service.delete_dataset(session, ALICE, gone.id)
    at = open_page("pages/notifications.py")
    opens = [link for link in at.get("page_link") if link.proto.label == "Open dataset"]
    assert [link.proto.query_string for link in opens] == [f"id={kept.id}"]
    assert "The dataset was deleted." in [c.value for c in at.caption]


def test_opening_a_dataset_result_marks_its_notifications_read(rt: Runtime) -> None:
    ready = seed(rt, "Done", DatasetStatus.READY, report=ready_report())
    revalidating = seed(rt, "Again", DatasetStatus.VALIDATING)  # its earlier result was announced
    notify(rt, ready)
    notify(rt, ready, ok=False)
    notify(rt, revalidating)
    notify(rt, ready, user_id=BOB)  # not Alice's: never hers to read
    notify(rt, ready, later=True)  # a later validation's outcome, which the page has not shown

    def unread() -> int:
        with rt.session() as session:
            return service.unread_notification_count(session, ALICE)

    open_page("pages/dataset.py", {"id": str(revalidating.id)})
    assert unread() == 4  # no result on screen yet: still unread
    at = open_page("pages/dataset.py", {"id": str(ready.id)})
    assert "Ready for training." in texts(at)
    assert unread() == 2
    with rt.session() as session:
        assert service.unread_notification_count(session, BOB) == 1


def test_a_database_error_while_marking_read_leaves_the_result_on_screen(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready = seed(rt, "Done", DatasetStatus.READY, report=ready_report())
    notify(rt, ready)
    calls: list[object] = []

    def locked(*args: object, **kwargs: object) -> int:
        calls.append(args)
        raise OperationalError("UPDATE notifications", {}, Exception("database is locked"))

    monkeypatch.setattr(service, "mark_dataset_notifications_read", locked)
    at = open_page("pages/dataset.py", {"id": str(ready.id)})
    assert "Ready for training." in texts(at) and calls
    at.run()
    assert len(calls) == 2  # not marked: tried again at the next run
    monkeypatch.undo()
    at.run()
    at.run()  # marked now
    with rt.session() as session:
        assert service.unread_notification_count(session, ALICE) == 0


def test_notifications_empty_state(rt: Runtime) -> None:
    at = open_page("pages/notifications.py")
    assert "No notifications yet" in texts(at)
    assert at.button(key="mark-all-read").disabled


def test_a_new_notification_is_toasted_once(rt: Runtime) -> None:
    dataset = seed(rt, "Toasty", DatasetStatus.READY, report=ready_report())
    notify(rt, dataset)  # already there when the session starts: not news
    at = open_page("pages/datasets.py")
    assert not at.toast
    # Stamped as the one before (the sweep stamps before it commits, and may wait for a lock): still news.
    fresh = notify(rt, dataset, ok=False)
    at.run()
    assert [t.value for t in at.toast] == [escape_markdown(fresh.title)]
    at.run()
    assert not at.toast


def test_an_old_unread_notification_coming_into_view_is_not_toasted(rt: Runtime) -> None:
    """The sidebar reads the 20 newest unread; reading one brings the 21st into view, which is not news."""
    dataset = seed(rt, "Many", DatasetStatus.READY, report=ready_report())
    for _ in range(21):
        notify(rt, dataset)
    at = open_page("pages/datasets.py")
    assert not at.toast
    with rt.session() as session:
        in_view = service.list_notifications(session, ALICE, unread_only=True, limit=20)
        for notification in in_view:
            service.mark_notification_read(session, ALICE, notification.id)
        assert service.unread_notification_count(session, ALICE) == 1  # the one the sidebar had not read yet
    at.run()
    assert not at.toast
    fresh = notify(rt, dataset, ok=False, later=True)
    at.run()
    assert [t.value for t in at.toast] == [escape_markdown(fresh.title)]


@pytest.mark.parametrize(("given", "shown"), [("ready", "Ready"), (" ERROR ", "Error"), ("bogus", "All")])
def test_status_in_the_url_is_read_whatever_its_case(rt: Runtime, given: str, shown: str) -> None:
    """`?status=ready`, as the API spells statuses, filters as "Ready" does; an unknown status shows all."""
    seed(rt, "Good", DatasetStatus.READY, report=ready_report())
    seed(rt, "Broken", DatasetStatus.ERROR, report=error_report())
    at = AppTest.from_file(UI_SCRIPT, default_timeout=30)
    at.query_params["status"] = given
    at.run()
    assert not at.exception
    assert at.button_group(key="status").value == shown
    expected = {"Ready": ["Good"], "Error": ["Broken"], "All": ["Broken", "Good"]}[shown]
    assert sorted(dataset_names_listed(at)) == expected
    assert at.query_params.get("status", "All") == shown  # the link now reads as the control's label


def test_status_respelled_within_a_session_still_filters(rt: Runtime) -> None:
    """Once the control is bound its parameter cannot be set by code: the control's state is set instead."""
    seed(rt, "Good", DatasetStatus.READY, report=ready_report())
    seed(rt, "Broken", DatasetStatus.ERROR, report=error_report())
    at = AppTest.from_file(UI_SCRIPT, default_timeout=30)
    at.run()
    at.query_params["status"] = "error"
    at.run()
    assert not at.exception
    assert at.button_group(key="status").value == "Error"
    assert dataset_names_listed(at) == ["Broken"]


@pytest.mark.parametrize("page", ["²", "١", "-1", "0", "9" * 30])
def test_a_page_number_that_is_not_one_shows_the_first_page(rt: Runtime, page: str) -> None:
    """ "²" passed isdigit() and crashed int(); "١" is a digit int() reads, but no page number anyone typed."""
    seed(rt, "Only", DatasetStatus.READY, report=ready_report())
    at = AppTest.from_file(UI_SCRIPT, default_timeout=30)
    at.query_params["page"] = page
    at.run()
    assert not at.exception
    assert dataset_names_listed(at) == ["Only"]
