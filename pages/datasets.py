"""Datasets (home): search, status filter, paginated list, delete with confirmation, live while work is pending."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from lora_core import service
from lora_core.errors import ServiceError
from lora_core.models import Dataset, DatasetStatus
from lora_core.sweep import Stage, validation_stage
from lora_ui.components import (
    DETAIL_PAGE,
    FORMAT_LABELS,
    LIST_PAGE_KEY,
    PENDING_STATUSES,
    UPLOAD_PAGE,
    confirm_delete_if_requested,
    delete_awaits_its_dialog,
    escape_markdown,
    format_size,
    format_thousands,
    format_when,
    request_delete,
    show_flash,
    show_service_error,
    status_badge,
)
from lora_ui.identity import current_user_id, runtime
from lora_ui.navigation import require_navigation

PAGE_SIZE = 10
VALIDATING_CAPTIONS = {
    Stage.QUEUED: "Queued for validation",
    Stage.CHECKING: "Checking every line…",
    Stage.RETRY_WAIT: "Storage unreachable: will retry",
    Stage.STALLED: "Worker stopped: will resume",
}
REFRESH_SECONDS = 2
STATUS_FILTERS: dict[str, str | None] = {
    "All": None,
    "Uploading": DatasetStatus.UPLOADING.value,
    "Validating": DatasetStatus.VALIDATING.value,
    "Ready": DatasetStatus.READY.value,
    "Error": DatasetStatus.ERROR.value,
}
# The search, the status filter and the page number live in the URL (?search=…&status=…&page=…): a reload keeps
# them, and a link to them can be shared.
PAGE_PARAM = "page"
LIST_PAGE_ID = "datasets"  # where a delete request from this page was made (components.request_delete)


def _page_number() -> int:
    value = st.query_params.get(PAGE_PARAM, "1")
    # isdecimal and isascii: "²" is a digit that int() refuses, "١" one it reads.
    return int(value) if value.isascii() and value.isdecimal() and 1 <= int(value) <= service.MAX_PAGE else 1


def _go_to_page(number: int) -> None:
    if number <= 1:
        st.query_params.pop(PAGE_PARAM, None)
    else:
        st.query_params[PAGE_PARAM] = str(number)


def _back_to_first_page() -> None:
    _go_to_page(1)


def _canonical_status_param() -> None:
    """`?status=ready` (the API's spelling, or a hand-typed link) selects "Ready", and an unknown status "All": the
    bound control matches labels exactly and would otherwise drop the value and show every status without a word.

    Binding seeds the control from the URL the run started with, so the URL is respelled and the page run again;
    where the parameter is already bound (a link followed within the session), the control's state is set instead.
    """
    value = st.query_params.get("status")
    if value is None or value in STATUS_FILTERS:
        return
    label = next((label for label in STATUS_FILTERS if label.casefold() == value.strip().casefold()), "All")
    try:
        if label == "All":
            del st.query_params["status"]
        else:
            st.query_params["status"] = label
    except StreamlitAPIException:
        st.session_state["status"] = label
    else:
        st.rerun()


def _fetch(user_id: str, search: str, status: str | None, page: int) -> service.DatasetPage:
    with runtime().session() as session:
        return service.list_datasets(session, user_id, status=status, search=search or None, page=page, limit=PAGE_SIZE)


def _page_has_pending(user_id: str, search: str, status: str | None) -> bool:
    try:
        items = _fetch(user_id, search, status, _page_number()).items
    except ServiceError:
        return False  # _render_list shows the error
    return any(d.status in PENDING_STATUSES for d in items)


def _render_row(dataset: Dataset) -> None:
    with st.container(border=True, key=f"dataset-{dataset.id}"):
        name_col, status_col, stats_col, size_col, actions_col = st.columns(
            [3.4, 1.6, 1.9, 1.3, 2.4], vertical_alignment="center"
        )
        with name_col:
            st.markdown(f"**{escape_markdown(dataset.name)}**")
            label = FORMAT_LABELS.get(dataset.format, dataset.format)
            st.caption(f":material/description: {escape_markdown(dataset.file_name)} · {escape_markdown(label)}")
        with status_col:
            status_badge(dataset.status)
        with stats_col:
            if dataset.status == DatasetStatus.READY:
                st.markdown(
                    f"**{dataset.total_training_pairs or 0:,}** training pairs  \n"
                    f"**{format_thousands(dataset.total_tokens)}** tokens"
                )
            elif dataset.status == DatasetStatus.ERROR:
                errors = dataset.error_count
                # No errors counted: it was never checked (its upload or its validation could not finish).
                st.caption(f"{errors:,} error{'s' if errors != 1 else ''}" if errors else "Not validated")
            elif dataset.status == DatasetStatus.UPLOADING:
                st.caption("Upload not finished")
            else:
                stage = validation_stage(dataset, runtime().settings.sweep_lease_seconds).stage
                st.caption(VALIDATING_CAPTIONS[stage])
        with size_col:
            st.markdown(format_size(dataset.file_size))
            st.caption(format_when(dataset.created_at))
        with actions_col, st.container(horizontal=True, horizontal_alignment="right", gap="small"):
            st.page_link(
                DETAIL_PAGE, label="View details", icon=":material/visibility:", query_params={"id": str(dataset.id)}
            )
            st.button(
                "Delete",
                icon=":material/delete:",
                key=f"delete-{dataset.id}",
                on_click=request_delete,
                args=(dataset, LIST_PAGE_ID),
                type="tertiary",
            )


def _pagination(result: service.DatasetPage) -> None:
    first = (result.page - 1) * result.limit + 1
    last = first + len(result.items) - 1
    previous_col, info_col, next_col = st.columns([1, 3, 1], vertical_alignment="center")
    previous_col.button(
        "Previous",
        icon=":material/chevron_left:",
        disabled=result.page <= 1,
        key="page-previous",
        on_click=_go_to_page,
        args=(result.page - 1,),
    )
    info_col.caption(f"{first}–{last} of {result.total} · page {result.page} of {result.total_pages}")
    next_col.button(
        "Next",
        icon=":material/chevron_right:",
        disabled=result.page >= result.total_pages,
        key="page-next",
        on_click=_go_to_page,
        args=(result.page + 1,),
    )


def _render_list(user_id: str, search: str, status: str | None) -> bool:
    """Draw the current page of datasets; returns whether any of them is still uploading or validating."""
    page_number = _page_number()
    try:
        result = _fetch(user_id, search, status, page_number)
        if result.total and page_number > result.total_pages:  # the last item of the last page was deleted
            page_number = result.total_pages
            _go_to_page(page_number)
            result = _fetch(user_id, search, status, page_number)
    except ServiceError as error:
        show_service_error(error)
        return False
    st.session_state[LIST_PAGE_KEY] = result.page if result.total else 1

    if result.total == 0:
        if search or status:
            st.info("No datasets match this search or filter.", icon=":material/search_off:")
        else:
            with st.container(border=True, key="empty-state"):
                st.subheader("No datasets yet")
                st.write(
                    "Upload a JSON Lines file of conversations or training pairs: it is checked line by line, "
                    "and you get statistics, errors with suggestions, and a download link for training."
                )
                st.page_link(UPLOAD_PAGE, label="Upload your first dataset", icon=":material/upload:")
        return False

    for dataset in result.items:
        _render_row(dataset)

    if result.total_pages <= 1:
        st.caption(f"{result.total} dataset{'s' if result.total != 1 else ''}")
    else:
        _pagination(result)
    return any(d.status in PENDING_STATUSES for d in result.items)


@st.fragment(run_every=REFRESH_SECONDS)
def _live_list(user_id: str, search: str, status: str | None) -> None:
    """Refreshes itself while work is pending; once nothing is, the whole page reruns and this stops.

    A Delete click in a row reruns only this fragment, and the confirmation dialog opens in a run of the whole page
    (confirm_delete_if_requested, at the top): so the click is handed to one."""
    if delete_awaits_its_dialog(LIST_PAGE_ID) or not _render_list(user_id, search, status):
        st.rerun(scope="app")


require_navigation()
user_id = current_user_id()
confirm_delete_if_requested(user_id, LIST_PAGE_ID)

title_col, upload_col = st.columns([3, 1], vertical_alignment="bottom")
title_col.title("Datasets")
upload_col.page_link(UPLOAD_PAGE, label="Upload dataset", icon=":material/upload:")
show_flash()

# One above the other: side by side, the five statuses were cut off at 1280 px with the sidebar open.
search = st.text_input(
    "Search by name",
    key="search",
    bind="query-params",
    placeholder="Search by name",
    icon=":material/search:",
    live=True,
    max_chars=200,
    on_change=_back_to_first_page,
)
_canonical_status_param()
status_label = st.segmented_control(
    "Status",
    list(STATUS_FILTERS),
    default="All",
    required=True,
    key="status",
    bind="query-params",
    on_change=_back_to_first_page,
)
status_filter = STATUS_FILTERS[status_label or "All"]

# "Listed" datasets are the ones on the page shown; the live fragment takes over while any of them is pending.
if _page_has_pending(user_id, search, status_filter):
    _live_list(user_id, search, status_filter)
else:
    _render_list(user_id, search, status_filter)
