"""The signed-in user for a page run, in each identity mode. Stops the page with a clear message when there is none."""

from __future__ import annotations

import streamlit as st

from lora_core.auth import is_trusted_proxy, user_from_proxy_headers
from lora_core.runtime import Runtime, get_runtime
from lora_core.settings import Settings

LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


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
    user = user_from_proxy_headers(dict(st.context.headers), page_peer_address(settings), settings)
    if user is None:
        st.error("You are not signed in: this app expects an authenticating proxy in front of it.")
        st.stop()
    return user


def page_peer_address(settings: Settings) -> str | None:
    """The address of the direct peer of this page's connection (the proxy, when there is one), or None.

    Streamlit 1.67's `st.context.ip_address` is the WebSocket's TCP peer, except that it answers None for a loopback
    peer (127.0.0.1 or ::1: "local development"), so a proxy on the same host, the usual setup, looks like no peer.
    In a live session (a browser is connected, so the connection's headers are there) None can only mean loopback;
    without one (AppTest, no connection) it means nobody. Streamlit does not say which loopback address it was, so
    the peer counts as trusted when either one is in `LORA_TRUSTED_PROXIES`.

    The peer is the real one because app.py stops uvicorn from replacing it with the `X-Forwarded-For` address.
    """
    address = st.context.ip_address
    if address is not None:
        return address
    if not st.context.headers:
        return None
    return next((a for a in LOOPBACK_ADDRESSES if is_trusted_proxy(a, settings)), LOOPBACK_ADDRESSES[0])
