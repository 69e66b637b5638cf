"""The JSON API and the local storage endpoints, as Starlette routes that `app.py` mounts in the `st.App`.

Streamlit gives custom routes no auth, no XSRF check and a shared thread pool, so every route here authenticates
on its own (`lora_core.auth.authenticate_request`, never cookies), database work runs in worker threads, and big
bodies are streamed, never read whole.

Every answer is the E02 envelope: `{"success": true, "data": ...}` or `{"error": "...", "details": [...],
"code": "..."}`. One table of operations drives both the routing and `GET /api/openapi.json`, so the document
cannot drift from what is served. Status codes:

| status | when |
|---|---|
| 400 | invalid input: per-field `details` (`field`, `message`, `code`); unknown fields; a body that is not JSON |
| 401 | no valid credentials (API routes), or a storage link that is forged or expired |
| 403 | a browser request from another site, or for a Host that is not this app (see "Browser guard" below) |
| 404 | a dataset or notification that does not exist or is not yours (never 403), an unknown `/api/` path |
| 405 | a known `/api/` path with a method it does not have |
| 409 | the dataset is in the wrong state for the action (e.g. confirming twice) |
| 413 | a body over its limit (64 KiB for JSON, the declared size or `LORA_MAX_UPLOAD_BYTES` for a file) |
| 415 | a body that is not `Content-Type: application/json` (API routes; the storage upload takes raw bytes) |
| 422 | the uploaded file failed the confirm checks (missing, wrong size): the dataset is now `error` |
| 500 | anything unexpected; logged, answered as `{"error": "Internal server error"}` without internals |
| 503 | storage or database unreachable |

Browser guard (every `/api/` operation except health and the token-authenticated storage endpoints). In `local`
mode every request is the local user, and in `proxy` mode the proxy signs in whoever its cookie names, so the
browser itself is the credential; a page on any other site could otherwise make it call the API:
- a body must be `Content-Type: application/json` (415): a cross-site page can send `text/plain` without a CORS
  preflight, but not JSON, so this alone stops "simple" cross-site POSTs;
- in `local` and `proxy` mode, a request is refused (403, code `cross_site_request`) when its `Sec-Fetch-Site`
  is `cross-site` or `same-site`, or when it has an `Origin` that is neither the origin it was sent to (the
  `Host` header) nor `LORA_PUBLIC_BASE_URL`'s;
- in the same modes, a request whose `Host` is neither a loopback name (127.0.0.1, localhost, ::1) nor the host of
  `LORA_PUBLIC_BASE_URL` is refused (403, code `untrusted_host`): that is a DNS-rebinding page reading our answers.
Plain API clients (curl, scripts) send neither `Origin` nor `Sec-Fetch-Site` and are not affected. `oidc` mode
accepts only bearer tokens, which another site's page cannot have, so only the JSON rule applies there. 403 here
is about where a request comes from, never about whether a dataset exists (that stays 404).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lora_core import service
from lora_core.auth import authenticate_request, bearer_token
from lora_core.db import database_unavailable
from lora_core.errors import (
    Conflict,
    FieldProblem,
    InvalidInput,
    NotFound,
    ServiceError,
    StorageUnavailable,
    UploadRejected,
    field_problems,
)
from lora_core.models import Dataset, DatasetStatus, Notification, NotificationKind
from lora_core.runtime import Runtime
from lora_core.settings import Settings
from lora_core.storage import (
    ExpiredToken,
    InvalidKey,
    InvalidToken,
    LocalStore,
    ObjectTooLarge,
    StorageError,
    TokenClaims,
    content_disposition,
)

log = logging.getLogger(__name__)

RuntimeGetter = Callable[[], Runtime]
Handler = Callable[[Request, Runtime], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_JSON_BODY_BYTES = 64 * 1024
# A page far beyond any real list still has to fit the database's 64-bit OFFSET; this keeps page x limit small.
MAX_PAGE = 1_000_000
# Uploads hold one worker thread each for their whole duration (the writer pulls chunks from the event loop);
# their own limiter keeps a burst of uploads from starving the pool that Streamlit's sync handlers share.
MAX_CONCURRENT_UPLOADS = 8
_upload_limiter: anyio.CapacityLimiter | None = None


def _upload_threads() -> anyio.CapacityLimiter:
    global _upload_limiter
    if _upload_limiter is None:
        _upload_limiter = anyio.CapacityLimiter(MAX_CONCURRENT_UPLOADS)
    return _upload_limiter


# --- Request and response models --------------------------------------------------------------------------------


def _field_title(name: str, _info: object) -> str:
    """A field's title in the OpenAPI document from its Python name ("Unread Count"): pydantic would take the
    camelCase alias and give "Unreadcount"."""
    return name.replace("_", " ").title()


class ApiModel(BaseModel):
    """camelCase on the wire (as in E02), snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        field_title_generator=_field_title,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class DatasetCreateRequest(service.DatasetCreate):
    """The body of `POST /api/datasets`: the service's own input model, spelled camelCase; unknown keys are 400.

    `fileSize` must also be at most the server's upload limit (`LORA_MAX_UPLOAD_BYTES`, 500 MiB by default).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        field_title_generator=_field_title,
        validate_by_name=False,
        validate_by_alias=True,
        extra="forbid",
        str_strip_whitespace=True,
        title="DatasetCreateRequest",
    )

    @field_validator("description")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail at INSERT.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class RevalidateRequest(BaseModel):
    """The optional body of `POST /api/datasets/{id}/revalidate`: without it (or without `format`), the dataset is
    checked again as its format; with `format`, as that one from now on (when the report found the file to be in
    another format, its `wrong_format` suggestion says which)."""

    model_config = ConfigDict(extra="forbid", title="RevalidateRequest")

    format: service.DatasetFormat | None = None


class DatasetSummary(ApiModel):
    """A dataset as lists show it: everything but the full validation report. Never a stored URL."""

    id: uuid.UUID
    name: str
    description: str | None
    format: str
    status: DatasetStatus
    file_name: str
    file_size: int
    storage_path: str
    training_ready: bool
    total_examples: int | None
    total_conversations: int | None
    total_training_pairs: int | None
    total_turns: int | None
    total_tokens: int | None
    total_target_tokens: int | None
    avg_turns_per_conversation: float | None
    avg_tokens_per_pair: float | None
    error_count: int | None
    warning_count: int | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    validated_at: datetime | None


class DatasetDetail(DatasetSummary):
    """One dataset with its validation report (FORMAT.md's report, as the validator wrote it)."""

    validation_report: dict[str, Any] | None


class CreatedDatasetOut(ApiModel):
    """Send `uploadMethod` to `uploadUrl` with exactly `uploadHeaders` and the file as the body, then confirm."""

    dataset: DatasetDetail
    upload_url: str
    upload_method: str
    upload_headers: dict[str, str]
    storage_path: str
    upload_expires_in: int = Field(description="Seconds until uploadUrl stops working.")


class DatasetListOut(ApiModel):
    datasets: list[DatasetSummary]
    total: int
    page: int
    limit: int
    total_pages: int


class DownloadOut(ApiModel):
    url: str = Field(description="Fresh, expiring, never stored; GET it to download the file as an attachment.")
    file_name: str
    expires_in: int = Field(description="Seconds until the URL stops working.")


class DeletedOut(ApiModel):
    id: uuid.UUID
    deleted: bool


class NotificationOut(ApiModel):
    id: uuid.UUID
    kind: NotificationKind
    title: str
    message: str
    link: str | None
    dataset_id: uuid.UUID | None
    created_at: datetime
    read_at: datetime | None


class NotificationListOut(ApiModel):
    notifications: list[NotificationOut]
    unread_count: int


class MarkedReadOut(ApiModel):
    marked: int = Field(description="How many notifications were unread.")


class UploadedOut(ApiModel):
    size: int = Field(description="Bytes stored.")


class HealthOut(ApiModel):
    database: Literal["ok"]
    storage: Literal["ok"]


class ErrorDetail(BaseModel):
    field: str
    message: str
    code: str


class ErrorOut(BaseModel):
    """Every error answer. `details` lists per-field problems (empty when there are none)."""

    error: str
    details: list[ErrorDetail]
    code: str | None = None


class QueryModel(ApiModel):
    """Query parameters; an unknown one is 400, so a typo (`?stauts=ready`) is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DatasetListQuery(QueryModel):
    page: int = Field(default=1, ge=1, le=MAX_PAGE)
    limit: int = Field(default=service.DEFAULT_PAGE_LIMIT, ge=1, le=service.MAX_PAGE_LIMIT)
    status: DatasetStatus | None = None
    search: str | None = Field(
        default=None, max_length=200, description="Matches names, case-insensitively; % and _ match themselves."
    )

    @field_validator("search")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError("must not contain control characters")
        return value


class NotificationListQuery(QueryModel):
    unread: bool = Field(default=False, description="Only unread notifications.")
    limit: int = Field(default=service.DEFAULT_PAGE_LIMIT, ge=1, le=service.MAX_PAGE_LIMIT)


# --- Envelope and error mapping ---------------------------------------------------------------------------------


def ok(data: BaseModel, status_code: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, "data": data.model_dump(mode="json", by_alias=True)}, status_code)


def error_response(
    status_code: int, message: str, details: list[FieldProblem] | None = None, code: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "details": [d.to_dict() for d in details or []]}
    if code:
        body["code"] = code
    headers = {"WWW-Authenticate": 'Bearer realm="lora"'} if status_code == 401 else None
    return JSONResponse(body, status_code=status_code, headers=headers)


def _camel_problem(problem: FieldProblem) -> FieldProblem:
    """The service names fields in snake_case; the API's clients know them in camelCase."""
    return FieldProblem(".".join(to_camel(part) for part in problem.field.split(".")), problem.message, problem.code)


class ApiError(Exception):
    """An HTTP answer decided before any use case runs (bad credentials, body too large, not JSON)."""

    def __init__(
        self, status_code: int, message: str, details: list[FieldProblem] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.details = details
        self.code = code


SERVICE_STATUS: dict[type[ServiceError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    UploadRejected: 422,
    StorageUnavailable: 503,
}


def service_error_response(error: ServiceError) -> JSONResponse:
    status_code = next((code for kind, code in SERVICE_STATUS.items() if isinstance(error, kind)), 400)
    return error_response(status_code, error.message, [_camel_problem(d) for d in error.details], error.code)


def endpoint(handler: Handler, get_runtime: RuntimeGetter, *, browser_guard: bool = True) -> Endpoint:
    """Wrap a handler so every error becomes the envelope, and nothing internal leaks into a 500.

    With `browser_guard`, requests another site's page could have made are refused first (`refuse_foreign_request`).
    """

    async def run(request: Request) -> Response:
        try:
            runtime = get_runtime()
            if browser_guard:
                refuse_foreign_request(request, runtime.settings)
            return await handler(request, runtime)
        except ApiError as error:
            return error_response(error.status_code, error.message, error.details, error.code)
        except ServiceError as error:
            return service_error_response(error)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; only the access log sees this
        except sa.exc.DBAPIError as error:
            if not database_unavailable(error):
                log.exception("unhandled error in %s %s", request.method, request.url.path)
                return error_response(500, "Internal server error", code="internal_error")
            log.warning("database unavailable in %s %s", request.method, request.url.path, exc_info=True)
            return error_response(
                503, "The database is not reachable right now; try again shortly.", code="unavailable"
            )
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            return error_response(500, "Internal server error", code="internal_error")

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


async def in_thread(work: Callable[[], T]) -> T:
    """Database and storage calls block: run them off the event loop."""
    return await anyio.to_thread.run_sync(work)


# --- Browser guard: cross-site requests and DNS rebinding (see the module docstring) ----------------------------

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# `same-site` includes other ports of the same host and sibling subdomains: other origins, so refused as well.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "").strip()
    return "transfer-encoding" in request.headers or (length.isascii() and length.isdecimal() and int(length) > 0)


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _hostname(netloc: str) -> str | None:
    """`example.com:8501` -> `example.com`, `[::1]:8501` -> `::1` (lowercase); None when there is no host."""
    try:
        return urllib.parse.urlsplit(f"//{netloc}").hostname or None
    except ValueError:
        return None


def _origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def refuse_foreign_request(request: Request, settings: Settings) -> None:
    """Raise 415 or 403 for a request another site's page could have made (rules in the module docstring)."""
    if _has_body(request) and not _is_json(request.headers.get("content-type", "")):
        raise ApiError(
            415, "Send the body as JSON, with 'Content-Type: application/json'.", code="unsupported_media_type"
        )
    if settings.auth_mode == "oidc":
        return
    host = request.headers.get("host", "").strip().lower()
    public_host = _hostname(urllib.parse.urlsplit(settings.public_base_url).netloc)
    if _hostname(host) not in LOOPBACK_HOSTS | {public_host}:
        message = "This app does not answer for that host name; use the address in LORA_PUBLIC_BASE_URL."
        raise ApiError(403, message, code="untrusted_host")
    cross_site = ApiError(403, "Requests from other websites are refused.", code="cross_site_request")
    if request.headers.get("sec-fetch-site", "").strip().lower() in FOREIGN_FETCH_SITES:
        raise cross_site
    origin = request.headers.get("origin")
    if origin is not None:
        origin = origin.strip().lower()  # "null" (a sandboxed frame, a file) is no origin of ours either
        sent_to_itself = "://" in origin and urllib.parse.urlsplit(origin).netloc == host
        if not (sent_to_itself or origin == _origin_of(settings.public_base_url)):
            raise cross_site


# --- Request helpers --------------------------------------------------------------------------------------------


def declared_length(request: Request) -> int | None:
    """The Content-Length header as an int, None when absent (chunked); 400 when it is not a number."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdecimal()):  # "²" is a digit to isdigit(), and int() refuses it
        raise ApiError(400, "The Content-Length header is not a number.", code="invalid_content_length")
    return int(value)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed `limit` (header first, then counting)."""
    length = declared_length(request)
    too_large = ApiError(413, f"The request body is larger than {limit:,} bytes.", code="too_large")
    if length is not None and length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def json_body(request: Request, model: type[M]) -> M:
    """Parse and validate a JSON body; anything but a JSON object of the model's fields is 400 with details."""
    raw = await read_body(request, MAX_JSON_BODY_BYTES)
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        problems = field_problems(error)
        if any(p.code == "json_invalid" for p in problems):
            raise ApiError(400, "The request body is not valid JSON.", problems, "invalid_json") from None
        message = "Some fields are not valid: " + "; ".join(f"{p.field}: {p.message}" for p in problems)
        raise ApiError(400, message, problems, "invalid_input") from None


def query(request: Request, model: type[M]) -> M:
    """Validate query parameters (the last value wins when one is repeated; unknown ones are 400)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as error:
        problems = field_problems(error)
        message = "Some parameters are not valid: " + "; ".join(f"{p.field}: {p.message}" for p in problems)
        raise ApiError(400, message, problems, "invalid_input") from None


async def current_user(request: Request, runtime: Runtime) -> str:
    """The caller's user id (see `authenticate_request` for each identity mode), or 401."""
    settings = runtime.settings
    if settings.auth_mode == "local":
        return settings.local_user_id
    headers = dict(request.headers.items())
    client_host = request.client.host if request.client else None

    def lookup() -> str | None:
        with runtime.session() as session:
            return authenticate_request(headers, client_host, session, settings)

    user_id = await in_thread(lookup)
    if user_id is None:
        token = bearer_token(headers)
        if token:  # one was sent: say it is the token, not that none was sent
            message = "This API token is not valid: it is mistyped, or it was revoked. Create a new one in Settings."
        elif token == "":
            message = "The Authorization header is malformed: send 'Authorization: Bearer <personal API token>'."
        else:
            message = "Authentication required: send 'Authorization: Bearer <personal API token>'."
        raise ApiError(401, message, code="unauthorized")
    return user_id


# --- Datasets ---------------------------------------------------------------------------------------------------


def dataset_detail(dataset: Dataset) -> DatasetDetail:
    return DatasetDetail.model_validate(dataset, from_attributes=True)


async def create_dataset(request: Request, runtime: Runtime) -> Response:
    """Create the record and an expiring upload URL; a 201 means both exist."""
    user_id = await current_user(request, runtime)
    data = await json_body(request, DatasetCreateRequest)

    def work() -> CreatedDatasetOut:
        with runtime.session() as session:
            created = service.create_dataset(session, runtime.store, runtime.settings, user_id, data)
        return CreatedDatasetOut(
            dataset=dataset_detail(created.dataset),
            upload_url=created.upload.url,
            upload_method=created.upload.method,
            upload_headers=created.upload.headers,
            storage_path=created.dataset.storage_path,
            upload_expires_in=runtime.settings.upload_url_ttl_seconds,
        )

    return ok(await in_thread(work), 201)


async def list_datasets(request: Request, runtime: Runtime) -> Response:
    user_id = await current_user(request, runtime)
    params = query(request, DatasetListQuery)

    def work() -> DatasetListOut:
        with runtime.session() as session:
            page = service.list_datasets(
                session, user_id, status=params.status, search=params.search, page=params.page, limit=params.limit
            )
        return DatasetListOut(
            datasets=[DatasetSummary.model_validate(d, from_attributes=True) for d in page.items],
            total=page.total,
            page=page.page,
            limit=page.limit,
            total_pages=page.total_pages,
        )

    return ok(await in_thread(work))


async def get_dataset(request: Request, runtime: Runtime) -> Response:
    user_id = await current_user(request, runtime)
    dataset_id = request.path_params["id"]

    def work() -> DatasetDetail:
        with runtime.session() as session:
            return dataset_detail(service.get_dataset(session, user_id, dataset_id))

    return ok(await in_thread(work))


async def delete_dataset(request: Request, runtime: Runtime) -> Response:
    """Soft delete: gone from every view; the record and file stay for recovery or audit."""
    user_id = await current_user(request, runtime)
    dataset_id = request.path_params["id"]

    def work() -> DeletedOut:
        with runtime.session() as session:
            dataset = service.get_dataset(session, user_id, dataset_id)
            service.delete_dataset(session, user_id, dataset.id)
        return DeletedOut(id=dataset.id, deleted=True)

    return ok(await in_thread(work))


async def confirm_dataset(request: Request, runtime: Runtime) -> Response:
    """The upload is done: check it and queue validation (the dataset becomes `validating`)."""
    user_id = await current_user(request, runtime)
    dataset_id = request.path_params["id"]

    def work() -> DatasetDetail:
        with runtime.session() as session:
            return dataset_detail(service.confirm_upload(session, runtime.store, runtime.settings, user_id, dataset_id))

    return ok(await in_thread(work))


async def revalidate_dataset(request: Request, runtime: Runtime) -> Response:
    user_id = await current_user(request, runtime)
    dataset_id = request.path_params["id"]
    fmt = (await json_body(request, RevalidateRequest)).format if _has_body(request) else None

    def work() -> DatasetDetail:
        with runtime.session() as session:
            return dataset_detail(service.revalidate_dataset(session, runtime.store, user_id, dataset_id, fmt))

    return ok(await in_thread(work))


async def download_dataset(request: Request, runtime: Runtime) -> Response:
    user_id = await current_user(request, runtime)
    dataset_id = request.path_params["id"]

    def work() -> DownloadOut:
        with runtime.session() as session:
            url = service.download_url(session, runtime.store, user_id, dataset_id)
            dataset = service.get_dataset(session, user_id, dataset_id)
        return DownloadOut(url=url, file_name=dataset.file_name, expires_in=runtime.settings.download_url_ttl_seconds)

    return ok(await in_thread(work))


# --- Notifications ----------------------------------------------------------------------------------------------


async def list_notifications(request: Request, runtime: Runtime) -> Response:
    user_id = await current_user(request, runtime)
    params = query(request, NotificationListQuery)

    def work() -> NotificationListOut:
        with runtime.session() as session:
            items = service.list_notifications(session, user_id, unread_only=params.unread, limit=params.limit)
            unread = service.unread_notification_count(session, user_id)
        return NotificationListOut(
            notifications=[_notification(n) for n in items],
            unread_count=unread,
        )

    return ok(await in_thread(work))


def _notification(notification: Notification) -> NotificationOut:
    return NotificationOut.model_validate(notification, from_attributes=True)


async def mark_notification_read(request: Request, runtime: Runtime) -> Response:
    user_id = await current_user(request, runtime)
    notification_id = request.path_params["id"]

    def work() -> NotificationOut:
        with runtime.session() as session:
            return _notification(service.mark_notification_read(session, user_id, notification_id))

    return ok(await in_thread(work))


async def mark_all_notifications_read(request: Request, runtime: Runtime) -> Response:
    user_id = await current_user(request, runtime)

    def work() -> MarkedReadOut:
        with runtime.session() as session:
            return MarkedReadOut(marked=service.mark_all_notifications_read(session, user_id))

    return ok(await in_thread(work))


# --- Health and the OpenAPI document ----------------------------------------------------------------------------


async def health(request: Request, runtime: Runtime) -> Response:
    """Both the database and the storage answer; 503 naming which does not. No credentials needed."""

    def work() -> list[FieldProblem]:
        problems = []
        try:
            with runtime.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            log.warning("health: database unreachable", exc_info=True)
            problems.append(FieldProblem("database", "The database is not reachable.", "unavailable"))
        try:
            runtime.store.check()
        except StorageError as error:
            log.warning("health: storage unavailable: %s", error)
            problems.append(FieldProblem("storage", str(error), "unavailable"))
        return problems

    problems = await in_thread(work)
    if problems:
        raise ApiError(503, "The service is not healthy.", problems, "unavailable")
    return ok(HealthOut(database="ok", storage="ok"))


async def openapi_document(request: Request, runtime: Runtime) -> Response:
    return JSONResponse(openapi_spec())


# --- Local storage endpoints ------------------------------------------------------------------------------------


def _local_store(runtime: Runtime) -> LocalStore:
    if not isinstance(runtime.store, LocalStore):
        # S3 deployments upload and download with presigned URLs; these routes do not exist for them.
        raise ApiError(404, "Not found.", code="not_found")
    return runtime.store


def _token_claims(request: Request, store: LocalStore, op: Literal["put", "get"]) -> TokenClaims:
    token = request.query_params.get("token", "")
    try:
        return store.verify_token(token, op)
    except ExpiredToken as error:
        raise ApiError(401, str(error), code="expired_token") from None
    except (InvalidToken, InvalidKey):
        raise ApiError(401, "This link is not valid.", code="invalid_token") from None


async def storage_upload(request: Request, runtime: Runtime) -> Response:
    """Stream the body to disk under the token's key: never whole in memory, never writing on the event loop.

    `LocalStore.put_stream` runs in a worker thread and pulls each chunk from the event loop as it arrives; it
    writes to a temp file and renames it at the end, so a too-large, interrupted or failed upload leaves nothing.
    A body shorter than declared is stored; confirming the dataset then rejects it (as S3 would refuse it).
    """
    store = _local_store(runtime)
    claims = _token_claims(request, store, "put")

    def still_uploading() -> bool:
        with runtime.session() as session:
            return service.upload_allowed(session, claims.key)

    if not await in_thread(still_uploading):
        raise ApiError(409, "This dataset is no longer waiting for its file; create a new dataset.", code="conflict")
    max_bytes = min(claims.size or 0, runtime.settings.max_upload_bytes)
    length = declared_length(request)
    if length is not None and length > max_bytes:
        raise ApiError(413, f"The body is {length:,} bytes; this upload allows {max_bytes:,}.", code="too_large")

    body = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await body.__anext__()
        except StopAsyncIteration:
            return None

    def chunks() -> Iterator[bytes]:
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            if chunk:
                yield chunk

    try:
        size = await anyio.to_thread.run_sync(
            lambda: store.put_stream(claims.key, chunks(), max_bytes), limiter=_upload_threads()
        )
    except ObjectTooLarge:
        message = f"The body is larger than the {max_bytes:,} bytes this upload allows."
        raise ApiError(413, message, code="too_large") from None
    except StorageError as error:
        raise StorageUnavailable(str(error)) from error
    return ok(UploadedOut(size=size))


async def storage_download(request: Request, runtime: Runtime) -> Response:
    """Serve the token's file as an attachment; Starlette streams it from a thread in chunks."""
    store = _local_store(runtime)
    claims = _token_claims(request, store, "get")

    def still_listed() -> bool:
        with runtime.session() as session:
            return service.download_allowed(session, claims.key)

    if not await in_thread(still_listed):
        raise ApiError(404, "This dataset was deleted; its file can no longer be downloaded.", code="not_found")
    path = store.open_path(claims.key)
    if not await in_thread(path.is_file):
        raise ApiError(404, "The file is no longer stored.", code="not_found")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": content_disposition(claims.file_name or path.name),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


# --- The operations: routing and OpenAPI from one table ---------------------------------------------------------

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input: `details` names each field and what is wrong with it.",
    401: "Missing or invalid credentials (or, for storage links, a forged or expired token).",
    403: "A request from another website, or for a host name that is not this app (local and proxy modes).",
    404: "Not found, or not yours.",
    409: "The dataset is in the wrong state for this action.",
    413: "The request body is over its limit.",
    415: "The request has a body that is not `Content-Type: application/json`.",
    422: "The uploaded file failed the confirm checks (missing or wrong size); the dataset is now `error`.",
    500: "Unexpected error (logged); the message never includes internals.",
    503: "Storage or database unavailable.",
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    response: type[BaseModel] | None
    errors: tuple[int, ...]
    status: int = 200
    authenticated: bool = True
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    path_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    browser_guard: bool = True  # False only for health and the token-authenticated storage endpoints

    @property
    def responses(self) -> tuple[int, ...]:
        """Every error status the operation can answer: its own, and the browser guard's 403 and 415."""
        guard = (403, 415) if self.browser_guard else ()
        return tuple(sorted({*self.errors, *guard}))


_ID_ERRORS = (401, 404, 500)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/api/datasets",
        create_dataset,
        "createDataset",
        "Create a dataset and get a URL to upload its file to",
        CreatedDatasetOut,
        (400, 401, 413, 500, 503),
        status=201,
        body=DatasetCreateRequest,
    ),
    Operation(
        "GET",
        "/api/datasets",
        list_datasets,
        "listDatasets",
        "List your datasets, newest first",
        DatasetListOut,
        (400, 401, 500),
        query=DatasetListQuery,
    ),
    Operation(
        "GET", "/api/datasets/{id}", get_dataset, "getDataset", "One dataset", DatasetDetail, _ID_ERRORS, path_id="id"
    ),
    Operation(
        "DELETE",
        "/api/datasets/{id}",
        delete_dataset,
        "deleteDataset",
        "Delete a dataset (soft: hidden everywhere, kept for audit)",
        DeletedOut,
        _ID_ERRORS,
        path_id="id",
    ),
    Operation(
        "POST",
        "/api/datasets/{id}/confirm",
        confirm_dataset,
        "confirmUpload",
        "Confirm the upload finished; queues validation",
        DatasetDetail,
        (401, 404, 409, 422, 500, 503),
        path_id="id",
    ),
    Operation(
        "POST",
        "/api/datasets/{id}/revalidate",
        revalidate_dataset,
        "revalidateDataset",
        "Validate a ready or failed dataset again, optionally as another format",
        DatasetDetail,
        (400, 401, 404, 409, 500, 503),
        body=RevalidateRequest,
        body_required=False,
        path_id="id",
    ),
    Operation(
        "GET",
        "/api/datasets/{id}/download",
        download_dataset,
        "getDownloadUrl",
        "A fresh expiring URL to download the dataset's file",
        DownloadOut,
        (401, 404, 409, 500, 503),
        path_id="id",
    ),
    Operation(
        "GET",
        "/api/notifications",
        list_notifications,
        "listNotifications",
        "Your notifications, newest first, with the unread count",
        NotificationListOut,
        (400, 401, 500),
        query=NotificationListQuery,
    ),
    Operation(
        "PATCH",
        "/api/notifications/{id}/read",
        mark_notification_read,
        "markNotificationRead",
        "Mark one notification read",
        NotificationOut,
        _ID_ERRORS,
        path_id="id",
    ),
    Operation(
        "POST",
        "/api/notifications/read-all",
        mark_all_notifications_read,
        "markAllNotificationsRead",
        "Mark all your notifications read",
        MarkedReadOut,
        (401, 500),
    ),
    Operation(
        "GET",
        "/api/health",
        health,
        "health",
        "Database and storage reachable (no credentials needed)",
        HealthOut,
        (500, 503),
        authenticated=False,
        browser_guard=False,
    ),
    Operation(
        "PUT",
        "/api/storage/upload",
        storage_upload,
        "storageUpload",
        "Local storage only: upload a file to a signed upload URL (the token is the credential)",
        UploadedOut,
        (400, 401, 404, 409, 413, 500, 503),
        authenticated=False,
        browser_guard=False,
        extra={"token": True, "binary_body": True},
    ),
    Operation(
        "GET",
        "/api/storage/download",
        storage_download,
        "storageDownload",
        "Local storage only: download a file from a signed download URL (the token is the credential)",
        None,
        (401, 404, 500),
        authenticated=False,
        browser_guard=False,
        extra={"token": True},
    ),
    Operation(
        "GET",
        "/api/openapi.json",
        openapi_document,
        "openapi",
        "This document",
        None,
        (500,),
        authenticated=False,
    ),
)


# Starlette routes a function endpoint only for the methods listed; list them all and answer 405 ourselves.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]


def api_routes(get_runtime: RuntimeGetter) -> list[BaseRoute]:
    """Every route of the API; `get_runtime` is called per request, so the runtime is built lazily, once.

    One route per path dispatches on the method itself, so a wrong method is a JSON 405 (Starlette's own is text),
    and a last catch-all keeps Streamlit's HTML from ever answering an `/api/` request.
    """
    by_path: dict[str, dict[str, Endpoint]] = {}
    for operation in OPERATIONS:
        by_path.setdefault(operation.path, {})[operation.method] = endpoint(
            operation.handler, get_runtime, browser_guard=operation.browser_guard
        )
    routes: list[BaseRoute] = [Route(p, _dispatch(handlers), methods=ALL_METHODS) for p, handlers in by_path.items()]
    routes.append(Route("/api/{rest:path}", _unknown_route, methods=ALL_METHODS))
    return routes


def _dispatch(handlers: dict[str, Endpoint]) -> Endpoint:
    if "GET" in handlers:
        handlers = {**handlers, "HEAD": handlers["GET"]}  # the server drops the body of a HEAD answer
    allowed = ", ".join(sorted(handlers))

    async def dispatch(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None:
            response = error_response(405, f"Method not allowed; use {allowed}.", code="method_not_allowed")
            response.headers["Allow"] = allowed
            return response
        return await handler(request)

    return dispatch


async def _unknown_route(request: Request) -> Response:
    return error_response(404, "No such API route.", code="not_found")


def _schema_of(model: type[BaseModel], mode: Literal["validation", "serialization"], defs: dict[str, Any]) -> dict:
    """The model's JSON schema with its `$defs` moved into `defs` (components), referenced from there."""
    schema = model.model_json_schema(by_alias=True, mode=mode, ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        defs.setdefault(name, definition)
    defs.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never JSON null: drop the null branch of optional fields."""
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
        if len(branches) == 1:
            return {**branches[0], **rest}
        return {**rest, "anyOf": branches}
    return schema


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace local `$ref`s by their definitions: a parameter's schema reads best self-contained."""
    if isinstance(node, dict):
        if "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline_refs(defs[node["$ref"].rsplit("/", 1)[1]], defs), **rest}
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _envelope(data_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": data_schema},
    }


def _operation_spec(operation: Operation, defs: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "security": [{"bearerAuth": []}] if operation.authenticated else [],
    }
    if operation.handler.__doc__:
        spec["description"] = operation.handler.__doc__.strip().split("\n\n")[0]
    parameters: list[dict[str, Any]] = []
    if operation.path_id:
        parameters.append(
            {"name": operation.path_id, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        )
    if operation.query:
        query_schema = operation.query.model_json_schema(by_alias=True)
        local_defs = query_schema.get("$defs", {})
        for name, property_schema in query_schema["properties"].items():
            schema = _inline_refs(property_schema, local_defs)
            parameter = {"name": name, "in": "query", "required": False, "schema": _without_null(schema)}
            if "description" in schema:
                parameter["description"] = schema["description"]
            parameters.append(parameter)
    if operation.extra.get("token"):
        parameters.append(
            {
                "name": "token",
                "in": "query",
                "required": True,
                "description": "The signed token from an upload or download URL.",
                "schema": {"type": "string", "maxLength": 8192},
            }
        )
    if parameters:
        spec["parameters"] = parameters
    if operation.body:
        spec["requestBody"] = {
            "required": operation.body_required,
            "description": f"A JSON object of at most {MAX_JSON_BODY_BYTES:,} bytes.",
            "content": {"application/json": {"schema": _schema_of(operation.body, "validation", defs)}},
        }
    elif operation.extra.get("binary_body"):
        spec["requestBody"] = {
            "required": True,
            "description": "The file's bytes, at most the size the token was issued for.",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    responses: dict[str, Any] = {}
    if operation.response is not None:
        responses[str(operation.status)] = {
            "description": "Success.",
            "content": {
                "application/json": {"schema": _envelope(_schema_of(operation.response, "serialization", defs))}
            },
        }
    elif operation.operation_id == "storageDownload":
        responses["200"] = {
            "description": "The file, as an attachment.",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    else:
        responses["200"] = {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {}}}}
    error_ref = _schema_of(ErrorOut, "serialization", defs)
    for status in operation.responses:
        responses[str(status)] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": error_ref}},
        }
    spec["responses"] = responses
    return spec


API_DESCRIPTION = """\
Upload, validate and manage LoRA fine-tuning datasets.

**Flow**: `POST /api/datasets` → send the file to `uploadUrl` with `uploadMethod` and `uploadHeaders` →
`POST /api/datasets/{id}/confirm` → poll `GET /api/datasets/{id}` until `status` is `ready` or `error`.

**Identity** (`LORA_AUTH_MODE`): `local` — every request is the one local user, and the server listens on
127.0.0.1 only; `oidc` — `Authorization: Bearer <personal API token>` (create one on the Settings page);
`proxy` — a personal API token, or the user header set by a trusted proxy. Cookies are never used.

**Envelope**: `{"success": true, "data": ...}`, or `{"error": "...", "details": [...], "code": "..."}`.

**Browsers**: a request body must be `Content-Type: application/json` (else 415). In `local` and `proxy` mode, a
request another website's page made (`Origin` or `Sec-Fetch-Site` from elsewhere), or one for a host name that is
neither loopback nor `LORA_PUBLIC_BASE_URL`'s, is 403. Scripts that send neither header are not affected.
"""


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every operation, built from the same table and models that serve them."""
    defs: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation_spec(operation, defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "LoRA Dataset Manager API", "version": "1.0.0", "description": API_DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(defs.items())),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A personal API token (lora_...)."}
            },
        },
    }
