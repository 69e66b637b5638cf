"""Dataset detail (`/dataset?id=…`): live status, statistics, charts, errors and warnings, samples, actions."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from lora_core import service
from lora_core.errors import NotFound, ServiceError
from lora_core.models import Dataset, DatasetStatus
from lora_core.settings import DATASET_FORMATS
from lora_core.sweep import LISTS_DROPPED, Stage, validation_stage
from lora_core.validation.codes import CODE_ADVICE
from lora_core.validation.excerpts import Excerpt
from lora_ui import charts
from lora_ui.components import (
    DATASETS_PAGE,
    FORMAT_LABELS,
    PENDING_STATUSES,
    UPLOAD_PAGE,
    browser_url,
    confirm_delete_if_requested,
    escape_markdown,
    escape_markdown_block,
    escape_markdown_keeping_code,
    format_clock,
    format_size,
    format_thousands,
    format_timestamp,
    format_when,
    is_uuid,
    list_query_params,
    request_delete,
    show_flash,
    show_service_error,
    status_badge,
    tab_title,
)
from lora_ui.identity import current_user_id, runtime
from lora_ui.navigation import require_navigation

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2
# Queued longer than this, a dataset's page says that no worker may be running (a sweep looks every few seconds).
QUEUE_PATIENCE_SECONDS = 60
LISTED_ISSUES_LIMIT = 100  # FORMAT.md: the report lists the first 100 line issues of each kind
ISSUE_COLUMNS = ["line", "code", "field", "message", "suggestion"]
NEAR_MARK = "▶"  # in the Near column, before the character an issue's column or byte names
EXCERPTS_ERROR_KEY = "excerpts_error"
REVALIDATE_ERROR_KEY = "revalidate_error"
NEAR_BEFORE = 24  # characters kept ahead of it: a cell shows the start of its text
NO_FILE_HELP = "No file is stored for this dataset (the message below says why); create the dataset again."


def _not_found() -> None:
    st.title("Dataset not found")
    st.warning(
        "There is no dataset at this address: it was deleted, the link is wrong, or it belongs to someone else.",
        icon=":material/search_off:",
    )
    st.page_link(
        DATASETS_PAGE, label="Back to your datasets", icon=":material/arrow_back:", query_params=list_query_params()
    )
    st.stop()


def _load(user_id: str, dataset_id: str) -> Dataset | None:
    try:
        with runtime().session() as session:
            return service.get_dataset(session, user_id, dataset_id)
    except NotFound:
        return None


def _page_id(dataset_id: uuid.UUID | str) -> str:
    """This page, for one dataset: where its delete request was made (components.request_delete)."""
    return f"dataset:{dataset_id}"


def _go_to_list() -> None:
    st.switch_page(DATASETS_PAGE, query_params=list_query_params())


# --- Header and status ------------------------------------------------------------------------------------------


def _header(dataset: Dataset) -> None:
    st.set_page_config(page_title=tab_title(dataset.name))  # several datasets open in tabs are told apart
    st.page_link(DATASETS_PAGE, label="All datasets", icon=":material/arrow_back:", query_params=list_query_params())
    title_col, badge_col = st.columns([5, 1], vertical_alignment="center")
    title_col.title(escape_markdown(dataset.name))
    with badge_col:
        status_badge(dataset.status)
    st.caption(
        " · ".join(
            [
                f":material/description: {escape_markdown(dataset.file_name)}",
                format_size(dataset.file_size),
                FORMAT_LABELS.get(dataset.format, escape_markdown(dataset.format)),
                f"created {format_when(dataset.created_at)}",
            ]
            + ([f"validated {format_timestamp(dataset.validated_at)}"] if dataset.validated_at else [])
        )
    )
    if dataset.description:
        st.text(dataset.description)


def _pending_status(dataset: Dataset) -> None:
    if dataset.status == DatasetStatus.UPLOADING:
        st.warning(
            "**Upload not finished.** The file has not arrived completely: the upload was interrupted, failed, "
            "or is still running in another tab. If it is not running, delete this dataset and upload the file again.",
            icon=":material/cloud_off:",
        )
        st.page_link(UPLOAD_PAGE, label="Upload again", icon=":material/upload:")
    else:
        _validating_status(dataset)


def _validating_status(dataset: Dataset) -> None:
    """Checking, or why not yet: queued (for long: no worker may be running), storage down, or its worker died."""
    settings = runtime().settings
    now = datetime.now(UTC)
    progress = validation_stage(dataset, settings.sweep_lease_seconds, now)
    if progress.stage == Stage.CHECKING:
        st.info(
            "**Validating…** Every line is being checked; statistics appear here when it is done. "
            "This page updates by itself.",
            icon=":material/hourglass_top:",
        )
    elif progress.stage == Stage.RETRY_WAIT:
        if dataset.attempts < settings.sweep_max_attempts:
            then = f"it is tried again at {format_clock(progress.until)} (try {dataset.attempts + 1} of "
            then += f"{settings.sweep_max_attempts})"
        else:
            then = f"after {dataset.attempts} tries, it stops waiting at {format_clock(progress.until)}: then "
            then += "Revalidate it once storage is back"
        st.warning(
            f"**Storage was unreachable** when its validation started; {then}. This page updates by itself.",
            icon=":material/cloud_off:",
        )
    elif progress.stage == Stage.STALLED:
        st.warning(
            "**The worker checking this dataset stopped** before it finished. Another one takes it over by "
            f"{format_clock(progress.until)}; this page updates by itself.",
            icon=":material/sync_problem:",
        )
    elif progress.since is None or now - progress.since < timedelta(seconds=QUEUE_PATIENCE_SECONDS):
        st.info(
            "**Queued for validation.** A worker starts checking it in a moment; this page updates by itself.",
            icon=":material/hourglass_top:",
        )
    else:
        st.warning(
            f"**Still waiting for a validation worker**: queued {format_when(progress.since, now)}. Other "
            "datasets may be ahead of it; if this lasts, no worker is running, and an administrator should check "
            "that the app's sweep or `python -m lora_core worker` runs.",
            icon=":material/schedule:",
        )


@st.fragment(run_every=REFRESH_SECONDS)
def _live_status(user_id: str, dataset_id: str, shown_status: DatasetStatus) -> None:
    """Polls while the dataset is pending; when its status changes the whole page reruns to show the result."""
    dataset = _load(user_id, dataset_id)
    if dataset is None or dataset.status != shown_status:
        st.rerun(scope="app")
        return
    _pending_status(dataset)


# --- Statistics and charts --------------------------------------------------------------------------------------


def _number(value: float | int | None, decimals: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{decimals}f}"


def _metrics(dataset: Dataset, stats: Mapping[str, Any]) -> None:
    over = stats.get("over_context_limit")
    limit = stats.get("context_limit") or runtime().settings.context_limit
    first = st.columns(4)
    first[0].metric("Training pairs", _number(stats.get("total_training_pairs", dataset.total_training_pairs)))
    first[1].metric("Conversations", _number(stats.get("total_conversations", dataset.total_conversations)))
    first[2].metric("Examples", _number(stats.get("total_examples", dataset.total_examples)))
    first[3].metric(
        "Total tokens",
        format_thousands(stats.get("total_tokens", dataset.total_tokens)),
        help=f"{_number(stats.get('total_tokens', dataset.total_tokens))} tokens (estimate: words × 1.3)",
    )
    second = st.columns(4)
    second[0].metric(
        "Target tokens",
        format_thousands(stats.get("total_target_tokens", dataset.total_target_tokens)),
        help=f"{_number(stats.get('total_target_tokens'))} tokens in the assistant replies being trained",
    )
    second[1].metric(
        "Avg turns / conversation",
        _number(stats.get("avg_turns_per_conversation", dataset.avg_turns_per_conversation), 2),
    )
    # Two decimals, as the report, the API and the command line give it (FORMAT.md).
    second[2].metric("Avg tokens / pair", _number(stats.get("avg_tokens_per_pair", dataset.avg_tokens_per_pair), 2))
    second[3].metric(
        "Over context limit",
        _number(over),
        help=f"Examples longer than {limit:,} tokens; a trainer truncates them.",
        delta=f"{over / max(1, stats.get('total_examples') or 1):.0%} of examples" if over else None,
        delta_color="inverse",
        delta_arrow="off",
    )


def _charts(stats: Mapping[str, Any]) -> None:
    limit = stats.get("context_limit") or runtime().settings.context_limit
    tokens = (stats.get("tokens_per_example") or {}).get("histogram") or []
    turns = (stats.get("turns_per_conversation") or {}).get("histogram") or []
    roles = stats.get("messages_per_role") or {}
    left, right = st.columns([3, 2])
    with left, st.container(border=True):
        st.markdown("**Tokens per example**")
        if tokens:
            distribution = stats.get("tokens_per_example") or {}
            st.altair_chart(charts.tokens_histogram(tokens, limit, distribution.get("max")), width="stretch")
            _distribution_caption(distribution)
            if distribution.get("max") is not None and distribution["max"] <= limit:
                st.caption(f"Every example fits the context limit of {limit:,} tokens.")
        else:
            st.caption("No examples to chart.")
    with right, st.container(border=True):
        st.markdown("**Turns per conversation**")
        if turns:
            distribution = stats.get("turns_per_conversation") or {}
            st.altair_chart(charts.turns_histogram(turns, distribution.get("max")), width="stretch")
            _distribution_caption(distribution)
        else:
            st.caption("No conversations to chart.")
    with st.container(border=True):
        st.markdown("**Training messages per role**")
        if any(roles.values()):
            st.altair_chart(charts.messages_per_role(roles), width="stretch")
        else:
            st.caption("No training messages to chart.")


def _distribution_caption(distribution: Mapping[str, Any]) -> None:
    parts = [f"{key} {distribution[key]:,}" for key in ("min", "p50", "p90", "p99", "max") if key in distribution]
    if parts:
        st.caption(" · ".join(parts))


# --- Errors and warnings ----------------------------------------------------------------------------------------


def _issues_frame(
    issues: Sequence[Mapping[str, Any]], excerpts: Mapping[tuple[int, str, int], Excerpt] | None = None
) -> pd.DataFrame:
    """The listed line issues (never none: the tab returns before) as the table's rows; with `excerpts`, a column
    of the text at each issue's column or byte, a marker before the character it names."""
    frame = pd.DataFrame([{column: issue.get(column) for column in ISSUE_COLUMNS} for issue in issues])
    frame["line"] = frame["line"].astype("Int64")
    frame["field"] = frame["field"].fillna("")  # most issues concern no one field: a blank, not "None"
    if excerpts is not None:
        frame.insert(3, "near", [_near(issue, excerpts) for issue in issues])
    return frame


def _near(issue: Mapping[str, Any], excerpts: Mapping[tuple[int, str, int], Excerpt]) -> str:
    for kind in ("column", "offset"):
        excerpt = excerpts.get((issue["line"], kind, issue.get(kind)))
        if excerpt is not None:
            return excerpt.marked(NEAR_MARK, before=NEAR_BEFORE)
    return ""


def _counts_frame(issues: Sequence[Mapping[str, Any]], counts: Mapping[str, int]) -> pd.DataFrame:
    """Each code, how often, and what to do about it, readable in full here: in the table of lines, the message and
    suggestion of each share one row. A code whose listed issues all suggest the same shows that; one whose
    suggestions name the line's own text (`human` → `user`, "line 7") shows its first, saying whose it is. The table
    renders Markdown, and a suggestion may quote the file (a role name): escaped, its `code` spans kept."""
    first: dict[str, Mapping[str, Any]] = {}
    varied: set[str] = set()
    for issue in issues:
        code = issue["code"]
        if code not in first:
            first[code] = issue
        elif issue.get("suggestion") != first[code].get("suggestion"):
            varied.add(code)

    last_listed = max((issue["line"] for issue in issues if issue.get("line") is not None), default=None)

    def what_to_do(code: str) -> str:
        issue = first.get(code)
        if issue is None:  # first seen past the listed lines: counted only, with no suggestion of its own here
            advice = escape_markdown_keeping_code(CODE_ADVICE.get(code, ""))
            where = (
                f" None of its lines is listed: the first is at or after line {last_listed:,}." if last_listed else ""
            )
            return f"{advice}{where}".strip()
        text = escape_markdown_keeping_code(issue.get("suggestion") or "")
        if code in varied and issue.get("line") is not None:
            return f"For line {issue['line']:,}: {text} The other lines' suggestions differ: see each line."
        return text

    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    rows = [(code, f"{count:,}", what_to_do(code)) for code, count in ordered]  # "800,000", as the page's totals
    return pd.DataFrame(rows, columns=["Code", "Count", "What to do"])


def _issues_tab(
    kind: str,
    issues: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int],
    total: int,
    dataset: Dataset,
) -> None:
    """Issues of the whole file as callouts, then the count and suggestion per code, then the listed line issues.

    Full width, so that messages and suggestions can be read (in a narrow column they were cut after a few words)."""
    if not total and not issues:
        st.success(f"No {kind}.", icon=":material/check:")
        return
    callout = st.error if kind == "errors" else st.warning
    for issue in issues:
        if issue.get("line") is None:
            message = escape_markdown_keeping_code(f"{issue['message']} {issue.get('suggestion') or ''}")
            callout(f"**Whole file:** {message}", icon=":material/description:")
    # A static table, which wraps its text: one row per code, each suggestion read in full.
    st.table(_counts_frame(issues, counts), hide_index=True, border="horizontal")
    line_issues = [issue for issue in issues if issue.get("line") is not None]
    if not line_issues:
        return
    if total > len(issues) or len(line_issues) >= LISTED_ISSUES_LIMIT:
        whole_file = len(issues) - len(line_issues)
        above = f"; {whole_file:,} more, about the whole file, {'is' if whole_file == 1 else 'are'} above"
        st.info(
            f"{total:,} {kind} in all. The table lists the first {len(line_issues):,}, on lines "
            f"{line_issues[0]['line']:,}–{line_issues[-1]['line']:,}, as many as the report keeps"
            f"{above if whole_file else ''}. The counts per code cover every one.",
            icon=":material/info:",
        )
    frame = _issues_frame(line_issues, _excerpts(kind, line_issues, dataset))
    filter_col, search_col = st.columns([2, 2])
    codes = filter_col.multiselect(
        "Codes", sorted(frame["code"].dropna().unique()), key=f"{kind}-codes", placeholder="All codes"
    )
    text = search_col.text_input(
        "Search", key=f"{kind}-search", placeholder="code, field, message or suggestion", live=True
    )
    if codes:
        frame = frame[frame["code"].isin(codes)]
    if text:
        needle = text.lower()
        haystack = frame[["code", "field", "message", "suggestion"]].fillna("").astype(str).agg(" ".join, axis=1)
        frame = frame[haystack.str.lower().str.contains(needle, regex=False)]
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key=f"{kind}-table",
        column_config={
            "line": st.column_config.NumberColumn("Line", width="small", format="%d"),
            "code": st.column_config.TextColumn("Code", width="medium"),
            "field": st.column_config.TextColumn("Field", width="small"),
            "near": st.column_config.TextColumn(
                "Near", width="large", help=f"The text of the line; {NEAR_MARK} marks the column or byte named"
            ),
            "message": st.column_config.TextColumn("Message", width="large"),
            "suggestion": st.column_config.TextColumn("Suggestion", width="large"),
        },
    )


def _excerpts_key(dataset: Dataset) -> str:
    return f"excerpts:{dataset.id}:{dataset.validated_at}"  # a new validation names other positions


def _read_excerpts(dataset: Dataset) -> None:
    """The button's callback, before the page runs: the text is there (or why not) when the table is drawn."""
    try:
        with st.spinner("Reading the file…"), runtime().session() as session:
            found = service.issue_excerpts(session, runtime().store, runtime().settings, current_user_id(), dataset.id)
    except ServiceError as error:
        st.session_state[EXCERPTS_ERROR_KEY] = error
        return
    st.session_state[_excerpts_key(dataset)] = found


def _excerpts(
    kind: str, line_issues: Sequence[Mapping[str, Any]], dataset: Dataset
) -> Mapping[tuple[int, str, int], Excerpt] | None:
    """The text at the columns and bytes the issues name, once asked for (it reads the file from storage again, up
    to the last line needed); None until then, or when no issue names a position."""
    if not any(issue.get("column") is not None or issue.get("offset") is not None for issue in line_issues):
        return None
    found = st.session_state.get(_excerpts_key(dataset))
    if found is not None:
        return found
    st.button(
        "Show the text near each error",
        key=f"{kind}-excerpts",
        icon=":material/text_select_start:",
        disabled=not dataset.file_stored,
        help="Reads the file again to show the text around each position an issue names, such as invalid JSON."
        if dataset.file_stored
        else NO_FILE_HELP,
        on_click=_read_excerpts,
        args=(dataset,),
    )
    if (error := st.session_state.pop(EXCERPTS_ERROR_KEY, None)) is not None:
        show_service_error(error)
    return None


def _issues(report: Mapping[str, Any], dataset: Dataset) -> None:
    errors = report.get("errors") or []
    warnings = report.get("warnings") or []
    error_total = int(report.get("error_count") or dataset.error_count or len(errors))
    warning_total = int(report.get("warning_count") or dataset.warning_count or len(warnings))
    st.subheader("Errors and warnings")
    if report.get(LISTS_DROPPED):
        st.info(
            "The counts below are complete, but the listed lines and the samples could not be stored with this "
            "result. Revalidate to try again, or check the file with `python -m lora_core validate`.",
            icon=":material/info:",
        )
    labels = [f"Errors ({error_total:,})", f"Warnings ({warning_total:,})"]
    if error_total == 0 and warning_total:  # open on what there is to read
        warnings_tab, errors_tab = st.tabs(labels[::-1])
    else:
        errors_tab, warnings_tab = st.tabs(labels)
    with errors_tab:
        _issues_tab("errors", errors, report.get("error_counts") or {}, error_total, dataset)
    with warnings_tab:
        _issues_tab("warnings", warnings, report.get("warning_counts") or {}, warning_total, dataset)


# --- Samples ----------------------------------------------------------------------------------------------------

AVATARS = {"system": ":material/settings:", "user": ":material/person:", "assistant": ":material/smart_toy:"}


def _sample_messages(sample: Any) -> tuple[int | None, list[Mapping[str, Any]]]:
    """A sample is either a list of messages (FORMAT.md) or `{line, messages}` (what the validator writes)."""
    if isinstance(sample, Mapping):
        return sample.get("line"), list(sample.get("messages") or [])
    return None, list(sample or [])


def _samples(report: Mapping[str, Any]) -> None:
    samples = report.get("samples") or []
    if not samples:
        return
    st.subheader("First examples")
    st.caption("As a trainer reads them: the training messages of each example, contents cut to 2,000 characters.")
    tabs = st.tabs([f"Example {index + 1}" for index in range(len(samples))])
    for tab, sample in zip(tabs, samples, strict=True):
        line, messages = _sample_messages(sample)
        with tab:
            if line is not None:
                st.caption(f"Line {line:,}")
            if not messages:
                where = f"line {line:,}" if line is not None else "this line"
                st.info(
                    f"This example has no training messages: nothing on {where} is a message a trainer could use. "
                    "Its errors, in the table above, say why.",
                    icon=":material/info:",
                )
            for message in messages:
                role = str(message.get("role") or "unknown")
                with st.chat_message(role, avatar=AVATARS.get(role, ":material/help:")):
                    st.caption(escape_markdown(role))
                    # Dataset content is data, never Markdown or HTML: every special character is escaped.
                    st.markdown(escape_markdown_block(str(message.get("content") or "")))


# --- Actions ----------------------------------------------------------------------------------------------------


def _revalidate(user_id: str, dataset: Dataset, popover_key: str, format_key: str) -> None:
    """The popover's button, before the page runs: queue the dataset again (as the chosen format) and close the
    popover; the page then shows it validating, or why it could not."""
    st.session_state[popover_key] = False
    try:
        with runtime().session() as session:
            service.revalidate_dataset(
                session, runtime().store, user_id, dataset.id, st.session_state.get(format_key, dataset.format)
            )
    except ServiceError as error:
        st.session_state[REVALIDATE_ERROR_KEY] = error


def _actions(user_id: str, dataset: Dataset) -> None:
    with st.container(horizontal=True, gap="small"):
        # A dataset whose upload was rejected, abandoned or lost has no file: nothing to offer but Delete.
        no_file = None if dataset.file_stored or dataset.status == DatasetStatus.UPLOADING else NO_FILE_HELP
        download_clicked = st.button(
            "Download",
            icon=":material/download:",
            key="prepare-download",
            disabled=not dataset.file_stored,
            help=no_file or "Makes a fresh link to the file; it expires after a few minutes.",
        )
        cannot_revalidate = not dataset.file_stored or dataset.status not in (DatasetStatus.READY, DatasetStatus.ERROR)
        # A popover, for the format: a file found to be in another format is checked again as that one, without a
        # new upload (the `wrong_format` suggestion says which).
        # Its open state is kept (on_change), so that revalidating can close it: it stayed open over the result.
        popover_key = f"revalidate-popover-{dataset.id}"
        with st.popover(
            "Revalidate",
            icon=":material/refresh:",
            disabled=cannot_revalidate,
            help=no_file or "Check the file again with the current rules, as this format or another.",
            key=popover_key,
            on_change="rerun",
        ):
            format_key = f"revalidate-format-{dataset.id}"  # a choice made for one dataset is not another's
            fmt = st.selectbox(
                "Format",
                DATASET_FORMATS,
                index=DATASET_FORMATS.index(dataset.format) if dataset.format in DATASET_FORMATS else 0,
                format_func=FORMAT_LABELS.get,
                key=format_key,
            )
            st.button(
                "Revalidate" if fmt == dataset.format else f"Revalidate as {FORMAT_LABELS[fmt]}",
                type="primary",
                key="revalidate",
                disabled=cannot_revalidate,
                on_click=_revalidate,
                args=(user_id, dataset, popover_key, format_key),
            )
        st.button(
            "Delete",
            icon=":material/delete:",
            key="delete",
            on_click=request_delete,
            args=(dataset, _page_id(dataset.id)),
        )
    if (error := st.session_state.pop(REVALIDATE_ERROR_KEY, None)) is not None:
        show_service_error(error)
    if download_clicked:
        try:
            with runtime().session() as session:
                url = service.download_url(session, runtime().store, user_id, dataset.id)
        except ServiceError as error:
            show_service_error(error)
        else:
            minutes = max(1, runtime().settings.download_url_ttl_seconds // 60)
            link = browser_url(url, runtime().settings.public_base_url)  # on the origin the user opened
            st.link_button("Save the file", link, icon=":material/file_download:", type="primary")
            st.caption(f"This link works for {minutes} minutes; click Download again for a new one.")


def _mark_notifications_read(user_id: str, dataset: Dataset) -> None:
    """The result is on screen: the notifications announcing it are read (the sidebar's count follows at its next
    poll). Those written with this version of the dataset or before it (the sweep writes a result and its
    notification in one transaction, with one time), so that a later validation's is not read unseen; once per
    version in a session, not at every rerun (on SQLite each UPDATE takes the write lock). A database error is
    logged: the result stays on screen."""
    key = f"notifications-read:{dataset.id}:{dataset.updated_at}"
    if st.session_state.get(key):
        return
    try:
        with runtime().session() as session:
            service.mark_dataset_notifications_read(session, user_id, dataset.id, created_before=dataset.updated_at)
    except SQLAlchemyError:
        logger.warning("Could not mark the notifications of dataset %s read", dataset.id, exc_info=True)
        return
    st.session_state[key] = True


# --- Page -------------------------------------------------------------------------------------------------------

require_navigation()
user_id = current_user_id()
dataset_id = st.query_params.get("id")
if not dataset_id or not is_uuid(dataset_id):
    _not_found()
dataset = _load(user_id, dataset_id)
if dataset is None:
    _not_found()
assert dataset is not None

confirm_delete_if_requested(user_id, _page_id(dataset.id), on_deleted=_go_to_list)
show_flash()
_header(dataset)
_actions(user_id, dataset)

if dataset.status in PENDING_STATUSES:
    _live_status(user_id, dataset_id, dataset.status)
    st.stop()

_mark_notifications_read(user_id, dataset)

report: Mapping[str, Any] = dataset.validation_report or {}
if dataset.status == DatasetStatus.ERROR:
    st.error(
        "**Not ready for training.** "
        + escape_markdown_keeping_code(dataset.error_message or "Validation found errors."),
        icon=":material/error:",
    )
else:
    warnings = report.get("warning_count") or dataset.warning_count or 0
    st.success(
        "**Ready for training.** No errors"
        + (f"; {warnings:,} warning{'s' if warnings != 1 else ''} worth a look." if warnings else "."),
        icon=":material/check_circle:",
    )

stats = report.get("stats") or {}
if stats.get("total_examples") == 0 or (not stats and dataset.total_examples == 0):
    # A JSON array, a binary or empty file: a block of zeros and empty charts said nothing the errors do not.
    st.subheader("Statistics")
    st.info("No examples were read from this file, so there are no statistics.", icon=":material/info:")
elif stats or dataset.total_examples is not None:
    st.subheader("Statistics")
    _metrics(dataset, stats)
    if stats:
        _charts(stats)
if report:
    _issues(report, dataset)
    _samples(report)
