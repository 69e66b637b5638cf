"""Small renderers shared by the pages: safe text, status badges, sizes and times, errors, the delete dialog.

User-provided text (names, descriptions, file names, dataset content) must never be read as Markdown or HTML:
show it with `st.text`, or pass it through `escape_markdown` before it goes into any Markdown string.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import streamlit as st

from lora_core import service
from lora_core.errors import ServiceError
from lora_core.models import Dataset, DatasetStatus, as_utc
from lora_ui.identity import runtime

DETAIL_PAGE = "pages/dataset.py"
DATASETS_PAGE = "pages/datasets.py"
UPLOAD_PAGE = "pages/upload.py"
NOTIFICATIONS_PAGE = "pages/notifications.py"
# The list's page number as the session last showed it: the way back from a dataset ("All datasets", a delete)
# returns there. The search and the status filter come back by themselves (their controls keep their state), but
# the page number lives only in the list's URL, which a link to another page leaves.
LIST_PAGE_KEY = "list-page"

STATUS_COLORS: dict[DatasetStatus, str] = {
    DatasetStatus.UPLOADING: "blue",
    DatasetStatus.VALIDATING: "yellow",
    DatasetStatus.READY: "green",
    DatasetStatus.ERROR: "red",
}
STATUS_ICONS: dict[DatasetStatus, str] = {
    DatasetStatus.UPLOADING: ":material/upload:",
    DatasetStatus.VALIDATING: ":material/hourglass_top:",
    DatasetStatus.READY: ":material/check_circle:",
    DatasetStatus.ERROR: ":material/error:",
}
PENDING_STATUSES = frozenset({DatasetStatus.UPLOADING, DatasetStatus.VALIDATING})
FORMAT_LABELS = {
    "brightrun_lora_v4": "BrightRun LoRA v4",
    "brightrun_lora_v3": "BrightRun LoRA v3",
    "openai_chat": "OpenAI chat",
}


def list_query_params() -> dict[str, str]:
    """The query parameters of the way back to the list: the page it was last on, when not the first."""
    page = st.session_state.get(LIST_PAGE_KEY, 1)
    return {"page": str(page)} if page > 1 else {}


# CommonMark lets a backslash escape any ASCII punctuation; that also covers Streamlit's extensions
# (`:red[...]` directives, `:emoji:` codes, `$math$`) and raw HTML (`<`, `&`).
_MARKDOWN_SPECIALS = re.compile(r"([!-/:-@\[-`{-~])")


# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): one left open in a name turns
# the app's own text after it around ("tahc IAnepO" for "OpenAI chat").
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _one_line(text: str) -> str:
    """`text` on one line (whitespace runs become one space) without bidirectional controls (invisible; what they
    reorder would reach past the text), as both escapes below show it."""
    return " ".join(_BIDI_CONTROLS.sub("", text).split())


def tab_title(name: str) -> str:
    """A browser tab's title for a page about `name`: one line, no bidirectional controls (an override would
    reverse the app's name after it), cut so the app's name still shows."""
    name = _one_line(name)
    if len(name) > 60:
        name = name[:59].rstrip() + "…"
    return f"{name} · LoRA Dataset Manager"


def escape_markdown(text: str) -> str:
    """`text` made literal for any Markdown string (labels, captions, titles), on one line (`_one_line`)."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", _one_line(text))


def escape_markdown_keeping_code(text: str) -> str:
    """`escape_markdown`, except that the text's `code` spans stay code spans: our messages name codes and fields
    that way (`wrong_format`), and showed the backticks. Nothing inside a code span is Markdown, so it needs no
    escaping; with an unpaired backtick, the whole text stays literal."""
    parts = _one_line(text).split("`")
    if len(parts) % 2 == 0:
        return escape_markdown(text)
    return "".join(
        f"`{part}`"
        if index % 2 and part.strip()
        else _MARKDOWN_SPECIALS.sub(r"\\\1", f"`{part}`" if index % 2 else part)
        for index, part in enumerate(parts)
    )


def escape_markdown_block(text: str) -> str:
    """Multi-line `text` made literal for `st.markdown`, keeping its line breaks and blank lines."""
    return "  \n".join(_MARKDOWN_SPECIALS.sub(r"\\\1", line) if line.strip() else "" for line in text.splitlines())


def status_badge(status: DatasetStatus | str) -> None:
    """The colored status badge: uploading blue, validating yellow, ready green, error red."""
    status = DatasetStatus(status)
    st.badge(status.value.capitalize(), icon=STATUS_ICONS[status], color=STATUS_COLORS[status])


def format_size(size: int | None) -> str:
    """Bytes in the largest binary unit that keeps the number readable (1.5 MiB, 812.0 KiB, 20 B), named as binary
    units: the upload limit is 500 MiB, and "500.0 MB" said 4.9% less than it is."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GiB"


def format_thousands(value: int | None) -> str:
    """Token counts short: 999, 58.3K, 1.42M, 12.3M, 2.50B (three significant digits from a million up)."""
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:,}"
    for unit, size in (("K", 1e3), ("M", 1e6), ("B", 1e9)):
        scaled = value / size
        decimals = 1 if unit == "K" else 2 if scaled < 9.995 else 1 if scaled < 99.95 else 0
        text = f"{scaled:,.{decimals}f}"
        if unit == "B" or float(text.replace(",", "")) < 1000:  # 999,950 would read 1,000.0K: it is 1.00M
            return f"{text}{unit}"
    raise AssertionError("unreachable: the last unit returns")


def format_when(moment: datetime | None, now: datetime | None = None) -> str:
    """A short relative time ("3 min ago"); older than a week, the UTC date."""
    if moment is None:
        return "—"
    now = now or datetime.now(UTC)
    moment = as_utc(moment)
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''} ago"
    if seconds < 7 * 86400:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''} ago"
    return moment.strftime("%Y-%m-%d")


def format_clock(moment: datetime | None) -> str:
    """The time of day, for moments minutes away ("14:05:30 UTC")."""
    if moment is None:
        return "—"
    return as_utc(moment).astimezone(UTC).strftime("%H:%M:%S UTC")


def format_timestamp(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return as_utc(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def show_service_error(error: ServiceError) -> None:
    """A use-case error as the user should see it: its message, then each field problem; never a traceback."""
    st.error(error.message, icon=":material/error:")
    for problem in error.details:
        if problem.message and problem.message not in error.message:
            st.caption(escape_markdown(f"{problem.field}: {problem.message}"))


# --- Delete with confirmation -----------------------------------------------------------------------------------
# The dialog is opened from session state (not from inside the button's `if`), so it survives reruns and tests
# can drive it: set `PENDING_DELETE_KEY`, run, click "Delete".

PENDING_DELETE_KEY = "pending_delete"


def request_delete(dataset: Dataset, page: str) -> None:
    """Ask for confirmation before deleting `dataset` (the on_click of a Delete button on `page`, a page id)."""
    st.session_state[PENDING_DELETE_KEY] = {"id": str(dataset.id), "name": dataset.name, "page": page}


def delete_awaits_its_dialog(page: str) -> bool:
    """Whether a delete was requested on `page` and its dialog has not been opened yet (a click in a fragment, whose
    rerun does not reach confirm_delete_if_requested: the fragment then hands it to a run of the whole page, once)."""
    pending = st.session_state.get(PENDING_DELETE_KEY)
    return bool(pending) and pending.get("page") == page and not pending.get("shown")


def _cancel_delete() -> None:
    st.session_state.pop(PENDING_DELETE_KEY, None)


@st.dialog("Delete this dataset?", on_dismiss=_cancel_delete)
def _confirm_delete_dialog(user_id: str, on_deleted: Callable[[], None] | None) -> None:
    pending = st.session_state.get(PENDING_DELETE_KEY)
    if not pending:
        st.rerun()
        return
    settings = runtime().settings
    if settings.storage == "s3":  # a presigned link cannot be taken back; the app's own links are checked (api.py)
        minutes = max(1, settings.download_url_ttl_seconds // 60)
        st.write(
            "The dataset disappears from your list and can no longer be downloaded (a download link opened before "
            f"keeps working until it expires, within {minutes} minutes):"
        )
    else:
        st.write("The dataset disappears from your list and can no longer be downloaded:")
    st.text(pending["name"])
    confirm, cancel = st.columns(2)
    if confirm.button("Delete", type="primary", icon=":material/delete:", key="confirm_delete", width="stretch"):
        try:
            with runtime().session() as session:
                service.delete_dataset(session, user_id, pending["id"])
        except ServiceError as error:
            show_service_error(error)
            return
        st.session_state.pop(PENDING_DELETE_KEY, None)
        st.session_state["flash"] = f"Deleted “{pending['name']}”."
        if on_deleted is not None:
            on_deleted()
        st.rerun()
    if cancel.button("Cancel", key="cancel_delete", width="stretch"):
        st.session_state.pop(PENDING_DELETE_KEY, None)
        st.rerun()


def confirm_delete_if_requested(user_id: str, page: str, on_deleted: Callable[[], None] | None = None) -> None:
    """Open the confirmation dialog when a delete was requested on this `page`; call once per run of the page.

    A request made on another page and left there (the user went elsewhere first) is dropped, never shown here: its
    dialog would name a dataset the user is not looking at, and Delete would remove it."""
    pending = st.session_state.get(PENDING_DELETE_KEY)
    if not pending:
        return
    if pending.get("page") != page:
        st.session_state.pop(PENDING_DELETE_KEY, None)
        return
    pending["shown"] = True
    _confirm_delete_dialog(user_id, on_deleted)


def show_flash() -> None:
    """A one-time success message left by the previous run (e.g. after a delete)."""
    message = st.session_state.pop("flash", None)
    if message:
        st.success(escape_markdown(message), icon=":material/check:")


def is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def browser_url(url: str, public_base_url: str) -> str:
    """A storage URL as the page's browser should use it: this app's own URLs made relative, others unchanged.

    Local storage signs `{LORA_PUBLIC_BASE_URL}/api/storage/upload?token=…` (and `/download?…`). A user who opened
    the app at another address (http://localhost:8501 rather than 127.0.0.1, another port, a proxy's name) would
    otherwise PUT to another origin, which needs a CORS preflight that route does not answer, or be sent to an
    address that may not reach the app at all. Relative (`/api/storage/…`, keeping any path prefix of the base URL),
    the browser stays on the origin it is on. S3 presigned URLs are another server's and stay absolute; API clients
    are given the absolute URL.
    """
    if not url.startswith(f"{public_base_url}/"):
        return url
    base = urllib.parse.urlsplit(public_base_url)
    return url.removeprefix(f"{base.scheme}://{base.netloc}")
