"""Who is the current user, in each identity mode (`LORA_AUTH_MODE`): local, oidc, proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from sqlmodel import Session

from lora_core.settings import Settings
from lora_core.tokens import authenticate_token


def is_trusted_proxy(client_host: str | None, settings: Settings) -> bool:
    """True when the direct peer is one of `LORA_TRUSTED_PROXIES` (addresses or CIDR networks)."""
    if not client_host:
        return False
    try:
        address = ipaddress.ip_address(client_host)
    except ValueError:
        return False
    for entry in settings.trusted_proxies:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def user_from_proxy_headers(headers: Mapping[str, str], client_host: str | None, settings: Settings) -> str | None:
    """The user an authenticating proxy vouches for, or None. A header from any other peer is ignored."""
    if not is_trusted_proxy(client_host, settings):
        return None
    wanted = settings.proxy_user_header.lower()
    for name, value in headers.items():
        if name.lower() == wanted and value.strip():
            return value.strip()[:255]
    return None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; "" when the header is there but malformed."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


def authenticate_request(
    headers: Mapping[str, str], client_host: str | None, session: Session, settings: Settings
) -> str | None:
    """The user id an API request acts for, or None (the route answers 401). Cookies are never looked at.

    - `local`: always `settings.local_user_id` (the server listens on loopback only; see .streamlit/config.toml).
    - `oidc`: only a personal API token in `Authorization: Bearer`; the browser's OIDC cookie is not honoured, so
      a page on another site cannot make the browser call the API for its user (no CSRF surface).
    - `proxy`: a personal API token, or else the user header of a trusted proxy (which has authenticated the
      caller itself). A request that sends an Authorization header is judged by it alone: a bad token is 401 even
      behind the proxy, so a script learns its token is wrong instead of silently acting as someone else.
    """
    if settings.auth_mode == "local":
        return settings.local_user_id
    token = bearer_token(headers)
    if token is not None:
        return authenticate_token(session, token) if token else None
    if settings.auth_mode == "proxy":
        return user_from_proxy_headers(headers, client_host, settings)
    return None
