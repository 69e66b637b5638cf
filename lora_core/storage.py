"""Where dataset files live: one `ObjectStore` interface, a local-disk backend and an S3 backend.

Both backends hand browsers a URL to upload to and to download from, so big bodies never pass through the
Streamlit process unless the local backend is in use (then the app's own routes serve those URLs and check the
signed tokens made here). Every error raised is a `StorageError` whose message is safe to show a user; the
original exception is chained as `__cause__` for the logs.
"""

from __future__ import annotations

import abc
import base64
import binascii
import contextlib
import fnmatch
import hashlib
import hmac
import http.client
import json
import logging
import os
import tempfile
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import boto3
import boto3.session
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

if TYPE_CHECKING:
    from lora_core.settings import Settings

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MAX_KEY_BYTES = 1024
MAX_TOKEN_CHARS = 8192
DEFAULT_CHUNK_SIZE = MIB
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts except the last one.


class StorageError(Exception):
    """Base of every storage failure; the message is safe to show a user."""


class ObjectNotFound(StorageError):
    """The key names no object (never uploaded, or deleted)."""


class TransientStorageError(StorageError):
    """Network errors, timeouts, 5xx, throttling: worth a retry."""


class InvalidKey(StorageError):
    """A key that is empty, absolute, has '..' segments, backslashes, control chars, or would escape the root."""


class ObjectTooLarge(StorageError):
    """More bytes arrived than the caller allowed; nothing was stored."""


class InvalidToken(StorageError):
    """A local upload/download token that is forged, malformed, or for the other operation."""


class ExpiredToken(InvalidToken):
    """A genuine token whose time is up; the user should ask for a fresh link."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int


@dataclass(frozen=True)
class ObjectStream:
    """An object opened for one streaming read: its size, known when it was opened, and its bytes (close `chunks`,
    or run it to the end, to release the connection or file)."""

    size: int
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class UploadTarget:
    """Where and how a client uploads one object: send `method` to `url` with exactly these headers.

    For S3 the request must also carry a `Content-Length` equal to the size asked for (browsers and HTTP clients
    send it by themselves for a known body; a chunked upload without it is refused by S3).
    """

    url: str
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenClaims:
    """What a verified `LocalStore` token allows: `size` only for "put", `file_name` only for "get"."""

    op: Literal["put", "get"]
    key: str
    size: int | None
    expires_at: datetime
    file_name: str | None


def check_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative object key, else raise `InvalidKey`.

    Both backends call this so a key accepted by one is accepted by the other, and so no key can name a path
    outside the local root even if the service layer forgot to clean a file name (defence in depth).
    Empty segments (`a//b`, a trailing `/`) are refused too: on disk they would alias another key.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("The storage key is empty.")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("The storage key is not valid UTF-8 text.") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"The storage key is longer than {MAX_KEY_BYTES} bytes.")
    if key.startswith("/"):
        raise InvalidKey("The storage key must be relative (it starts with '/').")
    if "\\" in key:
        raise InvalidKey("The storage key must not contain backslashes.")
    if any(unicodedata.category(char) == "Cc" for char in key):
        raise InvalidKey("The storage key must not contain control characters.")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey("The storage key must not contain empty, '.' or '..' path segments.")
    return key


def content_disposition(file_name: str) -> str:
    """A `Content-Disposition: attachment` value that keeps non-ASCII names and cannot inject headers.

    Old clients read the ASCII `filename=` fallback; current browsers prefer the RFC 5987 `filename*=`.
    """
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in file_name) or "download"
    encoded = urllib.parse.quote(file_name, safe="", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _check_max_bytes(max_bytes: int) -> None:
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")


def _too_large(max_bytes: int) -> ObjectTooLarge:
    return ObjectTooLarge(f"The file is larger than the limit of {max_bytes:,} bytes.")


class ObjectStore(abc.ABC):
    """Blob storage by key (`{user_id}/{dataset_id}/{file_name}`); see `check_key` for what a key may be."""

    bucket: str

    @abc.abstractmethod
    def upload_target(self, key: str, size: int, content_type: str = "application/octet-stream") -> UploadTarget:
        """Where a client may upload exactly `size` bytes to `key`, until the upload TTL runs out."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, or None when there is no object at `key`."""

    @abc.abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Stream the object's bytes.

        The object is opened by the call itself, so `ObjectNotFound` is raised here, not at the first `next()`.
        Network trouble, at the call or mid-stream, raises `TransientStorageError`. Close the iterator (or run it
        to the end) to release the connection or file.
        """

    def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectStream:
        """`iter_chunks` with the object's size: what the sweep needs to validate a stored object. S3 answers both
        with one GET, where `head` and then `iter_chunks` take two requests."""
        info = self.head(key)
        if info is None:
            raise ObjectNotFound("The file was not found in storage.")
        return ObjectStream(info.size, self.iter_chunks(key, chunk_size))

    @abc.abstractmethod
    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> int:
        """Store the concatenated chunks at `key` atomically and return how many bytes were written.

        Memory stays bounded (one S3 part at most). `ObjectTooLarge` is raised as soon as more than `max_bytes`
        arrive; on that or any other failure (including one raised by `chunks`, which propagates unchanged)
        nothing is left behind and a previous object at `key` is untouched.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""

    def local_path(self, key: str) -> Path | None:
        """The object's file when it is one on this machine (the validator then reads it in parallel), else None."""
        return None

    @abc.abstractmethod
    def move(self, source: str, target: str) -> None:
        """Move an object to another key (replacing what is there); `ObjectNotFound` if `source` is missing.

        Used to take a confirmed upload out of reach of its still-valid upload URL.
        """

    @abc.abstractmethod
    def download_url(self, key: str, file_name: str) -> str:
        """An expiring URL that downloads the object as an attachment named `file_name`."""

    @abc.abstractmethod
    def check(self) -> None:
        """Health check: raise a `StorageError` if the store cannot be used."""


# --- Local disk -------------------------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding: refuse anything that is not exactly what `_b64encode` makes."""
    if not text or not set(text) <= _B64URL_ALPHABET:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


class LocalStore(ObjectStore):
    """Files under one root directory; uploads and downloads go through the app's routes with signed tokens.

    A token is `base64url(JSON claims) + "." + base64url(HMAC-SHA256(secret, first part))`. The routes call
    `verify_token`, then `put_stream` or `open_path` with the key from the claims.
    """

    bucket = "local"

    def __init__(
        self,
        root: Path,
        *,
        secret_key: bytes,
        public_base_url: str,
        upload_ttl: int,
        download_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret_key:
            raise ValueError("secret_key must not be empty")
        # Resolved once, so a later chdir cannot move the store and symlinked roots still compare correctly.
        self.root = Path(root).resolve()
        self._secret_key = secret_key
        self.public_base_url = public_base_url.rstrip("/")
        self.upload_ttl = upload_ttl
        self.download_ttl = download_ttl
        self._clock = clock

    # Tokens

    def _signature(self, payload: str) -> bytes:
        return hmac.new(self._secret_key, payload.encode("ascii"), hashlib.sha256).digest()

    def _make_token(self, claims: dict[str, Any]) -> str:
        payload = _b64encode(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return f"{payload}.{_b64encode(self._signature(payload))}"

    def verify_token(self, token: str, op: Literal["put", "get"]) -> TokenClaims:
        """The claims of a token this store signed for `op`; `InvalidToken` or `ExpiredToken` otherwise.

        The signature is checked before anything in the payload is trusted, so a forged token never reports
        "expired".
        """
        invalid = InvalidToken("This link is not valid.")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 1:
            raise invalid
        payload, signature = token.split(".")
        try:
            given_signature = _b64decode(signature)
        except (ValueError, binascii.Error):
            raise invalid from None
        if not hmac.compare_digest(given_signature, self._signature(payload)):
            raise invalid
        try:
            claims = json.loads(_b64decode(payload))
        except (ValueError, binascii.Error):
            raise invalid from None
        if not isinstance(claims, dict) or claims.get("op") != op:
            raise invalid
        key, expires, size, file_name = claims.get("key"), claims.get("exp"), claims.get("size"), claims.get("fn")
        if not isinstance(key, str) or type(expires) is not int:
            raise invalid
        if op == "put" and (type(size) is not int or size < 0):
            raise invalid
        if op == "get" and not isinstance(file_name, str):
            raise invalid
        check_key(key)
        if self._clock() >= expires:
            raise ExpiredToken("This link has expired; please request a new one.")
        return TokenClaims(
            op=op,
            key=key,
            size=size if op == "put" else None,
            expires_at=datetime.fromtimestamp(expires, UTC),
            file_name=file_name if op == "get" else None,
        )

    def _expires(self, ttl: int) -> int:
        return int(self._clock()) + ttl

    # ObjectStore

    def upload_target(self, key: str, size: int, content_type: str = "application/octet-stream") -> UploadTarget:
        check_key(key)
        if size < 0:
            raise ValueError("size must not be negative")
        token = self._make_token({"op": "put", "key": key, "size": size, "exp": self._expires(self.upload_ttl)})
        return UploadTarget(url=f"{self.public_base_url}/api/storage/upload?token={token}", method="PUT", headers={})

    def download_url(self, key: str, file_name: str) -> str:
        check_key(key)
        token = self._make_token({"op": "get", "key": key, "fn": file_name, "exp": self._expires(self.download_ttl)})
        return f"{self.public_base_url}/api/storage/download?token={token}"

    def local_path(self, key: str) -> Path | None:
        return self.open_path(key)

    def open_path(self, key: str) -> Path:
        """The resolved file path for `key`, guaranteed inside the root (symlinks followed); `InvalidKey` if not."""
        check_key(key)
        path = (self.root / key).resolve()
        if path == self.root or not path.is_relative_to(self.root):
            raise InvalidKey("The storage key points outside the storage root.")
        return path

    def head(self, key: str) -> ObjectInfo | None:
        path = self.open_path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError("Could not read from local storage.") from exc
        if not path.is_file():
            return None
        return ObjectInfo(size=stat.st_size)

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        _check_chunk_size(chunk_size)
        path = self.open_path(key)
        try:
            file = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound("The file was not found in storage.") from None
        except OSError as exc:
            raise StorageError("Could not read from local storage.") from exc
        return self._read_file(file, chunk_size)

    @staticmethod
    def _read_file(file: BinaryIO, chunk_size: int) -> Iterator[bytes]:
        with file:
            while True:
                try:
                    chunk = file.read(chunk_size)
                except OSError as exc:
                    raise StorageError("Could not read from local storage.") from exc
                if not chunk:
                    return
                yield chunk

    def _temp_file(self, directory: Path) -> tuple[int, str]:
        """A new temp file next to the target, so `os.replace` is atomic (same file system)."""
        # A concurrent delete() may prune the empty directory between mkdir and mkstemp: try again.
        for _ in range(3):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                return tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".part")
            except FileNotFoundError:
                continue
        raise StorageError("Could not write to local storage.")

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> int:
        _check_max_bytes(max_bytes)
        path = self.open_path(key)
        try:
            fd, temp_name = self._temp_file(path.parent)
        except OSError as exc:
            raise StorageError("Could not write to local storage.") from exc
        written = 0
        try:
            with os.fdopen(fd, "wb") as file:
                for chunk in chunks:
                    written += len(chunk)
                    if written > max_bytes:
                        raise _too_large(max_bytes)
                    try:
                        file.write(chunk)
                    except OSError as exc:
                        raise StorageError("Could not write to local storage (is the disk full?).") from exc
                try:
                    file.flush()
                    os.fsync(file.fileno())
                except OSError as exc:
                    raise StorageError("Could not write to local storage (is the disk full?).") from exc
            try:
                os.replace(temp_name, path)
            except OSError as exc:
                raise StorageError("Could not write to local storage.") from exc
        except BaseException:
            # Also on KeyboardInterrupt or a client disconnect: a half-written temp file must never stay.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        return written

    def move(self, source: str, target: str) -> None:
        source_path = self.open_path(source)
        target_path = self.open_path(target)
        if not source_path.is_file():
            raise ObjectNotFound("The file was not found in storage.")
        try:
            target_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source_path, target_path)  # atomic: same file system, under one root
        except OSError as exc:
            raise StorageError("Could not move a file in local storage.") from exc
        self._prune_empty_dirs(source_path.parent)

    def delete(self, key: str) -> None:
        path = self.open_path(key)
        try:
            path.unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            if path.is_dir() or not path.exists():  # a key prefix, not an object: nothing to delete
                return
            raise StorageError("Could not delete from local storage.") from exc
        except OSError as exc:
            raise StorageError("Could not delete from local storage.") from exc
        self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, directory: Path) -> None:
        """Remove now-empty `{user}/{dataset}/` folders so deleted datasets leave nothing behind."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:  # not empty, already gone, or in use by a concurrent upload
                return
            directory = directory.parent

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError("The local storage folder cannot be created.") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError("The local storage folder is not writable.")


# --- S3 ---------------------------------------------------------------------------------------------------------

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
    }
)
_ACCESS_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"})

# What a response body can raise while it streams, wrapped by botocore or straight from urllib3/http.client.
_MID_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    HTTPClientError,  # botocore ReadTimeoutError, ResponseStreamingError, ConnectionClosedError, ...
    BotoConnectionError,
    IncompleteReadError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    http.client.IncompleteRead,
    ConnectionError,
    TimeoutError,
)


def _translate_s3_error(exc: BotoCoreError | ClientError) -> StorageError:
    """Map a botocore failure to the storage error a caller can act on (retry, 404, or give up)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound("The file was not found in storage.")
        if code == "NoSuchBucket":
            return StorageError("The storage bucket does not exist.")
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return TransientStorageError("Storage is temporarily unavailable; please try again.")
        if code in _ACCESS_CODES:
            return StorageError("Access to storage was denied; check the storage credentials.")
        return StorageError(f"The storage request failed ({code or status}).")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageError("No storage credentials are configured.")
    if isinstance(exc, SSLError):  # a certificate problem does not fix itself on retry
        return StorageError("Could not establish a secure connection to storage.")
    if isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError):
        return TransientStorageError("Storage is temporarily unreachable; please try again.")
    return StorageError("The storage request failed.")


@contextlib.contextmanager
def _s3_errors() -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise _translate_s3_error(exc) from exc


def make_s3_client(endpoint_url: str | None, region: str, **config: Any) -> Any:
    """A boto3 S3 client with our defaults; `config` overrides botocore `Config` fields (tests lower retries).

    Checksums only when required: botocore's default checksums break MinIO and R2 uploads. A custom endpoint
    (MinIO, R2, moto) gets path-style addressing, which they all accept and which needs no wildcard DNS.
    """
    options: dict[str, Any] = {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "retries": {"max_attempts": 3, "mode": "standard"},
        "signature_version": "s3v4",
        "connect_timeout": 10,
        "read_timeout": 60,
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    options.update(config)
    # A session of its own: boto3's shared default session is not thread-safe and caches the first credentials.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=Config(**options))


class S3Store(ObjectStore):
    """Objects in one S3 (or S3-compatible) bucket; browsers upload and download with presigned URLs.

    Credentials come from boto3's default chain (env, shared config, instance role), never from our settings.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str,
        upload_ttl: int,
        download_ttl: int,
        client: Any = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (the S3 minimum)")
        self.bucket = bucket
        self.region = region
        self.upload_ttl = upload_ttl
        self.download_ttl = download_ttl
        self.part_size = part_size
        self.client = client if client is not None else make_s3_client(endpoint_url, region)

    def ensure_bucket(self, cors_origins: Sequence[str] = ()) -> None:
        """Create the bucket if it is missing (MinIO, moto and tests; production buckets are made by ops).

        With `cors_origins`, also allow browsers on those origins to PUT to presigned URLs: the Upload page sends
        the file straight from the browser to the bucket, which a bucket without such a CORS rule refuses. The
        bucket's other CORS rules are kept (`_allow_browser_uploads`).
        """
        try:
            self.client.head_bucket(Bucket=self.bucket)
            self._allow_browser_uploads(cors_origins)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise _translate_s3_error(exc) from exc
        except BotoCoreError as exc:
            raise _translate_s3_error(exc) from exc
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # S3 refuses an explicit us-east-1 location constraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":  # lost a harmless race
                raise _translate_s3_error(exc) from exc
        except BotoCoreError as exc:
            raise _translate_s3_error(exc) from exc
        self._allow_browser_uploads(cors_origins)

    def _allow_browser_uploads(self, origins: Sequence[str]) -> None:
        """Add a rule letting `origins` PUT, GET and HEAD, unless the bucket's rules allow their PUTs already.

        S3 has no call that adds one rule: the whole configuration is replaced. So the rules already there (an
        operator's, another app's) are read and written back with ours after them; replacing them took the
        operator's away, and a process with another idea of the app's address took the app's own.
        """
        if not origins:
            return
        with _s3_errors():
            try:
                rules = self.client.get_bucket_cors(Bucket=self.bucket).get("CORSRules", [])  # MinIO: may be none
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchCORSConfiguration":
                    raise
                rules = []
            missing = [origin for origin in origins if not any(_allows_upload(rule, origin) for rule in rules)]
            if not missing:
                return
            rule = {
                "AllowedOrigins": missing,
                "AllowedMethods": ["PUT", "GET", "HEAD"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3600,
            }
            self.client.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": [*rules, rule]})

    def upload_target(self, key: str, size: int, content_type: str = "application/octet-stream") -> UploadTarget:
        """A presigned PUT that signs Content-Type and Content-Length, so S3 accepts exactly `size` bytes.

        moto does not check signatures: callers must still `head()` the object after the upload.
        """
        check_key(key)
        if size < 0:
            raise ValueError("size must not be negative")
        with _s3_errors():
            url = self.client.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
                ExpiresIn=self.upload_ttl,
                HttpMethod="PUT",
            )
        return UploadTarget(url=url, method="PUT", headers={"Content-Type": content_type})

    def download_url(self, key: str, file_name: str) -> str:
        check_key(key)
        with _s3_errors():
            return self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentDisposition": content_disposition(file_name),
                },
                ExpiresIn=self.download_ttl,
            )

    def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        try:
            with _s3_errors():
                response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return None
        return ObjectInfo(size=int(response["ContentLength"]))

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        return self.open_stream(key, chunk_size).chunks

    def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectStream:
        _check_chunk_size(chunk_size)
        check_key(key)
        with _s3_errors():
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        return ObjectStream(int(response["ContentLength"]), self._read_body(response["Body"], chunk_size))

    @staticmethod
    def _read_body(body: Any, chunk_size: int) -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = body.read(chunk_size)
                except _MID_STREAM_ERRORS as exc:
                    raise TransientStorageError("The download from storage was interrupted; please try again.") from exc
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int) -> int:
        """Buffer up to one part; a body that fits in one part is one `put_object`, larger ones a multipart upload.

        A multipart upload becomes visible only when completed, and is aborted on any failure, so a too-large
        or interrupted stream leaves no object and no billable orphan parts.
        """
        check_key(key)
        _check_max_bytes(max_bytes)
        buffer = bytearray()
        written = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise _too_large(max_bytes)
                buffer += chunk
                if len(buffer) >= self.part_size:
                    if upload_id is None:
                        with _s3_errors():
                            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, buffer))
                    buffer = bytearray()
            with _s3_errors():
                if upload_id is None:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
                else:
                    if buffer:
                        parts.append(self._upload_part(key, upload_id, len(parts) + 1, buffer))
                    self.client.complete_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                    )
                    upload_id = None
        except BaseException:
            if upload_id is not None:
                self._abort(key, upload_id)
            raise
        return written

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytearray) -> dict[str, Any]:
        with _s3_errors():
            response = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(data)
            )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        """Best effort: the original error matters more; a bucket lifecycle rule catches what is left."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            logger.warning("Could not abort multipart upload %s of %r", upload_id, key, exc_info=True)

    def move(self, source: str, target: str) -> None:
        """A server-side copy, then delete: nothing passes through this process (single copy: objects ≤ 5 GB)."""
        check_key(source)
        check_key(target)
        with _s3_errors():
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source})
        self.delete(source)

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            with _s3_errors():
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:  # S3 itself says 204 for a missing key; some compatible stores say 404
            return

    def check(self) -> None:
        try:
            with _s3_errors():
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound:
            raise StorageError("The storage bucket does not exist.") from None


def _allows_upload(rule: dict[str, Any], origin: str) -> bool:
    """Whether a bucket CORS rule lets a page on `origin` PUT a file as the Upload page does: the method, the
    origin (S3 allows one `*` wildcard in it) and the Content-Type header the browser sends."""
    headers = {header.lower() for header in rule.get("AllowedHeaders", ())}
    return (
        "PUT" in rule.get("AllowedMethods", ())
        and ("*" in headers or "content-type" in headers)
        and any(fnmatch.fnmatchcase(origin, allowed) for allowed in rule.get("AllowedOrigins", ()))
    )


def make_store(settings: Settings, *, serves_browsers: bool = True) -> ObjectStore:
    """The store the settings ask for; creates the S3 bucket first when `s3_create_bucket` is set, and lets the
    app's browsers upload to it when this process `serves_browsers` (a worker does not, and may not know the app's
    address: it leaves the bucket's CORS rules alone)."""
    if settings.storage == "local":
        return LocalStore(
            settings.storage_root,
            secret_key=settings.effective_secret_key(),
            public_base_url=settings.public_base_url,
            upload_ttl=settings.upload_url_ttl_seconds,
            download_ttl=settings.download_url_ttl_seconds,
        )
    store = S3Store(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        upload_ttl=settings.upload_url_ttl_seconds,
        download_ttl=settings.download_url_ttl_seconds,
    )
    if settings.s3_create_bucket:
        store.ensure_bucket(cors_origins=[settings.public_base_url] if serves_browsers else ())
    return store
