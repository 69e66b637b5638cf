"""The sidebar's unread count and the toast when one of the user's datasets finishes validating."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from lora_core import service
from lora_core.models import NotificationKind, as_utc
from lora_ui.components import NOTIFICATIONS_PAGE, escape_markdown
from lora_ui.identity import runtime

POLL_SECONDS = 3
RECENT_UNREAD = 20
SEEN_KEY = "seen_notification_ids"
SINCE_KEY = "notifications_toasted_since"


def _poll(user_id: str) -> None:
    with runtime().session() as session:
        unread = service.unread_notification_count(session, user_id)
        recent = service.list_notifications(session, user_id, unread_only=True, limit=RECENT_UNREAD)
    seen: set[str] | None = st.session_state.get(SEEN_KEY)
    if seen is None:
        # A new browser session: what is already there is not news; only what arrives from now on is toasted.
        seen = {str(n.id) for n in recent}
        # Only the newest RECENT_UNREAD are read: when there were more, an older one comes into view as a newer
        # one is read, and it is not news (with 34 unread, reading one toasted an old one). Those left out were
        # no newer than the oldest in view. (No such bound otherwise: a notification stamped before the session
        # started may be committed after it, the sweep's write having waited for a lock.)
        full = len(recent) >= RECENT_UNREAD
        st.session_state[SINCE_KEY] = min(as_utc(n.created_at) for n in recent) if full else None
    since: datetime | None = st.session_state.get(SINCE_KEY)
    for notification in reversed(recent):  # oldest first, so toasts stack in order
        if str(notification.id) in seen or (since is not None and as_utc(notification.created_at) <= since):
            continue
        seen.add(str(notification.id))
        icon = ":material/check_circle:" if notification.kind == NotificationKind.DATASET_READY else ":material/error:"
        # st.toast renders Markdown and the title holds the user's dataset name: escape it.
        st.toast(escape_markdown(notification.title), icon=icon)
    st.session_state[SEEN_KEY] = seen
    label = f"{unread} unread notification{'s' if unread != 1 else ''}" if unread else "No unread notifications"
    icon = ":material/notifications_active:" if unread else ":material/notifications:"
    with st.container(border=True, key="unread-notifications"):
        st.page_link(NOTIFICATIONS_PAGE, label=label, icon=icon)


@st.fragment(run_every=POLL_SECONDS)
def _poll_fragment(user_id: str) -> None:
    _poll(user_id)


def sidebar_notifications(user_id: str) -> None:
    """Render the unread count in the sidebar and poll for new notifications every few seconds."""
    with st.sidebar:
        _poll_fragment(user_id)
