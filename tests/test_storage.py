"""Storage contract, run against both backends; S3 goes over real HTTP to a moto server, never in-process mocks."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from lora_core.settings import Settings
from lora_core.storage import (
    MIB,
    MIN_PART_SIZE,
    ExpiredToken,
    InvalidKey,
    InvalidToken,
    LocalStore,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    S3Store,
    StorageError,
    TransientStorageError,
    _allows_upload,
    _translate_s3_error,
    check_key,
    content_disposition,
    make_s3_client,
    make_store,
)
from tests.moto_server import MOTO_ENV, running_moto_server

SECRET = b"test-secret-key-of-reasonable-length"
BASE_URL = "http://app.test"
UPLOAD_TTL = 3600
DOWNLOAD_TTL = 900
KEY = "user-1/dataset-1/train.jsonl"


class FakeClock:
    """A settable `time.time` so token expiry is tested without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with running_moto_server() as endpoint_url:
        yield endpoint_url


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for tests that talk to a fake endpoint without the moto fixture."""
    for name, value in MOTO_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local_store(tmp_path: Path, clock: FakeClock) -> LocalStore:
    return LocalStore(
        tmp_path / "objects",
        secret_key=SECRET,
        public_base_url=BASE_URL,
        upload_ttl=UPLOAD_TTL,
        download_ttl=DOWNLOAD_TTL,
        clock=clock,
    )


def new_s3_store(endpoint_url: str, **client_config: object) -> S3Store:
    """A store on a bucket no other test uses; the smallest part size S3 allows keeps multipart tests quick."""
    client = make_s3_client(endpoint_url, "us-east-1", **client_config) if client_config else None
    return S3Store(
        f"test-{uuid.uuid4().hex[:16]}",
        endpoint_url=endpoint_url,
        region="us-east-1",
        upload_ttl=UPLOAD_TTL,
        download_ttl=DOWNLOAD_TTL,
        client=client,
        part_size=MIN_PART_SIZE,
    )


@pytest.fixture
def s3_store(moto_endpoint: str) -> S3Store:
    store = new_s3_store(moto_endpoint)
    store.ensure_bucket()
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def leftovers(store: ObjectStore) -> list[str]:
    """Everything a failed write could have left: files on disk, or S3 objects and unfinished multipart uploads."""
    if isinstance(store, LocalStore):
        if not store.root.exists():
            return []
        return [str(path.relative_to(store.root)) for path in store.root.rglob("*") if not path.is_dir()]
    assert isinstance(store, S3Store)
    objects = store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return [obj["Key"] for obj in objects] + [f"upload:{upload['Key']}" for upload in uploads]


# --- Contract: both backends ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, 3 * MIB + 12_345, 2 * MIN_PART_SIZE + 777], ids=["empty", "1B", "3MiB", "multipart"]
)
def test_round_trip_across_chunk_boundaries(store: ObjectStore, size: int) -> None:
    data = os.urandom(size)

    written = store.put_stream(KEY, chunked(data, 700_001), max_bytes=size)

    assert written == size
    assert store.head(KEY) == ObjectInfo(size=size)
    chunks = list(store.iter_chunks(KEY, chunk_size=256 * 1024))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= 256 * 1024 for chunk in chunks)


def test_put_overwrites_existing_object(store: ObjectStore) -> None:
    store.put_stream(KEY, [b"old content that is longer"], max_bytes=100)
    store.put_stream(KEY, [b"new"], max_bytes=100)

    assert b"".join(store.iter_chunks(KEY)) == b"new"


def test_missing_object(store: ObjectStore) -> None:
    assert store.head("user-1/dataset-1/missing.jsonl") is None
    with pytest.raises(ObjectNotFound):
        store.iter_chunks("user-1/dataset-1/missing.jsonl")  # raised by the call, before any next()


def test_open_stream_gives_the_size_with_the_bytes(store: ObjectStore) -> None:
    data = os.urandom(3 * MIB + 5)
    store.put_stream(KEY, chunked(data, 700_001), max_bytes=len(data))

    stream = store.open_stream(KEY, chunk_size=MIB)

    assert stream.size == len(data)
    assert b"".join(stream.chunks) == data
    with pytest.raises(ObjectNotFound):
        store.open_stream("user-1/dataset-1/missing.jsonl")


def test_open_stream_can_be_closed_unread(store: ObjectStore) -> None:
    store.put_stream(KEY, [b"x" * MIB], max_bytes=MIB)

    stream = store.open_stream(KEY)
    stream.chunks.close()  # what the sweep does with an object over the limit: its file or connection is released

    with pytest.raises(StopIteration):
        next(stream.chunks)


def test_key_prefix_is_not_an_object(store: ObjectStore) -> None:
    store.put_stream(KEY, [b"x"], max_bytes=1)

    assert store.head("user-1/dataset-1") is None
    with pytest.raises(ObjectNotFound):
        store.iter_chunks("user-1/dataset-1")
    store.delete("user-1/dataset-1")
    assert store.head(KEY) == ObjectInfo(size=1)


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.delete(KEY)  # never existed
    store.put_stream(KEY, [b"abc"], max_bytes=3)

    store.delete(KEY)
    store.delete(KEY)

    assert store.head(KEY) is None
    assert leftovers(store) == []


def test_move_takes_the_object_to_its_new_key(store: ObjectStore) -> None:
    store.put_stream("u/d/incoming/a.jsonl", [b"first"], max_bytes=100)
    store.put_stream("u/d/a.jsonl", [b"older"], max_bytes=100)
    store.move("u/d/incoming/a.jsonl", "u/d/a.jsonl")
    assert store.head("u/d/incoming/a.jsonl") is None
    assert b"".join(store.iter_chunks("u/d/a.jsonl")) == b"first"
    with pytest.raises(ObjectNotFound):
        store.move("u/d/incoming/a.jsonl", "u/d/b.jsonl")
    assert store.head("u/d/b.jsonl") is None


def test_too_large_stops_reading_at_once_and_leaves_nothing(store: ObjectStore) -> None:
    consumed: list[int] = []

    def source() -> Iterator[bytes]:
        for index in range(100):
            consumed.append(index)
            yield b"0123456789"

    with pytest.raises(ObjectTooLarge, match="limit"):
        store.put_stream(KEY, source(), max_bytes=25)

    assert len(consumed) == 3  # the third chunk crossed the limit; nothing more was pulled from the client
    assert store.head(KEY) is None
    assert leftovers(store) == []


def test_too_large_after_a_multipart_part_aborts_the_upload(store: ObjectStore) -> None:
    data = os.urandom(MIN_PART_SIZE + MIB)

    with pytest.raises(ObjectTooLarge):
        store.put_stream(KEY, chunked(data, MIB), max_bytes=MIN_PART_SIZE + MIB - 1)

    assert leftovers(store) == []


def test_exact_limit_is_accepted(store: ObjectStore) -> None:
    assert store.put_stream(KEY, [b"12345", b"67890"], max_bytes=10) == 10


def test_failed_write_keeps_previous_object(store: ObjectStore) -> None:
    store.put_stream(KEY, [b"version 1"], max_bytes=100)

    with pytest.raises(ObjectTooLarge):
        store.put_stream(KEY, [b"version 2 is much too long"], max_bytes=10)

    assert b"".join(store.iter_chunks(KEY)) == b"version 1"


def test_failing_source_propagates_and_leaves_nothing(store: ObjectStore) -> None:
    class ClientDisconnected(Exception):
        pass

    def source() -> Iterator[bytes]:
        yield os.urandom(MIN_PART_SIZE)  # enough for S3 to have started a multipart upload
        yield b"more"
        raise ClientDisconnected

    with pytest.raises(ClientDisconnected):
        store.put_stream(KEY, source(), max_bytes=100 * MIB)

    assert store.head(KEY) is None
    assert leftovers(store) == []


BAD_KEYS = {
    "empty": "",
    "parent": "../../x",
    "absolute": "/etc/passwd",
    "parent-inside": "a/../../b",
    "backslash": "a\\b",
    "windows-parent": "..\\..\\x",
    "nul": "a/b\x00.jsonl",
    "newline": "a/b\nc",
    "del": "a/b\x7f",
    "c1-control": "a/b\x85",
    "dot-segment": "a/./b",
    "lone-dot": ".",
    "empty-segment": "a//b",
    "trailing-slash": "a/b/",
    "too-long": "a/" + "x" * 1023,
    "lone-surrogate": "a/\ud800",
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_invalid_keys_are_refused_by_every_operation(store: ObjectStore, key: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: store.head(key),
        lambda: store.iter_chunks(key),
        lambda: store.put_stream(key, [b"x"], max_bytes=10),
        lambda: store.delete(key),
        lambda: store.upload_target(key, 1),
        lambda: store.download_url(key, "x.jsonl"),
    ]
    for operation in operations:
        with pytest.raises(InvalidKey):
            operation()
    assert leftovers(store) == []


@pytest.mark.parametrize(
    "key",
    ["u/d/train.jsonl", "u/d/train data (v2).jsonl", "ü/日本/データ.jsonl", "u/d/..hidden..", "u/.d/.f", "x" * 1024],
)
def test_ordinary_keys_are_accepted(key: str) -> None:
    assert check_key(key) == key


def test_check_passes(store: ObjectStore) -> None:
    store.check()


# --- LocalStore -------------------------------------------------------------------------------------------------


def token_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, strict_parsing=True)["token"][0]


def test_local_upload_token_round_trip(local_store: LocalStore, clock: FakeClock) -> None:
    target = local_store.upload_target(KEY, 1234, "application/x-ndjson")

    assert target.url.startswith(f"{BASE_URL}/api/storage/upload?token=")
    assert (target.method, target.headers) == ("PUT", {})
    claims = local_store.verify_token(token_of(target.url), "put")
    assert (claims.op, claims.key, claims.size, claims.file_name) == ("put", KEY, 1234, None)
    assert claims.expires_at == datetime.fromtimestamp(int(clock.now) + UPLOAD_TTL, UTC)


def test_local_download_token_round_trip(local_store: LocalStore, clock: FakeClock) -> None:
    url = local_store.download_url(KEY, "my data ü.jsonl")

    assert url.startswith(f"{BASE_URL}/api/storage/download?token=")
    claims = local_store.verify_token(token_of(url), "get")
    assert (claims.op, claims.key, claims.size, claims.file_name) == ("get", KEY, None, "my data ü.jsonl")
    assert claims.expires_at == datetime.fromtimestamp(int(clock.now) + DOWNLOAD_TTL, UTC)


def test_local_token_expires(local_store: LocalStore, clock: FakeClock) -> None:
    token = token_of(local_store.upload_target(KEY, 10).url)

    clock.now += UPLOAD_TTL - 1
    local_store.verify_token(token, "put")
    clock.now += 1
    with pytest.raises(ExpiredToken, match="expired"):
        local_store.verify_token(token, "put")


def test_local_token_forged_with_another_secret(local_store: LocalStore, tmp_path: Path, clock: FakeClock) -> None:
    forger = LocalStore(
        tmp_path, secret_key=b"guessed", public_base_url=BASE_URL, upload_ttl=1, download_ttl=1, clock=clock
    )
    token = token_of(forger.upload_target(KEY, 10).url)

    clock.now += 10  # also expired: a forged token must never get as far as saying so
    with pytest.raises(InvalidToken) as raised:
        local_store.verify_token(token, "put")
    assert not isinstance(raised.value, ExpiredToken)


def test_local_token_wrong_op(local_store: LocalStore) -> None:
    with pytest.raises(InvalidToken):
        local_store.verify_token(token_of(local_store.upload_target(KEY, 10).url), "get")
    with pytest.raises(InvalidToken):
        local_store.verify_token(token_of(local_store.download_url(KEY, "f.jsonl")), "put")


def test_local_token_tampered_payload(local_store: LocalStore) -> None:
    payload, signature = token_of(local_store.upload_target(KEY, 10).url).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["size"] = 10**12
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    with pytest.raises(InvalidToken):
        local_store.verify_token(f"{forged}.{signature}", "put")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "é.é", "a." + "A" * 9000, "e30.e30="])
def test_local_token_malformed(local_store: LocalStore, token: str) -> None:
    with pytest.raises(InvalidToken):
        local_store.verify_token(token, "put")


def test_local_write_is_atomic(local_store: LocalStore) -> None:
    target = local_store.root / KEY
    local_store.put_stream(KEY, [b"previous"], max_bytes=100)

    def source() -> Iterator[bytes]:
        yield b"partial "
        assert target.read_bytes() == b"previous"  # readers still see the old file mid-write
        raise OSError("connection reset by peer")

    with pytest.raises(OSError, match="connection reset"):
        local_store.put_stream(KEY, source(), max_bytes=100)

    assert target.read_bytes() == b"previous"
    assert leftovers(local_store) == [KEY]


def test_local_open_path_stays_inside_root(local_store: LocalStore) -> None:
    assert local_store.open_path(KEY) == local_store.root / KEY
    with pytest.raises(InvalidKey):
        local_store.open_path("../outside")


def test_local_symlink_escape_is_refused(local_store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local_store.root.mkdir(parents=True)
    (local_store.root / "user-1").symlink_to(outside, target_is_directory=True)

    with pytest.raises(InvalidKey):
        local_store.put_stream("user-1/evil.jsonl", [b"x"], max_bytes=10)
    with pytest.raises(InvalidKey):
        local_store.open_path("user-1/evil.jsonl")
    assert list(outside.iterdir()) == []


def test_local_delete_prunes_empty_folders(local_store: LocalStore) -> None:
    local_store.put_stream("u/d1/a.jsonl", [b"x"], max_bytes=10)
    local_store.put_stream("u/d2/b.jsonl", [b"x"], max_bytes=10)

    local_store.delete("u/d1/a.jsonl")

    assert sorted(p.name for p in (local_store.root / "u").iterdir()) == ["d2"]
    assert local_store.root.is_dir()


def test_make_store_local(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key="configured", storage="local")

    store = make_store(settings)

    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "objects").resolve()
    assert store.verify_token(token_of(store.download_url(KEY, "f")), "get").key == KEY


# --- S3Store ----------------------------------------------------------------------------------------------------


def test_s3_presigned_put_works_over_http(s3_store: S3Store) -> None:
    data = b'{"messages": []}\n' * 1000
    target = s3_store.upload_target(KEY, len(data), "application/x-ndjson")

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target.url).query)
    assert target.method == "PUT"
    assert target.headers == {"Content-Type": "application/x-ndjson"}
    assert set(query["X-Amz-SignedHeaders"][0].split(";")) >= {"content-length", "content-type", "host"}
    assert query["X-Amz-Expires"] == [str(UPLOAD_TTL)]

    response = httpx.put(target.url, content=data, headers=target.headers)

    assert response.status_code == 200, response.text
    assert s3_store.head(KEY) == ObjectInfo(size=len(data))
    assert b"".join(s3_store.iter_chunks(KEY)) == data


def test_s3_presigned_get_downloads_as_attachment(s3_store: S3Store) -> None:
    file_name = 'trăin "v2".jsonl'
    s3_store.put_stream(KEY, [b"line 1\n", b"line 2\n"], max_bytes=100)
    url = s3_store.download_url(KEY, file_name)

    response = httpx.get(url)

    assert response.status_code == 200
    assert response.content == b"line 1\nline 2\n"
    assert response.headers["Content-Disposition"] == content_disposition(file_name)
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Expires"] == [str(DOWNLOAD_TTL)]


def test_content_disposition_is_header_safe() -> None:
    value = content_disposition('a"b\\c\r\nSet-Cookie: x=1 ü.jsonl')

    assert value.isascii() and "\r" not in value and "\n" not in value
    assert value.startswith('attachment; filename="a_b_c__Set-Cookie: x=1 _.jsonl"; ')
    assert value.endswith("filename*=UTF-8''a%22b%5Cc%0D%0ASet-Cookie%3A%20x%3D1%20%C3%BC.jsonl")


def test_s3_check_on_missing_bucket_is_a_permanent_error(moto_endpoint: str) -> None:
    store = new_s3_store(moto_endpoint)

    with pytest.raises(StorageError, match="bucket does not exist") as raised:
        store.check()
    assert not isinstance(raised.value, TransientStorageError)


def test_s3_ensure_bucket_is_idempotent(moto_endpoint: str) -> None:
    store = new_s3_store(moto_endpoint)

    store.ensure_bucket()
    store.ensure_bucket()

    store.check()


def s3_settings(endpoint: str, bucket: str, tmp_path: Path, **values: Any) -> Settings:
    """Settings of an S3 store at `endpoint` that creates `bucket` at start."""
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        storage="s3",
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_create_bucket=True,
        **values,
    )


def test_make_store_s3_creates_bucket(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = f"test-{uuid.uuid4().hex[:16]}"

    store = make_store(s3_settings(moto_endpoint, bucket, tmp_path))

    assert isinstance(store, S3Store) and store.bucket == bucket
    store.check()
    # Browsers on the app's origin may PUT straight to presigned URLs (the Upload page needs that rule).
    [rule] = store.client.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rule["AllowedOrigins"] == ["http://127.0.0.1:8501"]
    assert "PUT" in rule["AllowedMethods"]


OPS_RULE = {"AllowedOrigins": ["https://notebooks.example.com"], "AllowedMethods": ["GET"], "MaxAgeSeconds": 60}


def test_an_existing_buckets_cors_rules_are_kept_and_the_apps_origin_added(moto_endpoint: str, tmp_path: Path) -> None:
    """S3 replaces the whole CORS configuration: writing only the app's rule took an operator's rules away."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    store = make_store(s3_settings(moto_endpoint, bucket, tmp_path, public_base_url="http://127.0.0.1:8531"))
    assert isinstance(store, S3Store)
    [app_rule] = store.client.get_bucket_cors(Bucket=bucket)["CORSRules"]
    store.client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [OPS_RULE, app_rule]})

    make_store(s3_settings(moto_endpoint, bucket, tmp_path, public_base_url="http://127.0.0.1:8531"))  # a restart
    assert store.client.get_bucket_cors(Bucket=bucket)["CORSRules"] == [OPS_RULE, app_rule]  # nothing to add

    make_store(s3_settings(moto_endpoint, bucket, tmp_path, public_base_url="https://lora.example.com"))  # moved
    rules = store.client.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[:2] == [OPS_RULE, app_rule]
    assert rules[2]["AllowedOrigins"] == ["https://lora.example.com"] and "PUT" in rules[2]["AllowedMethods"]


def test_a_rule_that_would_fail_the_uploads_preflight_does_not_count(moto_endpoint: str, tmp_path: Path) -> None:
    """The Upload page's PUT sends Content-Type: a rule for the origin and PUT without that header fails the
    browser's preflight, so the app's rule is added beside it."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    origin = "http://127.0.0.1:8531"
    store = make_store(s3_settings(moto_endpoint, bucket, tmp_path, public_base_url=origin))
    assert isinstance(store, S3Store)
    headerless = {"AllowedOrigins": [origin], "AllowedMethods": ["PUT"]}
    store.client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [headerless]})
    make_store(s3_settings(moto_endpoint, bucket, tmp_path, public_base_url=origin))
    rules = store.client.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[0] == headerless and rules[1]["AllowedOrigins"] == [origin] and rules[1]["AllowedHeaders"] == ["*"]


@pytest.mark.parametrize(
    ("rule", "allows"),
    [
        ({"AllowedOrigins": ["https://lora.example.com"], "AllowedMethods": ["PUT"], "AllowedHeaders": ["*"]}, True),
        ({"AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["PUT"], "AllowedHeaders": ["*"]}, True),
        ({"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["Content-Type"]}, True),
        ({"AllowedOrigins": ["https://lora.example.com"], "AllowedMethods": ["PUT"]}, False),  # no header
        ({"AllowedOrigins": ["https://lora.example.com"], "AllowedMethods": ["GET"], "AllowedHeaders": ["*"]}, False),
        ({"AllowedOrigins": ["https://other.example.org"], "AllowedMethods": ["PUT"], "AllowedHeaders": ["*"]}, False),
    ],
)
def test_which_cors_rules_let_the_upload_page_put(rule: dict[str, Any], allows: bool) -> None:
    assert _allows_upload(rule, "https://lora.example.com") is allows


def test_a_worker_creates_the_bucket_but_leaves_its_cors_rules_alone(moto_endpoint: str, tmp_path: Path) -> None:
    """A worker serves no browser and may not know the app's address (its LORA_PUBLIC_BASE_URL left at the
    default): the rule it wrote took the app's own away, and every browser upload failed."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    settings = s3_settings(moto_endpoint, bucket, tmp_path)
    store = make_store(settings, serves_browsers=False)
    assert isinstance(store, S3Store)
    store.check()  # created
    with pytest.raises(ClientError, match="NoSuchCORSConfiguration"):
        store.client.get_bucket_cors(Bucket=bucket)
    store.client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [OPS_RULE]})
    make_store(settings, serves_browsers=False)
    assert store.client.get_bucket_cors(Bucket=bucket)["CORSRules"] == [OPS_RULE]


def closed_port_url() -> str:
    """An endpoint nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.usefixtures("aws_credentials")
def test_s3_unreachable_endpoint_is_transient() -> None:
    store = new_s3_store(closed_port_url(), connect_timeout=1, retries={"max_attempts": 1, "mode": "standard"})
    started = time.monotonic()

    for operation in (
        lambda: store.head(KEY),
        lambda: store.iter_chunks(KEY),
        lambda: store.put_stream(KEY, [b"x"], max_bytes=10),
        lambda: store.delete(KEY),
        store.check,
    ):
        with pytest.raises(TransientStorageError):
            operation()
    assert time.monotonic() - started < 5


@contextmanager
def raw_http_server(handle: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A local HTTP server whose every request is answered by `handle`, for failures moto cannot produce."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        do_HEAD = do_PUT = do_DELETE = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.usefixtures("aws_credentials")
def test_s3_server_errors_are_transient() -> None:
    def unavailable(request: BaseHTTPRequestHandler) -> None:
        body = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
        request.send_response(503)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    with raw_http_server(unavailable) as endpoint_url:
        store = new_s3_store(endpoint_url, retries={"max_attempts": 1, "mode": "standard"})
        with pytest.raises(TransientStorageError):
            store.head(KEY)
        with pytest.raises(TransientStorageError):
            store.iter_chunks(KEY)


@pytest.mark.usefixtures("aws_credentials")
def test_s3_connection_lost_mid_download_is_transient() -> None:
    def truncated(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(MIB))
        request.end_headers()
        request.wfile.write(b"x" * 1000)
        request.close_connection = True

    with raw_http_server(truncated) as endpoint_url:
        store = new_s3_store(endpoint_url, retries={"max_attempts": 1, "mode": "standard"})
        chunks = store.iter_chunks(KEY, chunk_size=100)
        with pytest.raises(TransientStorageError, match="interrupted"):
            for _ in chunks:
                pass


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("NoSuchKey", 404), ObjectNotFound),
        (client_error("404", 404), ObjectNotFound),
        (client_error("SlowDown", 503), TransientStorageError),
        (client_error("InternalError", 500), TransientStorageError),
        (client_error("Throttling", 400), TransientStorageError),
        (client_error("AccessDenied", 403), StorageError),
        (client_error("NoSuchBucket", 404), StorageError),
        (EndpointConnectionError(endpoint_url="http://x"), TransientStorageError),
        (ReadTimeoutError(endpoint_url="http://x"), TransientStorageError),
        (NoCredentialsError(), StorageError),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, ClientError) else value.response["Error"]["Code"],
)
def test_s3_error_mapping(error: Exception, expected: type[StorageError]) -> None:
    assert type(_translate_s3_error(error)) is expected


def test_put_stream_accepts_any_iterable(store: ObjectStore) -> None:
    """put_stream accepts any iterable of bytes, not only generators (lists, tuples, file iterators)."""
    sources: list[Iterable[bytes]] = [[b"a", b"b"], (b"c",), iter([b"d"])]
    for source in sources:
        store.put_stream(KEY, source, max_bytes=10)
    assert b"".join(store.iter_chunks(KEY)) == b"d"
