"""Who is the current user, in each identity mode (`LORA_AUTH_MODE`): local, oidc, proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from lora_core.settings import Settings


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
