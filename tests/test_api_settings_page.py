"""The Settings page through AppTest: create a token (shown once), see it listed, revoke it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from sqlmodel import select
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

import lora_ui.identity
from lora_core.models import ApiToken
from lora_core.runtime import get_runtime, reset_runtime
from lora_core.settings import get_settings
from lora_core.tokens import authenticate_token, create_api_token

ROOT = Path(__file__).resolve().parents[1]
USER = "carol@example.com"


class _NavigationPagesManager(PagesManager):
    """Start each AppTest run in `st.navigation` mode, as a served app is after its first run (see test_pages)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        PagesManager.uses_pages_directory = False


def _reset() -> None:
    get_settings.cache_clear()
    reset_runtime()
    st.cache_resource.clear()


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LORA_DATABASE_URL", f"sqlite:///{tmp_path / 'lora.db'}")
    monkeypatch.setenv("LORA_SECRET_KEY", "settings-page-secret")
    monkeypatch.setenv("LORA_AUTH_MODE", "oidc")
    # AppTest cannot sign in through OIDC; the page only needs to know who the user is.
    monkeypatch.setattr(lora_ui.identity, "current_user_id", lambda: USER)
    monkeypatch.setattr(app_test_module, "PagesManager", _NavigationPagesManager)
    _reset()
    yield
    _reset()


def _open() -> AppTest:
    at = AppTest.from_file(str(ROOT / "ui.py"), default_timeout=30)
    at.run()
    at.switch_page("pages/settings.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _stored_tokens() -> list[ApiToken]:
    with get_runtime().session() as session:
        return list(session.exec(select(ApiToken)).all())


def test_a_created_token_is_shown_once_works_and_is_listed(app_env: None) -> None:
    at = _open()
    assert "You have no API tokens." in [i.value for i in at.info]
    at.text_input[0].input("training laptop")
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception
    shown = [c.value for c in at.code if c.value.startswith("lora_")]
    assert len(shown) == 1
    with get_runtime().session() as session:
        assert authenticate_token(session, shown[0]) == USER
    assert any("training laptop" in m.value for m in at.markdown)

    at.run()  # any later run: the token is gone from the page for good
    assert not [c.value for c in at.code if c.value.startswith("lora_")]
    assert any("training laptop" in m.value for m in at.markdown)


def test_revoking_a_token_refuses_it_from_then_on(app_env: None) -> None:
    with get_runtime().session() as session:
        created = create_api_token(session, USER, "old script")
        create_api_token(session, "someone-else", "not mine")
    at = _open()
    listed = [m.value for m in at.markdown if m.value.startswith("**")]
    assert len(listed) == 1 and "old script" in listed[0]  # only the user's own tokens
    at.button(key=f"revoke-{created.record.id}").click()
    at.run()
    assert "old script" in [t.value for t in at.text]  # the dialog names the token, and nothing is revoked yet
    with get_runtime().session() as session:
        assert authenticate_token(session, created.token) is not None
    at.button(key="cancel_revoke").click()
    at.run()
    with get_runtime().session() as session:
        assert authenticate_token(session, created.token) is not None
    assert not any(t.value == "old script" for t in at.text)  # the dialog is gone
    at.button(key=f"revoke-{created.record.id}").click()
    at.run()
    at.button(key="confirm_revoke").click()
    at.run()
    assert any("Revoked" in s.value for s in at.success)
    with get_runtime().session() as session:
        assert authenticate_token(session, created.token) is None
    assert "You have no API tokens." in [i.value for i in at.info]


def test_a_revoke_left_unanswered_is_not_asked_again_on_the_next_visit(app_env: None) -> None:
    with get_runtime().session() as session:
        created = create_api_token(session, USER, "kept")
    at = _open()
    at.button(key=f"revoke-{created.record.id}").click()
    at.run()
    assert "kept" in [t.value for t in at.text]  # the dialog
    at.switch_page("pages/datasets.py")  # left without answering (Back, the menu)
    at.run()
    at.switch_page("pages/settings.py")
    at.run()
    assert "kept" not in [t.value for t in at.text]
    with get_runtime().session() as session:
        assert authenticate_token(session, created.token) is not None


def test_an_empty_name_is_refused_with_a_message(app_env: None) -> None:
    at = _open()
    at.button[0].click()
    at.run()
    assert at.error and "name" in at.error[0].value
    assert _stored_tokens() == []
