"""Settings: personal API tokens for scripts that call the JSON API (listed in the menu outside local mode).

A new token is shown once, right after it is made; only its hash is kept, so it cannot be shown again.
"""

from __future__ import annotations

import streamlit as st

from lora_core.errors import ServiceError
from lora_core.tokens import create_api_token, list_api_tokens, revoke_api_token
from lora_ui.components import escape_markdown, format_when, show_service_error
from lora_ui.identity import current_user_id, runtime
from lora_ui.navigation import require_navigation

FLASH_KEY = "settings_flash"
PENDING_REVOKE_KEY = "pending_revoke"  # (token id, name) of a Revoke click awaiting its confirmation

require_navigation()
user_id = current_user_id()
rt = runtime()


def _request_revoke(token_id: str, name: str) -> None:
    st.session_state[PENDING_REVOKE_KEY] = (token_id, name)


def _cancel_revoke() -> None:
    st.session_state.pop(PENDING_REVOKE_KEY, None)


@st.dialog("Revoke this token?", on_dismiss=_cancel_revoke)
def _confirm_revoke(token_id: str, name: str) -> None:
    """A revoked token cannot be restored, and every script using it fails at once: a slip must not do that."""
    st.write("Scripts that send this token are refused from now on, and it cannot be restored:")
    st.text(name)
    confirm, cancel = st.columns(2)
    if confirm.button("Revoke", type="primary", key="confirm_revoke", width="stretch"):
        _revoke(token_id, name)
        st.rerun()
    if cancel.button("Cancel", key="cancel_revoke", width="stretch"):
        _cancel_revoke()
        st.rerun()


def _revoke(token_id: str, name: str) -> None:
    st.session_state.pop(PENDING_REVOKE_KEY, None)
    try:
        with rt.session() as session:
            revoke_api_token(session, user_id, token_id)
    except ServiceError as error:
        st.session_state[FLASH_KEY] = ("error", error.message)
        return
    message = f"Revoked “{escape_markdown(name)}”: requests with it are refused from now on."
    st.session_state[FLASH_KEY] = ("success", message)


if st.session_state.get("previous_page") != st.session_state.get("current_page"):
    # Just arrived (ui.py): a Revoke left unanswered on an earlier visit is not asked again out of the blue.
    st.session_state.pop(PENDING_REVOKE_KEY, None)

st.title("Settings")
st.subheader("Personal API tokens")
st.write(
    "Scripts call the API with a token in the `Authorization` header. Anyone holding a token acts as you: "
    "keep it secret, and revoke it when it is no longer needed."
)
st.code(
    f'curl -H "Authorization: Bearer lora_..." {rt.settings.public_base_url}/api/datasets\n'
    f"# the whole API: {rt.settings.public_base_url}/api/openapi.json",
    language="bash",
)

flash = st.session_state.pop(FLASH_KEY, None)
if flash:
    (st.success if flash[0] == "success" else st.error)(flash[1])

with st.form("new_token", clear_on_submit=True):
    name = st.text_input("Token name", max_chars=100, placeholder="e.g. training laptop")
    submitted = st.form_submit_button("Create token", type="primary")
if submitted:
    try:
        with rt.session() as session:
            created = create_api_token(session, user_id, name)
    except ServiceError as error:
        show_service_error(error)
    else:
        # Shown in this run only: it is not kept anywhere, in the session or the database.
        st.success(f"Token “{escape_markdown(created.record.name)}” created. Copy it now: it will not be shown again.")
        st.code(created.token, language=None)

with rt.session() as session:
    tokens = list_api_tokens(session, user_id)
if not tokens:
    st.info("You have no API tokens.")
for token in tokens:
    with st.container(border=True):
        info, action = st.columns([5, 1], vertical_alignment="center")
        info.markdown(f"**{escape_markdown(token.name)}** · `{token.token_prefix}…`")
        info.caption(
            f"Created {format_when(token.created_at)} · "
            + (f"last used {format_when(token.last_used_at)}" if token.last_used_at else "never used")
        )
        action.button(
            "Revoke",
            key=f"revoke-{token.id}",
            on_click=_request_revoke,
            args=(str(token.id), token.name),
            type="secondary",
        )
pending_revoke = st.session_state.get(PENDING_REVOKE_KEY)
if pending_revoke:
    _confirm_revoke(*pending_revoke)
