"""The signed-in user for a page run, in each identity mode. Stops the page with a clear message when there is none."""

from __future__ import annotations

import streamlit as st

from lora_core.auth import user_from_proxy_headers
from lora_core.runtime import Runtime, get_runtime


@st.cache_resource(show_spinner=False)
def runtime() -> Runtime:
    """The process-wide runtime (database migrated, store open), shared with the API routes."""
    return get_runtime()


def current_user_id() -> str:
    settings = runtime().settings
    if settings.auth_mode == "local":
        return settings.local_user_id
    if settings.auth_mode == "oidc":
        if not st.user.is_logged_in:
            st.title("LoRA Dataset Manager")
            st.write("Sign in to see and upload your datasets.")
            st.button("Sign in", on_click=st.login, type="primary")
            st.stop()
        subject = st.user.get("sub")
        if not subject:
            st.error("Your identity provider did not send a stable subject (`sub`); ask an administrator.")
            st.stop()
        return str(subject)
    user = user_from_proxy_headers(dict(st.context.headers), st.context.ip_address, settings)
    if user is None:
        st.error("You are not signed in: this app expects an authenticating proxy in front of it.")
        st.stop()
    return user
