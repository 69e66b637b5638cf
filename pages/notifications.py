"""Notifications: newest first, each with a link to its dataset; mark one or all read."""

from __future__ import annotations

import uuid

import streamlit as st

from lora_core import service
from lora_core.errors import ServiceError
from lora_core.models import Notification, NotificationKind
from lora_ui.components import (
    DETAIL_PAGE,
    escape_markdown,
    escape_markdown_keeping_code,
    format_when,
    is_uuid,
    show_service_error,
)
from lora_ui.identity import current_user_id, runtime
from lora_ui.navigation import require_navigation

LIMIT = 100
UNREAD_ONLY_KEY = "notifications_unread_only"
WATCH_SECONDS = 3  # as often as the sidebar's count (lora_ui.notifications)


def _mark_read(user_id: str, notification_id: str) -> None:
    try:
        with runtime().session() as session:
            service.mark_notification_read(session, user_id, notification_id)
    except ServiceError as error:
        st.session_state["notifications_error"] = error.message


def _mark_all_read(user_id: str) -> None:
    with runtime().session() as session:
        count = service.mark_all_notifications_read(session, user_id)
    st.session_state["notifications_flash"] = (
        f"Marked {count} notification{'s' if count != 1 else ''} read." if count else "Nothing was unread."
    )


def _dataset_id_from_link(notification: Notification) -> str | None:
    """The dataset a notification points at: its `dataset_id`, else the `id` in its `/dataset?id=…` link."""
    if notification.dataset_id is not None:
        return str(notification.dataset_id)
    link = notification.link or ""
    if link.startswith("/dataset?id="):
        candidate = link.removeprefix("/dataset?id=")
        return candidate if is_uuid(candidate) else None
    return None


def _render(notification: Notification, user_id: str, listed: set[uuid.UUID]) -> None:
    unread = notification.read_at is None
    ok = notification.kind == NotificationKind.DATASET_READY
    with st.container(border=True, key=f"notification-{notification.id}"):
        icon_col, text_col, actions_col = st.columns([0.4, 6, 2.4], vertical_alignment="center")
        icon_col.markdown(":material/check_circle:" if ok else ":material/error:")
        with text_col:
            title = escape_markdown(notification.title)
            st.markdown(f"**{title}**" if unread else title)
            st.markdown(escape_markdown_keeping_code(notification.message))
            st.caption(format_when(notification.created_at) + (" · unread" if unread else ""))
        with actions_col:
            dataset_id = _dataset_id_from_link(notification)
            if dataset_id and uuid.UUID(dataset_id) in listed:
                st.page_link(
                    DETAIL_PAGE, label="Open dataset", icon=":material/open_in_new:", query_params={"id": dataset_id}
                )
            elif dataset_id:
                st.caption("The dataset was deleted.")  # its link led to "Dataset not found"
            if unread:
                st.button(
                    "Mark read",
                    icon=":material/done:",
                    key=f"read-{notification.id}",
                    on_click=_mark_read,
                    args=(user_id, str(notification.id)),
                )


def _version(user_id: str) -> tuple[int, str | None]:
    """What the page shows depends on: the unread count and the newest notification."""
    with runtime().session() as session:
        newest = service.list_notifications(session, user_id, limit=1)
        return service.unread_notification_count(session, user_id), str(newest[0].id) if newest else None


@st.fragment(run_every=WATCH_SECONDS)
def _watch(user_id: str, shown: tuple[int, str | None]) -> None:
    """Redraw the page when a notification arrives or is read elsewhere: the sidebar's count and its toast said
    so, while the list below stayed as it was until a reload."""
    if _version(user_id) != shown:
        st.rerun(scope="app")


require_navigation()
user_id = current_user_id()
shown = _version(user_id)
_watch(user_id, shown)
unread_count = shown[0]
title_col, all_col = st.columns([4, 1.4], vertical_alignment="bottom")
title_col.title("Notifications")
all_col.button(
    "Mark all read",
    icon=":material/done_all:",
    key="mark-all-read",
    disabled=unread_count == 0,
    on_click=_mark_all_read,
    args=(user_id,),
)
if message := st.session_state.pop("notifications_flash", None):
    st.success(message, icon=":material/check:")
if message := st.session_state.pop("notifications_error", None):
    st.error(escape_markdown(message))

unread_only = st.toggle(f"Unread only ({unread_count})", key=UNREAD_ONLY_KEY)
try:
    with runtime().session() as session:
        notifications = service.list_notifications(session, user_id, unread_only=unread_only, limit=LIMIT)
        linked = {uuid.UUID(i) for n in notifications if (i := _dataset_id_from_link(n))}
        listed = service.listed_dataset_ids(session, user_id, linked)
except ServiceError as error:
    show_service_error(error)
    notifications, listed = [], set()

if not notifications:
    st.info(
        "No unread notifications." if unread_only else "No notifications yet: you get one when a dataset is validated.",
        icon=":material/notifications_off:",
    )
for item in notifications:
    _render(item, user_id, listed)
if len(notifications) == LIMIT:
    st.caption(f"The {LIMIT} most recent are shown.")
