"""The local storage endpoints: signed-token uploads streamed to disk, size limits, and attachment downloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from lora_core import service
from lora_core.api import api_routes
from lora_core.models import Dataset, DatasetStatus
from lora_core.runtime import Runtime
from lora_core.settings import Settings
from lora_core.storage import LocalStore, make_store

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def runtime(settings: Settings, engine) -> Runtime:  # type: ignore[no-untyped-def]
    return Runtime(settings=settings, engine=engine, store=make_store(settings))


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(Starlette(routes=api_routes(lambda: runtime)), base_url="http://127.0.0.1:8501") as client:
        yield client


def _upload_url(runtime: Runtime, key: str, size: int) -> str:
    """A signed upload URL for the upload key `key`, with the `uploading` dataset that makes an upload acceptable."""
    storage_path = service.storage_path_for_upload_key(key)
    assert storage_path is not None, f"{key} is not an upload key"
    with runtime.session() as session:
        if not session.exec(select(Dataset).where(Dataset.storage_path == storage_path)).first():
            user, _, file_name = storage_path.partition("/")
            session.add(
                Dataset(
                    user_id=user,
                    name="upload test",
                    format="openai_chat",
                    status=DatasetStatus.UPLOADING,
                    storage_bucket="local",
                    storage_path=storage_path,
                    file_name=file_name.rsplit("/", 1)[-1],
                    file_size=size,
                )
            )
            session.commit()
    return runtime.store.upload_target(key, size).url


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_upload_then_download_round_trips_bytes(client: TestClient, runtime: Runtime) -> None:
    data = b'{"a": 1}\n' * 1000
    response = client.put(_upload_url(runtime, "u1/d1/incoming/file.jsonl", len(data)), content=data)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "data": {"size": len(data)}}
    runtime.store.move("u1/d1/incoming/file.jsonl", "u1/d1/file.jsonl")  # as confirm does
    url = runtime.store.download_url("u1/d1/file.jsonl", "Données été.jsonl")
    download = client.get(url)
    assert download.status_code == 200
    assert download.content == data
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''Donn%C3%A9es%20%C3%A9t%C3%A9.jsonl" in disposition


def test_chunked_upload_without_content_length_is_streamed(client: TestClient, runtime: Runtime) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(50):
            yield b"x" * 10_000

    response = client.put(_upload_url(runtime, "u1/d2/incoming/f.jsonl", 500_000), content=body())
    assert response.status_code == 200, response.text
    assert response.json()["data"]["size"] == 500_000


def test_declared_content_length_over_token_size_is_413_and_nothing_stored(
    client: TestClient, runtime: Runtime
) -> None:
    response = client.put(_upload_url(runtime, "u1/d3/incoming/f.jsonl", 10), content=b"y" * 11)
    assert response.status_code == 413
    assert response.json()["error"]
    assert _files_under(runtime.settings.storage_root) == []


def test_streamed_body_over_token_size_is_413_and_nothing_stored(client: TestClient, runtime: Runtime) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(10):
            yield b"z" * 1000

    response = client.put(_upload_url(runtime, "u1/d4/incoming/f.jsonl", 5000), content=body())
    assert response.status_code == 413
    assert _files_under(runtime.settings.storage_root) == []


def test_body_over_max_upload_bytes_is_413(tmp_path: Path, settings: Settings, engine) -> None:  # type: ignore[no-untyped-def]
    small = settings.model_copy(update={"max_upload_bytes": 100})
    runtime = Runtime(settings=small, engine=engine, store=make_store(small))
    with TestClient(Starlette(routes=api_routes(lambda: runtime))) as client:
        response = client.put(_upload_url(runtime, "u1/d5/incoming/f.jsonl", 1000), content=b"a" * 101)
    assert response.status_code == 413
    assert _files_under(small.storage_root) == []


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "eyJvcCI6InB1dCJ9.AAAA"],
)
def test_forged_or_malformed_upload_token_is_401(client: TestClient, token: str) -> None:
    response = client.put("/api/storage/upload", params={"token": token}, content=b"x")
    assert response.status_code == 401
    assert response.json()["error"] == "This link is not valid."


def test_download_token_cannot_upload_and_upload_token_cannot_download(client: TestClient, runtime: Runtime) -> None:
    get_url = runtime.store.download_url("u1/d6/incoming/f.jsonl", "f.jsonl")
    assert client.put(get_url.replace("/download", "/upload"), content=b"x").status_code == 401
    put_url = _upload_url(runtime, "u1/d6/incoming/f.jsonl", 1)
    assert client.get(put_url.replace("/upload", "/download")).status_code == 401


def test_token_signed_with_another_key_is_401(client: TestClient, runtime: Runtime, tmp_path: Path) -> None:
    other = LocalStore(tmp_path, secret_key=b"other", public_base_url="http://x", upload_ttl=60, download_ttl=60)
    response = client.put(other.upload_target("u1/d7/incoming/f.jsonl", 1).url.replace("http://x", ""), content=b"x")
    assert response.status_code == 401


def test_expired_token_is_401_and_says_so(client: TestClient, runtime: Runtime, settings: Settings) -> None:
    assert isinstance(runtime.store, LocalStore)
    past = LocalStore(
        settings.storage_root,
        secret_key=settings.effective_secret_key(),
        public_base_url="",
        upload_ttl=1,
        download_ttl=1,
        clock=lambda: 1_000_000.0,
    )
    response = client.put(past.upload_target("u1/d8/incoming/f.jsonl", 1).url, content=b"x")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]


def test_a_download_link_stops_working_when_its_dataset_is_deleted(client: TestClient, runtime: Runtime) -> None:
    """The delete dialog says the file "can no longer be downloaded"; a link fetched before lived for 15 minutes."""
    data = b'{"a": 1}\n'
    assert client.put(_upload_url(runtime, "u1/d2/incoming/f.jsonl", len(data)), content=data).status_code == 200
    runtime.store.move("u1/d2/incoming/f.jsonl", "u1/d2/f.jsonl")
    url = runtime.store.download_url("u1/d2/f.jsonl", "f.jsonl")
    assert client.get(url).content == data
    with runtime.session() as session:
        dataset = session.exec(select(Dataset).where(Dataset.storage_path == "u1/d2/f.jsonl")).one()
        service.delete_dataset(session, dataset.user_id, dataset.id)
    response = client.get(url)
    assert response.status_code == 404 and "deleted" in response.json()["error"]
    assert runtime.store.head("u1/d2/f.jsonl") is not None  # kept for the retention period, not served


def test_download_of_missing_file_is_404(client: TestClient, runtime: Runtime) -> None:
    response = client.get(runtime.store.download_url("u1/none/incoming/f.jsonl", "f.jsonl"))
    assert response.status_code == 404


def test_upload_after_the_dataset_stopped_waiting_is_409_and_the_file_is_kept(
    client: TestClient, runtime: Runtime
) -> None:
    first = b'{"a": 1}\n'
    url = _upload_url(runtime, "u1/d9/incoming/file.jsonl", len(first))
    assert client.put(url, content=first).status_code == 200
    with runtime.session() as session:
        dataset = session.exec(select(Dataset).where(Dataset.storage_path == "u1/d9/file.jsonl")).one()
        dataset.status = DatasetStatus.VALIDATING
        session.add(dataset)
        session.commit()
    response = client.put(url, content=b'{"b": 2}\n')
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert b"".join(runtime.store.iter_chunks("u1/d9/incoming/file.jsonl")) == first


def test_upload_to_a_key_without_a_dataset_is_409(client: TestClient, runtime: Runtime) -> None:
    url = runtime.store.upload_target("u1/none/incoming/file.jsonl", 3).url
    assert client.put(url, content=b"abc").status_code == 409
    assert runtime.store.head("u1/none/incoming/file.jsonl") is None
