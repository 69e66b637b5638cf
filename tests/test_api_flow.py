"""The whole E02 flow over real HTTP against a running server (uvicorn, the API routes, the sweep), as a client
script would drive it: create → upload the file → confirm → poll until ready → list → download → delete.

Once with local storage (the app's own upload/download routes) and once with S3 on a moto server (presigned URLs),
the latter in OIDC mode with a personal API token, so identity is exercised over the wire too.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import Session
from starlette.applications import Starlette

from lora_core.api import api_routes
from lora_core.runtime import Runtime, build_runtime
from lora_core.settings import Settings
from lora_core.sweep import start_sweep, stop_sweep
from lora_core.tokens import create_api_token
from tests.conftest import EQ12_PATH
from tests.moto_server import running_moto_server

pytestmark = pytest.mark.slow

# FORMAT.md's figures for EQ-12 under the default counter.
EQ12_TRAINING_PAIRS = 44
EQ12_TOKENS = 58_316


@contextmanager
def running_server(settings: Settings) -> Iterator[tuple[str, Runtime]]:
    """Serve the API routes with the sweep running, on a free 127.0.0.1 port, until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runtime = build_runtime(settings.model_copy(update={"public_base_url": base_url}))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        start_sweep(runtime.engine, runtime.store, runtime.settings)
        try:
            yield
        finally:
            stop_sweep(wait=True)

    app = Starlette(routes=api_routes(lambda: runtime), lifespan=lifespan)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield base_url, runtime
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        runtime.engine.dispose()


def run_e02_flow(base_url: str, headers: dict[str, str]) -> None:
    content = EQ12_PATH.read_bytes()
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as api:
        created = api.post(
            "/api/datasets",
            json={
                "name": "EQ-12 demo",
                "description": "BrightRun sample, CC-BY-4.0",
                "fileName": EQ12_PATH.name,
                "fileSize": len(content),
            },
        )
        assert created.status_code == 201, created.text
        data = created.json()["data"]
        dataset_id = data["dataset"]["id"]

        # The upload goes to the URL as given, with its headers and nothing of ours (no API token).
        uploaded = httpx.request(
            data["uploadMethod"], data["uploadUrl"], content=content, headers=data["uploadHeaders"]
        )
        assert uploaded.status_code == 200, uploaded.text

        confirmed = api.post(f"/api/datasets/{dataset_id}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["data"]["status"] == "validating"

        dataset = poll_until_done(api, dataset_id)
        assert dataset["status"] == "ready", dataset.get("errorMessage")
        assert dataset["trainingReady"] is True
        assert dataset["totalTrainingPairs"] == EQ12_TRAINING_PAIRS
        assert dataset["totalTokens"] == EQ12_TOKENS
        assert dataset["validationReport"]["valid"] is True
        assert dataset["validatedAt"] is not None

        def names(**params: Any) -> list[str]:
            response = api.get("/api/datasets", params=params)
            assert response.status_code == 200, response.text
            return [d["name"] for d in response.json()["data"]["datasets"]]

        assert names(status="ready", search="eq-12") == ["EQ-12 demo"]
        assert names(status="ready", search="no such name") == []
        assert names(status="error") == []
        assert names(search="%") == []

        notifications = api.get("/api/notifications", params={"unread": "true"}).json()["data"]
        assert notifications["unreadCount"] == 1
        notification = notifications["notifications"][0]
        assert notification["datasetId"] == dataset_id
        assert api.patch(f"/api/notifications/{notification['id']}/read").status_code == 200

        download = api.get(f"/api/datasets/{dataset_id}/download")
        assert download.status_code == 200, download.text
        file = httpx.get(download.json()["data"]["url"])
        assert file.status_code == 200
        assert file.content == content
        assert "attachment" in file.headers["content-disposition"]

        assert api.delete(f"/api/datasets/{dataset_id}").status_code == 200
        assert api.get(f"/api/datasets/{dataset_id}").status_code == 404
        assert names() == []
        assert api.get("/api/health").json()["data"] == {"database": "ok", "storage": "ok"}


def poll_until_done(api: httpx.Client, dataset_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/api/datasets/{dataset_id}")
        assert response.status_code == 200, response.text
        dataset = response.json()["data"]
        if dataset["status"] in ("ready", "error"):
            return dataset
        assert time.monotonic() < deadline, f"still {dataset['status']} after {timeout} s"
        time.sleep(0.1)


def test_e02_flow_with_local_storage(settings: Settings) -> None:
    with running_server(settings) as (base_url, _runtime):
        run_e02_flow(base_url, headers={})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_e02_flow_with_s3_on_moto_and_a_personal_token(settings: Settings) -> None:
    with running_moto_server() as endpoint_url:
        s3_settings = settings.model_copy(
            update={
                "storage": "s3",
                "s3_endpoint_url": endpoint_url,
                "s3_bucket": f"lora-{uuid.uuid4().hex[:12]}",
                "s3_create_bucket": True,
                "auth_mode": "oidc",
            }
        )
        with running_server(s3_settings) as (base_url, runtime):
            with Session(runtime.engine, expire_on_commit=False) as session:
                token = create_api_token(session, "alice", "flow test").token
            assert httpx.get(f"{base_url}/api/datasets").status_code == 401
            run_e02_flow(base_url, headers={"Authorization": f"Bearer {token}"})
            # S3 deployments have no local storage routes.
            assert httpx.put(f"{base_url}/api/storage/upload?token=x", content=b"x").status_code == 404
