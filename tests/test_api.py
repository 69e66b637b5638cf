"""The JSON API through HTTP (in-process): the E02 contract, identity and isolation, bad input, errors, OpenAPI.

The flow against a running server with the real sweep is in test_api_flow.py; these tests drive states directly.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError, field_validator
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from lora_core import api, db, errors, service
from lora_core.errors import FieldProblem
from lora_core.models import Dataset, DatasetStatus, Notification, NotificationKind
from lora_core.runtime import Runtime
from lora_core.settings import Settings
from lora_core.storage import LocalStore, StorageError, make_store
from lora_core.tokens import create_api_token, revoke_api_token

BASE_URL = "http://127.0.0.1:8501"
DATA = b'{"conversation_id": "c1", "turns": [{"role": "user", "content": "hi"}]}\n'
BODY = {"name": "My set", "fileName": "set.jsonl", "fileSize": len(DATA)}

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(settings: Settings, engine: Engine) -> Iterator[MakeClient]:
    """A TestClient over the API routes in the given identity mode (and any other settings)."""
    clients: list[TestClient] = []

    def make(auth_mode: str = "local", client_host: str = "testclient", **overrides: Any) -> TestClient:
        configured = settings.model_copy(update={"auth_mode": auth_mode, **overrides})
        runtime = Runtime(settings=configured, engine=engine, store=make_store(configured))
        client = TestClient(
            Starlette(routes=api.api_routes(lambda: runtime)),
            base_url=BASE_URL,
            client=(client_host, 50000),
            raise_server_exceptions=False,
        )
        client.runtime = runtime  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def _dataset_rows(engine: Engine) -> list[Dataset]:
    with Session(engine) as session:
        return list(session.exec(select(Dataset)).all())


def _token(engine: Engine, user_id: str) -> dict[str, str]:
    with Session(engine, expire_on_commit=False) as session:
        return {"Authorization": f"Bearer {create_api_token(session, user_id, 'tests').token}"}


def _create(client: TestClient, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    response = client.post("/api/datasets", json={**BODY, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def _uploaded_and_confirmed(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    created = _create(client, headers)
    assert client.put(created["uploadUrl"], content=DATA).status_code == 200
    response = client.post(f"/api/datasets/{created['dataset']['id']}/confirm", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _set_status(engine: Engine, dataset_id: str, status: DatasetStatus) -> None:
    with Session(engine) as session:
        dataset = session.get(Dataset, uuid.UUID(dataset_id))
        assert dataset is not None
        dataset.status = status
        session.add(dataset)
        session.commit()


def _notify(engine: Engine, user_id: str, title: str = "Dataset ready") -> str:
    with Session(engine) as session:
        notification = Notification(
            user_id=user_id, kind=NotificationKind.DATASET_READY, title=title, message="It validated.", link=None
        )
        session.add(notification)
        session.commit()
        return str(notification.id)


# --- The E02 contract -------------------------------------------------------------------------------------------


def test_create_returns_dataset_upload_url_method_headers_and_path(client: TestClient) -> None:
    response = client.post("/api/datasets", json={**BODY, "description": "d", "format": "openai_chat"})
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["uploadUrl"].startswith(f"{BASE_URL}/api/storage/upload?token=")
    assert data["uploadMethod"] == "PUT" and data["uploadHeaders"] == {}
    assert data["uploadExpiresIn"] == 3600
    dataset = data["dataset"]
    assert data["storagePath"] == dataset["storagePath"] == f"demo/{dataset['id']}/set.jsonl"
    assert dataset["status"] == "uploading" and dataset["format"] == "openai_chat"
    assert dataset["fileName"] == "set.jsonl" and dataset["fileSize"] == len(DATA)
    assert dataset["trainingReady"] is False and dataset["validationReport"] is None
    # No owner, bucket, lease or URL leaks into the dataset's JSON.
    assert not {"userId", "storageBucket", "leaseOwner", "deletedAt"} & set(dataset)
    assert "http" not in json.dumps(dataset)


FORMAT_CHOICES = "must be one of brightrun_lora_v4, brightrun_lora_v3, openai_chat"


def test_revalidate_as_another_format(client: TestClient, engine: Engine) -> None:
    """A file uploaded as the wrong format is checked again as the right one, with an optional JSON body."""
    dataset_id = _uploaded_and_confirmed(client)["id"]
    _set_status(engine, dataset_id, DatasetStatus.ERROR)
    unknown = client.post(f"/api/datasets/{dataset_id}/revalidate", json={"format": "alpaca"})
    # In the service's words, as create and the page tell it.
    expected = {"field": "format", "message": FORMAT_CHOICES, "code": "invalid_choice"}
    assert unknown.status_code == 400 and unknown.json()["details"] == [expected]
    created = client.post("/api/datasets", json={**BODY, "format": "alpaca"})
    assert created.status_code == 400 and created.json()["details"] == [expected]
    misspelt = client.post(f"/api/datasets/{dataset_id}/revalidate", json={"fmt": "openai_chat"})
    assert misspelt.status_code == 400
    assert misspelt.json()["details"] == [
        {"field": "fmt", "message": "is not a field of this request", "code": "extra_forbidden"}
    ]
    assert client.get(f"/api/datasets/{dataset_id}").json()["data"]["status"] == "error"  # nothing changed
    again = client.post(f"/api/datasets/{dataset_id}/revalidate", json={"format": "brightrun_lora_v3"})
    assert again.status_code == 200
    assert (again.json()["data"]["status"], again.json()["data"]["format"]) == ("validating", "brightrun_lora_v3")
    _set_status(engine, dataset_id, DatasetStatus.READY)
    same = client.post(f"/api/datasets/{dataset_id}/revalidate", json={})  # no format: the one it has
    assert same.json()["data"]["format"] == "brightrun_lora_v3"
    spec = client.get("/api/openapi.json").json()["paths"]["/api/datasets/{id}/revalidate"]["post"]
    assert spec["requestBody"]["required"] is False


def test_upload_confirm_get_download_delete(client: TestClient, engine: Engine) -> None:
    dataset = _uploaded_and_confirmed(client)
    assert dataset["status"] == "validating"
    dataset_id = dataset["id"]
    assert client.get(f"/api/datasets/{dataset_id}").json()["data"]["status"] == "validating"
    again = client.post(f"/api/datasets/{dataset_id}/confirm")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert client.post(f"/api/datasets/{dataset_id}/revalidate").status_code == 409  # still validating

    download = client.get(f"/api/datasets/{dataset_id}/download").json()["data"]
    assert download["fileName"] == "set.jsonl" and download["expiresIn"] == 900
    assert client.get(download["url"]).content == DATA

    _set_status(engine, dataset_id, DatasetStatus.READY)
    revalidated = client.post(f"/api/datasets/{dataset_id}/revalidate")
    assert revalidated.status_code == 200 and revalidated.json()["data"]["status"] == "validating"

    deleted = client.delete(f"/api/datasets/{dataset_id}")
    assert deleted.json() == {"success": True, "data": {"id": dataset_id, "deleted": True}}
    assert client.get(f"/api/datasets/{dataset_id}").status_code == 404
    assert client.get("/api/datasets").json()["data"]["total"] == 0
    assert _dataset_rows(engine)[0].deleted_at is not None  # soft


def test_download_before_upload_is_409(client: TestClient) -> None:
    created = _create(client)
    response = client.get(f"/api/datasets/{created['dataset']['id']}/download")
    assert response.status_code == 409


def test_confirm_without_upload_is_422_and_the_dataset_goes_to_error(client: TestClient) -> None:
    created = _create(client)
    dataset_id = created["dataset"]["id"]
    response = client.post(f"/api/datasets/{dataset_id}/confirm")
    assert response.status_code == 422
    assert response.json()["code"] == "upload_rejected" and "never uploaded" in response.json()["error"]
    dataset = client.get(f"/api/datasets/{dataset_id}").json()["data"]
    assert dataset["status"] == "error" and "never uploaded" in dataset["errorMessage"]


def test_confirm_of_a_short_upload_is_422(client: TestClient) -> None:
    created = _create(client)
    assert client.put(created["uploadUrl"], content=DATA[:-5]).status_code == 200
    response = client.post(f"/api/datasets/{created['dataset']['id']}/confirm")
    assert response.status_code == 422 and "declared" in response.json()["error"]


def test_list_pages_and_filters_by_status(client: TestClient, engine: Engine) -> None:
    ids = [_create(client, name=f"set {i}")["dataset"]["id"] for i in range(5)]
    _set_status(engine, ids[0], DatasetStatus.READY)
    page = client.get("/api/datasets", params={"page": 2, "limit": 2}).json()["data"]
    assert (page["total"], page["page"], page["limit"], page["totalPages"]) == (5, 2, 2, 3)
    assert [d["name"] for d in page["datasets"]] == ["set 2", "set 1"]  # newest first
    assert "validationReport" not in page["datasets"][0]  # lists stay light
    ready = client.get("/api/datasets", params={"status": "ready"}).json()["data"]
    assert [d["id"] for d in ready["datasets"]] == [ids[0]]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("100%", ["100% done"]),
        ("a_b", ["a_b"]),
        ("%", ["100% done"]),
        ("_", ["a_b"]),
        ("'", ['it\'s "quoted"']),
        ('"quoted"', ['it\'s "quoted"']),
        ("\\", []),
        ("A_B", ["a_b"]),
        ("  ", ["a_b", "axb", "100% done", 'it\'s "quoted"']),
    ],
)
def test_search_matches_wildcards_and_quotes_literally(client: TestClient, search: str, expected: list[str]) -> None:
    for name in ['it\'s "quoted"', "100% done", "axb", "a_b"]:
        _create(client, name=name)
    response = client.get("/api/datasets", params={"search": search})
    assert response.status_code == 200
    assert [d["name"] for d in response.json()["data"]["datasets"]] == expected


# --- Notifications ----------------------------------------------------------------------------------------------


def test_notifications_list_unread_filter_mark_read_and_read_all(client: TestClient, engine: Engine) -> None:
    first = _notify(engine, "demo", "first")
    _notify(engine, "demo", "second")
    listed = client.get("/api/notifications").json()["data"]
    assert listed["unreadCount"] == 2 and [n["title"] for n in listed["notifications"]] == ["second", "first"]
    assert set(listed["notifications"][0]) >= {"id", "kind", "title", "message", "datasetId", "createdAt", "readAt"}

    read = client.patch(f"/api/notifications/{first}/read")
    assert read.status_code == 200 and read.json()["data"]["readAt"] is not None
    unread = client.get("/api/notifications", params={"unread": "true", "limit": 20}).json()["data"]
    assert unread["unreadCount"] == 1 and [n["title"] for n in unread["notifications"]] == ["second"]

    assert client.post("/api/notifications/read-all").json()["data"] == {"marked": 1}
    assert client.get("/api/notifications").json()["data"]["unreadCount"] == 0
    assert client.patch(f"/api/notifications/{uuid.uuid4()}/read").status_code == 404


# --- Identity and isolation -------------------------------------------------------------------------------------


def test_a_second_user_cannot_reach_the_first_users_dataset_or_notifications(
    make_client: MakeClient, engine: Engine
) -> None:
    client = make_client("oidc")
    alice, bob = _token(engine, "alice"), _token(engine, "bob")
    dataset_id = _uploaded_and_confirmed(client, alice)["id"]
    _set_status(engine, dataset_id, DatasetStatus.READY)
    notification_id = _notify(engine, "alice")

    assert client.get("/api/datasets", headers=bob).json()["data"]["total"] == 0
    for method, path in [
        ("GET", f"/api/datasets/{dataset_id}"),
        ("POST", f"/api/datasets/{dataset_id}/confirm"),
        ("POST", f"/api/datasets/{dataset_id}/revalidate"),
        ("GET", f"/api/datasets/{dataset_id}/download"),
        ("DELETE", f"/api/datasets/{dataset_id}"),
        ("PATCH", f"/api/notifications/{notification_id}/read"),
    ]:
        response = client.request(method, path, headers=bob)
        assert response.status_code == 404, (method, path, response.text)
        assert "not found" in response.json()["error"].lower()
    bob_notifications = client.get("/api/notifications", headers=bob).json()["data"]
    assert bob_notifications == {"notifications": [], "unreadCount": 0}
    assert client.post("/api/notifications/read-all", headers=bob).json()["data"] == {"marked": 0}

    # Alice's things are untouched.
    assert client.get(f"/api/datasets/{dataset_id}", headers=alice).json()["data"]["status"] == "ready"
    assert client.get("/api/notifications", headers=alice).json()["data"]["unreadCount"] == 1


AUTHENTICATED = [(o.method, o.path.replace("{id}", str(uuid.uuid4()))) for o in api.OPERATIONS if o.authenticated]


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
def test_every_api_route_refuses_missing_malformed_revoked_and_forged_tokens(
    make_client: MakeClient, engine: Engine, method: str, path: str
) -> None:
    client = make_client("oidc")
    token = _token(engine, "alice")["Authorization"].removeprefix("Bearer ")
    with Session(engine) as session:
        revoked = create_api_token(session, "alice", "old")
        revoke_api_token(session, "alice", revoked.record.id)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for headers in [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {revoked.token}"},
        {"Authorization": f"Bearer {forged}"},
        {"Cookie": "session=whatever", "X-Forwarded-Email": "alice"},
    ]:
        response = client.request(method, path, headers=headers, json=BODY if method == "POST" else None)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert _dataset_rows(engine) == []


def test_the_401_says_whether_the_token_or_the_header_is_wrong(make_client: MakeClient, engine: Engine) -> None:
    """A script that sends a revoked token must not read "send a token": it did."""
    client = make_client("oidc")
    with Session(engine) as session:
        revoked = create_api_token(session, "alice", "old")
        revoke_api_token(session, "alice", revoked.record.id)

    def message(headers: dict[str, str]) -> str:
        response = client.get("/api/datasets", headers=headers)
        assert response.status_code == 401
        return response.json()["error"]

    assert "not valid" in message({"Authorization": f"Bearer {revoked.token}"})
    assert "revoked" in message({"Authorization": "Bearer not-a-token"})
    assert "malformed" in message({"Authorization": "Basic abc"})
    assert message({}).startswith("Authentication required")


def test_proxy_mode_ignores_a_spoofed_header_from_an_untrusted_address(make_client: MakeClient, engine: Engine) -> None:
    spoofed = make_client("proxy", client_host="203.0.113.9")
    assert spoofed.get("/api/datasets", headers={"X-Forwarded-Email": "alice@x"}).status_code == 401
    trusted = make_client("proxy", client_host="127.0.0.1")
    created = _create(trusted, {"X-Forwarded-Email": "alice@x"})
    assert created["storagePath"].startswith("alice@x/")
    # The same user through a personal token, from anywhere.
    listed = spoofed.get("/api/datasets", headers=_token(engine, "alice@x")).json()["data"]
    assert listed["total"] == 1


def test_local_mode_needs_no_credentials(client: TestClient) -> None:
    assert client.get("/api/datasets").status_code == 200


# --- Bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "name": ""}, "name"),
        ({**BODY, "name": "   "}, "name"),
        ({**BODY, "name": "x" * 201}, "name"),
        ({**BODY, "name": "bell\x07"}, "name"),
        ({**BODY, "name": 5}, "name"),
        ({**BODY, "name": None}, "name"),
        ({**BODY, "description": "x" * 5001}, "description"),
        ({**BODY, "description": "nul\x00"}, "description"),
        ({**BODY, "description": ["list"]}, "description"),
        ({**BODY, "format": "csv"}, "format"),
        ({**BODY, "fileName": ""}, "fileName"),
        ({**BODY, "fileName": "../etc/passwd"}, "fileName"),
        ({**BODY, "fileName": ".."}, "fileName"),
        ({**BODY, "fileName": "é" * 200}, "fileName"),
        ({**BODY, "fileSize": 0}, "fileSize"),
        ({**BODY, "fileSize": -1}, "fileSize"),
        ({**BODY, "fileSize": 1.5}, "fileSize"),
        ({**BODY, "fileSize": 10.0}, "fileSize"),
        ({**BODY, "fileSize": "10"}, "fileSize"),
        ({**BODY, "fileSize": True}, "fileSize"),
        ({**BODY, "fileSize": 500 * 1024 * 1024 + 1}, "fileSize"),
        ({**BODY, "fileSize": 10**40}, "fileSize"),
        ({**BODY, "file_size": 10}, "file_size"),
        ({**BODY, "userId": "someone-else"}, "userId"),
        ({k: v for k, v in BODY.items() if k != "name"}, "name"),
        ({k: v for k, v in BODY.items() if k != "fileSize"}, "fileSize"),
    ],
)
def test_each_invalid_field_is_400_with_its_details_and_nothing_written(
    client: TestClient, engine: Engine, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/datasets", json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["error"] and payload["code"] == "invalid_input"
    assert field in [d["field"] for d in payload["details"]]
    assert all(set(d) == {"field", "message", "code"} for d in payload["details"])
    assert _dataset_rows(engine) == []


PLAIN_FILE_NAME = "must be a plain file name, without folders ('/' or '\\')"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**BODY, "fileName": "../etc/passwd"}, "fileName", PLAIN_FILE_NAME),
        ({**BODY, "fileName": ".."}, "fileName", "must be a file name, not '.' or '..'"),
        ({**BODY, "name": "bell\x07"}, "name", "must not contain control characters"),
    ],
)
def test_invalid_fields_are_told_in_our_validators_words(
    client: TestClient, body: dict[str, Any], field: str, message: str
) -> None:
    payload = client.post("/api/datasets", json=body).json()
    assert payload["details"] == [{"field": field, "message": message, "code": "value_error"}]
    assert payload["error"] == f"Some fields are not valid: {field}: {message}"


def test_invalid_parameters_are_told_in_our_validators_words(client: TestClient) -> None:
    payload = client.get("/api/datasets", params={"search": "nul\x00"}).json()
    message = "must not contain control characters"
    assert payload["details"] == [{"field": "search", "message": message, "code": "value_error"}]
    assert payload["error"] == f"Some parameters are not valid: search: {message}"


def test_an_assertion_in_a_validator_is_told_without_pydantic_wording() -> None:
    class Even(BaseModel):
        size: int

        @field_validator("size")
        @classmethod
        def _even(cls, value: int) -> int:
            if value % 2:  # not `assert`: pytest's rewriting would append its own explanation to the message
                raise AssertionError("must be even")
            return value

    with pytest.raises(ValidationError) as caught:
        Even(size=3)
    assert errors.field_problems(caught.value) == [FieldProblem("size", "must be even", "assertion_error")]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**BODY, "name": ""}, "name", "Give the dataset a name (it cannot be blank)."),
        ({**BODY, "name": "   "}, "name", "Give the dataset a name (it cannot be blank)."),
        ({**BODY, "name": "\t\n "}, "name", "Give the dataset a name (it cannot be blank)."),
        ({**BODY, "fileName": ""}, "fileName", "Give the name of the file you will upload (it cannot be blank)."),
        ({**BODY, "fileName": "  "}, "fileName", "Give the name of the file you will upload (it cannot be blank)."),
    ],
)
def test_a_blank_name_or_file_name_says_what_to_do(
    client: TestClient, engine: Engine, body: dict[str, Any], field: str, message: str
) -> None:
    response = client.post("/api/datasets", json=body)
    assert response.status_code == 400
    assert response.json()["details"] == [{"field": field, "message": message, "code": "string_too_short"}]
    assert _dataset_rows(engine) == []


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"{", b"[]", b'"a string"', b"null", b"42", b'{"name": NaN}', b"\xff\xfe"],
)
def test_a_body_that_is_not_a_json_object_is_400(client: TestClient, engine: Engine, raw: bytes) -> None:
    response = client.post("/api/datasets", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["details"]
    assert _dataset_rows(engine) == []


def test_a_huge_json_body_is_413_by_its_content_length(client: TestClient, engine: Engine) -> None:
    response = client.post("/api/datasets", json={**BODY, "description": "x" * 70_000})
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert _dataset_rows(engine) == []


def test_a_huge_chunked_json_body_is_413_without_reading_it_all(client: TestClient, engine: Engine) -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"name": "'
        for _ in range(10_000):  # 100 MB if all of it were read
            sent += 10_000
            yield b"x" * 10_000

    response = client.post("/api/datasets", content=endless(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert _dataset_rows(engine) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": "x"}, "page"),
        ({"page": 10**7}, "page"),
        ({"page": "1.5"}, "page"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": ""}, "limit"),
        ({"status": "done"}, "status"),
        ({"search": "x" * 201}, "search"),
        ({"search": "nul\x00"}, "search"),
        ({"stauts": "ready"}, "stauts"),
    ],
)
def test_list_parameters_out_of_range_are_400(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/api/datasets", params=params)
    assert response.status_code == 400, response.text
    assert [d["field"] for d in response.json()["details"]] == [field]


@pytest.mark.parametrize(
    ("params", "field"), [({"limit": 0}, "limit"), ({"limit": 1000}, "limit"), ({"unread": "maybe"}, "unread")]
)
def test_notification_parameters_out_of_range_are_400(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/api/notifications", params=params)
    assert response.status_code == 400
    assert [d["field"] for d in response.json()["details"]] == [field]


@pytest.mark.parametrize("dataset_id", ["not-a-uuid", str(uuid.uuid4()), "' OR 1=1 --", "%00"])
def test_unknown_or_malformed_dataset_ids_are_404(client: TestClient, dataset_id: str) -> None:
    assert client.get(f"/api/datasets/{dataset_id}").status_code == 404
    assert client.post(f"/api/datasets/{dataset_id}/confirm").status_code == 404


# --- Errors, routing, health ------------------------------------------------------------------------------------


def test_unexpected_errors_are_500_without_internals(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("password=hunter2 at /srv/secret")

    monkeypatch.setattr(service, "list_datasets", broken)
    response = client.get("/api/datasets")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "details": [], "code": "internal_error"}
    assert "hunter2" in caplog.text  # logged for the operator, not sent to the client


def test_unknown_api_paths_are_json_404_and_wrong_methods_json_405(client: TestClient) -> None:
    response = client.get("/api/nothing/here")
    assert response.status_code == 404 and response.json()["error"]
    wrong = client.put("/api/datasets")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD, POST"


def test_storage_routes_do_not_exist_with_s3(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client()
    client.runtime.store = object()  # type: ignore[attr-defined]
    assert client.put("/api/storage/upload", params={"token": "x"}, content=b"x").status_code == 404


def test_health_is_200_when_database_and_storage_answer(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"success": True, "data": {"database": "ok", "storage": "ok"}}


def test_health_is_503_naming_what_is_down(make_client: MakeClient, tmp_path: Any) -> None:
    client = make_client()

    class DownStore(LocalStore):
        def check(self) -> None:
            raise StorageError("The local storage folder is not writable.")

    runtime: Runtime = client.runtime  # type: ignore[attr-defined]
    runtime.store = DownStore(tmp_path, secret_key=b"k", public_base_url="", upload_ttl=1, download_ttl=1)
    runtime.engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    response = client.get("/api/health")
    assert response.status_code == 503
    assert [d["field"] for d in response.json()["details"]] == ["database", "storage"]


# --- The OpenAPI document ---------------------------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _property_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield from node["properties"]
        for value in node.values():
            yield from _property_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _property_names(value)


def test_every_name_on_the_wire_is_camel_case(client: TestClient) -> None:
    """Every field of every body, answer and error, and every query parameter: camelCase, as the E02 contract."""
    spec = client.get("/api/openapi.json").json()
    names = set(_property_names(spec))
    names |= {p["name"] for ops in spec["paths"].values() for op in ops.values() for p in op.get("parameters", [])}
    assert {"unreadCount", "totalPages", "datasetId", "fileName"} <= names
    assert sorted(n for n in names if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", n)) == []


def test_openapi_documents_every_route_with_resolvable_schemas(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == {(o.method, o.path) for o in api.OPERATIONS}
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    create = spec["paths"]["/api/datasets"]["post"]
    assert set(create["responses"]) == {"201", "400", "401", "403", "413", "415", "500", "503"}
    request_schema = schemas["DatasetCreateRequest"]
    assert request_schema["additionalProperties"] is False
    assert set(request_schema["required"]) == {"name", "fileName", "fileSize"}
    params = {p["name"] for p in spec["paths"]["/api/datasets"]["get"]["parameters"]}
    assert params == {"page", "limit", "status", "search"}
    assert spec["paths"]["/api/health"]["get"]["security"] == []
    assert spec["paths"]["/api/datasets/{id}"]["get"]["security"] == [{"bearerAuth": []}]
    # Property titles are words ("Unread Count"), not a camelCase name run together ("Unreadcount").
    titles = {
        name: prop.get("title")
        for schema in schemas.values()
        for name, prop in schema.get("properties", {}).items()
        if prop.get("title")
    }
    assert titles["unreadCount"] == "Unread Count" and titles["fileName"] == "File Name"
    for name, title in titles.items():
        assert title.replace(" ", "").lower() == name.lower() and (title.count(" ") == sum(map(str.isupper, name))), (
            name,
            title,
        )


@pytest.mark.parametrize("value", ["²", "³⁴", "1e3", "-5", ""])
def test_a_content_length_that_is_not_a_number_is_400(value: str) -> None:
    """ "²" passed isdigit() and crashed int() (a 500); a server in front may let such a header through."""
    from starlette.requests import Request

    request = Request({"type": "http", "headers": [(b"content-length", value.encode("latin-1", "replace"))]})
    with pytest.raises(api.ApiError) as refused:
        api.declared_length(request)
    assert refused.value.status_code == 400 and refused.value.code == "invalid_content_length"


def test_an_unreachable_database_is_503_as_documented(settings: Settings) -> None:
    """The API's table says 503 for "storage or database unreachable"; a dropped database gave a 500."""
    from lora_core.db import make_engine

    down = settings.model_copy(update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/none"})
    engine = make_engine(down)
    runtime = Runtime(settings=down, engine=engine, store=make_store(down))
    client = TestClient(
        Starlette(routes=api.api_routes(lambda: runtime)), base_url=BASE_URL, raise_server_exceptions=False
    )
    try:
        for path in ("/api/datasets", f"/api/datasets/{uuid.uuid4()}", "/api/notifications"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["code"] == "unavailable" and "database" in response.json()["error"]
    finally:
        client.close()
        engine.dispose()


def test_a_database_that_answers_but_is_broken_stays_a_500(settings: Settings, tmp_path) -> None:
    """An unmigrated database ("no such table") will not mend by waiting: not a 503 "try again shortly"."""
    from lora_core.db import make_engine

    broken = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    engine = make_engine(broken)
    runtime = Runtime(settings=broken, engine=engine, store=make_store(broken))
    client = TestClient(
        Starlette(routes=api.api_routes(lambda: runtime)), base_url=BASE_URL, raise_server_exceptions=False
    )
    try:
        response = client.get("/api/datasets")
        assert response.status_code == 500 and response.json()["code"] == "internal_error"
    finally:
        client.close()
        engine.dispose()


def test_only_a_database_out_of_reach_for_a_while_is_unavailable() -> None:
    import sqlite3

    def sqlite_error(code: int) -> sa.exc.OperationalError:
        original = sqlite3.OperationalError("database is locked" if code == 5 else "no such table: datasets")
        original.sqlite_errorcode = code  # type: ignore[attr-defined]
        return sa.exc.OperationalError("SELECT 1", {}, original)

    assert db.database_unavailable(sqlite_error(5))  # SQLITE_BUSY
    assert db.database_unavailable(sqlite_error(5 | (1 << 8)))  # an extended busy code
    assert not db.database_unavailable(sqlite_error(1))  # SQLITE_ERROR: no such table
    assert not db.database_unavailable(sa.exc.DataError("SELECT 1", {}, Exception("value too long")))
