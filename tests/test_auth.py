"""Identity: personal API tokens (create, list, revoke, authenticate) and who a request is in each mode."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from lora_core.auth import authenticate_request, bearer_token, is_trusted_proxy, user_from_proxy_headers
from lora_core.errors import InvalidInput, NotFound
from lora_core.models import ApiToken, utcnow
from lora_core.settings import Settings
from lora_core.tokens import (
    MAX_ACTIVE_TOKENS_PER_USER,
    authenticate_token,
    create_api_token,
    list_api_tokens,
    revoke_api_token,
)


@pytest.fixture
def session(engine: Engine) -> Session:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _mode(settings: Settings, mode: str, **extra: object) -> Settings:
    return settings.model_copy(update={"auth_mode": mode, **extra})


# --- Tokens -----------------------------------------------------------------------------------------------------


def test_created_token_is_prefixed_shown_once_and_stored_only_as_sha256(session: Session) -> None:
    created = create_api_token(session, "alice", "  laptop  ")
    assert created.token.startswith("lora_") and len(created.token) == 5 + 43
    stored = session.exec(select(ApiToken)).one()
    assert stored.name == "laptop"
    assert stored.token_hash == hashlib.sha256(created.token.encode()).hexdigest()
    assert created.token not in {stored.token_hash, stored.token_prefix}
    assert created.token.startswith(stored.token_prefix) and len(stored.token_prefix) <= 16


def test_token_authenticates_its_owner_and_records_last_use(session: Session) -> None:
    created = create_api_token(session, "alice", "ci")
    assert created.record.last_used_at is None
    assert authenticate_token(session, created.token) == "alice"
    assert list_api_tokens(session, "alice")[0].last_used_at is not None


def test_last_used_is_written_at_most_once_a_minute(session: Session) -> None:
    created = create_api_token(session, "alice", "ci")
    authenticate_token(session, created.token)
    first = session.get(ApiToken, created.record.id).last_used_at  # type: ignore[union-attr]
    authenticate_token(session, created.token)
    assert session.get(ApiToken, created.record.id).last_used_at == first  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "token",
    ["", "lora_", "lora_" + "a" * 42, "lora_" + "a" * 44, "xxxx_" + "a" * 43, "lora_" + "!" * 43, None, 42],
)
def test_malformed_tokens_authenticate_nobody(session: Session, token: object) -> None:
    create_api_token(session, "alice", "ci")
    assert authenticate_token(session, token) is None  # type: ignore[arg-type]


def test_forged_token_of_the_right_shape_authenticates_nobody(session: Session) -> None:
    created = create_api_token(session, "alice", "ci")
    forged = created.token[:-1] + ("A" if created.token[-1] != "A" else "B")
    assert authenticate_token(session, forged) is None


def test_revoked_token_stops_working_and_leaves_the_list(session: Session) -> None:
    created = create_api_token(session, "alice", "ci")
    revoke_api_token(session, "alice", created.record.id)
    assert authenticate_token(session, created.token) is None
    assert list_api_tokens(session, "alice") == []
    assert [t.name for t in list_api_tokens(session, "alice", include_revoked=True)] == ["ci"]
    revoke_api_token(session, "alice", str(created.record.id))  # twice is harmless


def test_a_user_cannot_see_or_revoke_another_users_token(session: Session) -> None:
    created = create_api_token(session, "alice", "ci")
    assert list_api_tokens(session, "bob") == []
    with pytest.raises(NotFound):
        revoke_api_token(session, "bob", created.record.id)
    with pytest.raises(NotFound):
        revoke_api_token(session, "bob", "not-a-uuid")
    assert authenticate_token(session, created.token) == "alice"


def test_tokens_are_listed_newest_first(session: Session) -> None:
    old = create_api_token(session, "alice", "old")
    old.record.created_at = utcnow() - timedelta(days=1)
    session.add(old.record)
    session.commit()
    create_api_token(session, "alice", "new")
    assert [t.name for t in list_api_tokens(session, "alice")] == ["new", "old"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "tab\there", "nul\x00"])
def test_token_name_must_be_printable_and_short(session: Session, name: str) -> None:
    with pytest.raises(InvalidInput) as error:
        create_api_token(session, "alice", name)
    assert error.value.details[0].field == "name"
    assert session.exec(select(ApiToken)).all() == []


def test_active_tokens_per_user_are_capped(session: Session) -> None:
    for i in range(MAX_ACTIVE_TOKENS_PER_USER):
        create_api_token(session, "alice", f"t{i}")
    with pytest.raises(InvalidInput):
        create_api_token(session, "alice", "one too many")
    create_api_token(session, "bob", "bob's first")  # the cap is per user


# --- Requests ---------------------------------------------------------------------------------------------------


def test_bearer_token_parsing() -> None:
    assert bearer_token({}) is None
    assert bearer_token({"Authorization": "Bearer abc"}) == "abc"
    assert bearer_token({"authorization": "bearer  abc "}) == "abc"
    assert bearer_token({"Authorization": "Basic abc"}) == ""
    assert bearer_token({"Authorization": "Bearer"}) == ""


def test_local_mode_is_always_the_local_user(session: Session, settings: Settings) -> None:
    local = _mode(settings, "local", local_user_id="me")
    assert authenticate_request({}, None, session, local) == "me"
    assert authenticate_request({"Authorization": "Bearer junk"}, "10.0.0.1", session, local) == "me"


def test_oidc_mode_accepts_only_a_live_bearer_token(session: Session, settings: Settings) -> None:
    oidc = _mode(settings, "oidc")
    token = create_api_token(session, "alice", "ci").token
    assert authenticate_request({"Authorization": f"Bearer {token}"}, "10.0.0.1", session, oidc) == "alice"
    assert authenticate_request({}, "127.0.0.1", session, oidc) is None
    # Cookies and proxy headers mean nothing to the API in this mode, even from a trusted address.
    assert authenticate_request({"X-Forwarded-Email": "a@x", "Cookie": "s=1"}, "127.0.0.1", session, oidc) is None
    assert authenticate_request({"Authorization": "Bearer lora_nope"}, "127.0.0.1", session, oidc) is None


def test_proxy_mode_honours_a_trusted_proxy_header_or_a_token(session: Session, settings: Settings) -> None:
    proxy = _mode(settings, "proxy", trusted_proxies=["10.1.0.0/16"])
    token = create_api_token(session, "alice", "ci").token
    assert authenticate_request({"X-Forwarded-Email": "bob@x"}, "10.1.2.3", session, proxy) == "bob@x"
    assert authenticate_request({"X-Forwarded-Email": "bob@x"}, "10.2.0.1", session, proxy) is None  # spoofed
    assert authenticate_request({"Authorization": f"Bearer {token}"}, "192.0.2.1", session, proxy) == "alice"
    # A bad token is refused even behind the proxy: it does not fall back to the header.
    headers = {"Authorization": "Bearer lora_bad", "X-Forwarded-Email": "bob@x"}
    assert authenticate_request(headers, "10.1.2.3", session, proxy) is None


def test_proxy_header_name_is_configurable_and_case_insensitive(settings: Settings) -> None:
    proxy = _mode(settings, "proxy", proxy_user_header="X-Auth-User")
    assert user_from_proxy_headers({"x-auth-user": " carol "}, "127.0.0.1", proxy) == "carol"
    assert user_from_proxy_headers({"X-Forwarded-Email": "carol"}, "127.0.0.1", proxy) is None
    assert not is_trusted_proxy("not-an-ip", proxy)
    assert not is_trusted_proxy(None, proxy)
