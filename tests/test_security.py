"""Who may reach the API and the pages: the browser guard (cross-site requests, DNS rebinding, non-JSON bodies),
proxy mode behind a proxy on the same host (a real `streamlit run app.py`), and the page's relative upload URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from lora_core import api, service
from lora_core.models import Dataset
from lora_core.runtime import Runtime, build_runtime
from lora_core.settings import Settings
from lora_core.storage import make_store
from lora_core.tokens import create_api_token
from lora_ui.components import browser_url
from tests import app_server

BASE_URL = "http://127.0.0.1:8501"
DATA = b'{"conversation_id": "c1", "turns": [{"role": "user", "content": "hi"}]}\n'
BODY = {"name": "My set", "fileName": "set.jsonl", "fileSize": len(DATA)}
ALICE = "alice@example.com"

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(settings: Settings, engine: Engine) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(auth_mode: str = "local", base_url: str = BASE_URL, **overrides: Any) -> TestClient:
        configured = settings.model_copy(update={"auth_mode": auth_mode, **overrides})
        runtime = Runtime(settings=configured, engine=engine, store=make_store(configured))
        client = TestClient(
            Starlette(routes=api.api_routes(lambda: runtime)),
            base_url=base_url,
            client=("127.0.0.1", 50000),
            raise_server_exceptions=False,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def _dataset_count(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(Dataset)).all())


def _created(client: TestClient) -> dict[str, Any]:
    response = client.post("/api/datasets", json=BODY)
    assert response.status_code == 201, response.text
    return response.json()["data"]


# --- A body must be JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8", "multipart/form-data"])
def test_a_body_that_is_not_declared_json_is_415_and_nothing_is_written(
    client: TestClient, engine: Engine, content_type: str | None
) -> None:
    # What `fetch(..., {mode: "no-cors", body: '{...}'})` from another site sends: no preflight, text/plain.
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/datasets", content=httpx.Request("POST", "/", json=BODY).content, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_media_type"
    assert _dataset_count(engine) == 0


def test_a_text_body_is_415_on_routes_that_take_no_body_too(client: TestClient) -> None:
    dataset_id = _created(client)["dataset"]["id"]
    response = client.post(
        f"/api/datasets/{dataset_id}/revalidate", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_json_with_a_charset_and_bodiless_posts_are_accepted(client: TestClient) -> None:
    raw = httpx.Request("POST", "/", json=BODY).content
    response = client.post("/api/datasets", content=raw, headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 201, response.text
    assert client.post("/api/notifications/read-all").status_code == 200


def test_oidc_mode_applies_the_json_rule(make_client: MakeClient, engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session:
        token = create_api_token(session, "carol", "tests").token
    oidc = make_client("oidc")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    assert oidc.post("/api/datasets", content=b"{}", headers=headers).status_code == 415


# --- Cross-site requests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
def test_a_request_another_site_made_is_403(client: TestClient, engine: Engine, site: str) -> None:
    response = client.post("/api/datasets", json=BODY, headers={"Sec-Fetch-Site": site})
    assert response.status_code == 403
    assert response.json()["code"] == "cross_site_request"
    assert _dataset_count(engine) == 0
    assert client.get("/api/datasets", headers={"Sec-Fetch-Site": site}).status_code == 403


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://127.0.0.1:9999",
        "http://localhost:8501",
        "null",
        "http://127.0.0.1.evil.example:8501",
    ],
)
def test_a_request_from_another_origin_is_403(client: TestClient, origin: str) -> None:
    dataset_id = _created(client)["dataset"]["id"]
    # A bodiless POST (no Content-Type to check): only the Origin tells it came from another page.
    response = client.post(f"/api/datasets/{dataset_id}/confirm", headers={"Origin": origin})
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "cross_site_request"
    assert client.get("/api/notifications", headers={"Origin": origin}).status_code == 403


def test_same_origin_requests_and_plain_clients_work(client: TestClient) -> None:
    browser = {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/datasets", json=BODY, headers=browser).status_code == 201
    assert client.get("/api/datasets", headers={"Sec-Fetch-Site": "none"}).status_code == 200  # typed in the bar
    plain = client.get("/api/datasets")  # curl, scripts: neither header
    assert plain.status_code == 200 and plain.json()["data"]["total"] == 1


@pytest.mark.parametrize("host", ["localhost:8501", "[::1]:8501", "127.0.0.1"])
def test_the_app_reached_by_any_loopback_name_is_its_own_origin(make_client: MakeClient, host: str) -> None:
    client = make_client(base_url=f"http://{host}")
    response = client.post("/api/datasets", json=BODY, headers={"Origin": f"http://{host}"})
    assert response.status_code == 201, response.text


def test_the_public_base_url_is_an_allowed_host_and_origin(make_client: MakeClient) -> None:
    # Behind a TLS proxy that keeps the Host header: the app sees http, the browser's Origin is https.
    client = make_client("proxy", base_url="http://lora.example.com", public_base_url="https://lora.example.com")
    headers = {"X-Forwarded-Email": ALICE, "Origin": "https://lora.example.com", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/datasets", json=BODY, headers=headers).status_code == 201
    assert client.get("/api/datasets", headers={"X-Forwarded-Email": ALICE}).status_code == 200


def test_proxy_mode_refuses_cross_site_requests_even_with_the_proxy_header(make_client: MakeClient) -> None:
    # The proxy signs in whoever its cookie names, and the browser sends that cookie with another site's requests.
    client = make_client("proxy")
    headers = {"X-Forwarded-Email": ALICE, "Origin": "https://evil.example"}
    assert client.post("/api/datasets", json=BODY, headers=headers).status_code == 403


# --- DNS rebinding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example:8501", "evil.example", "10.0.0.5:8501", ""])
def test_a_host_that_is_not_this_app_is_403(client: TestClient, host: str) -> None:
    dataset_id = _created(client)["dataset"]["id"]
    # After rebinding, evil.example resolves to 127.0.0.1: same origin for the browser, but the Host gives it away.
    headers = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    for path in ("/api/datasets", f"/api/datasets/{dataset_id}/download", "/api/openapi.json"):
        response = client.get(path, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "untrusted_host"


def test_health_and_storage_links_are_not_guarded(client: TestClient) -> None:
    created = _created(client)
    foreign = {"Host": "lb.internal", "Origin": "http://elsewhere.example", "Sec-Fetch-Site": "cross-site"}
    assert client.get("/api/health", headers=foreign).status_code == 200
    upload = client.put(created["uploadUrl"], content=DATA, headers={**foreign, "Content-Type": "text/plain"})
    assert upload.status_code == 200, upload.text  # the token is the credential


def test_openapi_documents_the_guard_statuses(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    for operation in api.OPERATIONS:
        documented = set(spec["paths"][operation.path][operation.method.lower()]["responses"])
        assert {"403", "415"} <= documented if operation.browser_guard else not {"403", "415"} & documented


# --- The page's upload URL --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        (f"{BASE_URL}/api/storage/upload?token=abc", BASE_URL, "/api/storage/upload?token=abc"),
        (
            "https://x.example/lora/api/storage/upload?token=t",
            "https://x.example/lora",
            "/lora/api/storage/upload?token=t",
        ),
        (
            "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=s",
            BASE_URL,
            "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=s",
        ),
        (
            "http://127.0.0.1:85012/api/storage/upload?token=t",
            BASE_URL,
            "http://127.0.0.1:85012/api/storage/upload?token=t",
        ),
    ],
)
def test_the_page_uploads_to_its_own_origin_and_to_s3_as_given(url: str, base: str, expected: str) -> None:
    assert browser_url(url, base) == expected


def test_upload_flow_hands_the_component_a_relative_url(settings: Settings, engine: Engine) -> None:
    from lora_ui import upload_flow

    runtime = Runtime(settings=settings, engine=engine, store=make_store(settings))
    chosen = {"name": "set.jsonl", "size": len(DATA)}
    _dataset_id, job = upload_flow.start(
        runtime, "demo", name="Set", description="", fmt="openai_chat", chosen_file=chosen
    )
    assert job["url"].startswith("/api/storage/upload?token=")
    assert job["method"] == "PUT"


# --- Proxy mode against a running `streamlit run app.py` --------------------------------------------------------


@contextmanager
def running_app(data_dir: Path, **env: str) -> Iterator[str]:
    """The real app in proxy mode (what a deployment behind oauth2-proxy runs), until the block ends."""
    with app_server.running_app(data_dir, LORA_AUTH_MODE="proxy", **env) as url:
        yield url


def _seed_alice(data_dir: Path) -> None:
    settings = Settings(_env_file=None, data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'lora.db'}")
    runtime = build_runtime(settings)
    with runtime.session() as session:
        service.create_dataset(
            session, runtime.store, settings, ALICE, {"name": "Alice private", "file_name": "a.jsonl", "file_size": 10}
        )
    runtime.engine.dispose()


@pytest.fixture(scope="module")
def proxy_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("proxy-app")
    _seed_alice(data_dir)
    with running_app(data_dir) as url:
        yield url


PROXIED = {"X-Forwarded-Email": ALICE, "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


@pytest.mark.slow
def test_a_proxy_on_the_same_host_signs_its_user_in_to_the_api(proxy_app: str) -> None:
    # uvicorn would have replaced the peer (127.0.0.1, trusted) by 203.0.113.9 (not trusted): app.py stops that.
    response = httpx.get(f"{proxy_app}/api/datasets", headers=PROXIED, timeout=10)
    assert response.status_code == 200, response.text
    assert [d["name"] for d in response.json()["data"]["datasets"]] == ["Alice private"]
    bob = httpx.get(f"{proxy_app}/api/datasets", headers={**PROXIED, "X-Forwarded-Email": "bob@example.com"})
    assert bob.status_code == 200 and bob.json()["data"]["total"] == 0
    assert httpx.get(f"{proxy_app}/api/datasets", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401


@pytest.mark.slow
def test_a_proxy_that_is_not_trusted_signs_nobody_in(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with running_app(data_dir, LORA_TRUSTED_PROXIES='["10.9.9.9"]') as url:
        assert httpx.get(f"{url}/api/datasets", headers=PROXIED, timeout=10).status_code == 401
        # Nor does naming a trusted proxy in X-Forwarded-For help: only the direct peer counts.
        spoofed = {**PROXIED, "X-Forwarded-For": "10.9.9.9"}
        assert httpx.get(f"{url}/api/datasets", headers=spoofed, timeout=10).status_code == 401


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-sync"]


@pytest.mark.slow
@pytest.mark.browser
def test_a_proxy_on_the_same_host_signs_its_user_in_to_the_pages(proxy_app: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            # What the proxy adds to every request, the WebSocket's included.
            context.set_extra_http_headers({"X-Forwarded-Email": ALICE, "X-Forwarded-For": "203.0.113.9"})
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto(proxy_app)
            sync_api.expect(page.get_by_text("Alice private", exact=True)).to_be_visible()
            sync_api.expect(page.get_by_text("You are not signed in")).to_have_count(0)
        finally:
            browser.close()
