"""The JSON API and the local storage endpoints, as Starlette routes that `app.py` mounts in the `st.App`.

Streamlit gives custom routes no auth, no XSRF check and a shared thread pool, so every route here authenticates
on its own (`lora_core.auth.authenticate_request`, never cookies), and big bodies are streamed, never read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lora_core.errors import Conflict, InvalidInput, NotFound, ServiceError, StorageUnavailable, UploadRejected
from lora_core.runtime import Runtime
from lora_core.storage import (
    ExpiredToken,
    InvalidKey,
    InvalidToken,
    LocalStore,
    ObjectTooLarge,
    StorageError,
    content_disposition,
)

log = logging.getLogger(__name__)

RuntimeGetter = Callable[[], Runtime]
Handler = Callable[[Request, Runtime], Awaitable[Response]]

# Uploads hold one worker thread each for their whole duration (the writer pulls chunks from the event loop);
# their own limiter keeps a burst of uploads from starving the pool that Streamlit's sync handlers share.
MAX_CONCURRENT_UPLOADS = 8
_upload_limiter: anyio.CapacityLimiter | None = None


def _upload_threads() -> anyio.CapacityLimiter:
    global _upload_limiter
    if _upload_limiter is None:
        _upload_limiter = anyio.CapacityLimiter(MAX_CONCURRENT_UPLOADS)
    return _upload_limiter


# --- Envelope and error mapping ---------------------------------------------------------------------------------


def ok(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, "data": data}, status_code=status_code)


def error_response(status_code: int, message: str, details: Any = None, code: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "details": details if details is not None else []}
    if code:
        body["code"] = code
    headers = {"WWW-Authenticate": 'Bearer realm="lora"'} if status_code == 401 else None
    return JSONResponse(body, status_code=status_code, headers=headers)


class ApiError(Exception):
    """An HTTP answer decided before any use case runs (bad token, body too large, bad JSON)."""

    def __init__(self, status_code: int, message: str, details: Any = None, code: str | None = None) -> None:
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
    return error_response(status_code, error.message, [d.to_dict() for d in error.details], error.code)


def endpoint(handler: Handler, get_runtime: RuntimeGetter) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler so every error becomes the E02 envelope, and nothing internal leaks into a 500."""

    async def run(request: Request) -> Response:
        try:
            runtime = get_runtime()
            return await handler(request, runtime)
        except ApiError as error:
            return error_response(error.status_code, error.message, error.details, error.code)
        except ServiceError as error:
            return service_error_response(error)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; only the access log sees this
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            return error_response(500, "Internal server error", code="internal_error")

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


# --- Local storage endpoints ------------------------------------------------------------------------------------


def _local_store(runtime: Runtime) -> LocalStore:
    if not isinstance(runtime.store, LocalStore):
        # S3 deployments upload and download with presigned URLs; these routes do not exist for them.
        raise ApiError(404, "Not found.", code="not_found")
    return runtime.store


def _token_claims(request: Request, store: LocalStore, op: str) -> Any:
    token = request.query_params.get("token", "")
    try:
        return store.verify_token(token, op)  # type: ignore[arg-type]
    except ExpiredToken as error:
        raise ApiError(401, str(error), code="expired_token") from None
    except (InvalidToken, InvalidKey):
        raise ApiError(401, "This link is not valid.", code="invalid_token") from None


def declared_length(request: Request) -> int | None:
    """The Content-Length header as an int, None when absent (chunked); 400 when it is not a number."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ApiError(400, "The Content-Length header is not a number.", code="invalid_content_length")
    return int(value)


async def storage_upload(request: Request, runtime: Runtime) -> Response:
    """Stream the body to disk under the token's key: never whole in memory, never writing on the event loop.

    `LocalStore.put_stream` runs in a worker thread and pulls each chunk from the event loop as it arrives; it
    writes to a temp file and renames it at the end, so a too-large, interrupted or failed upload leaves nothing.
    A body shorter than declared is stored; confirming the dataset then rejects it (as S3 would refuse it).
    """
    store = _local_store(runtime)
    claims = _token_claims(request, store, "put")
    max_bytes = min(claims.size, runtime.settings.max_upload_bytes)
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
    return ok({"size": size})


async def storage_download(request: Request, runtime: Runtime) -> Response:
    """Serve the token's file as an attachment; Starlette streams it from a thread in chunks."""
    store = _local_store(runtime)
    claims = _token_claims(request, store, "get")
    path = store.open_path(claims.key)
    if not path.is_file():
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


# --- Routes -----------------------------------------------------------------------------------------------------


def api_routes(get_runtime: RuntimeGetter) -> list[BaseRoute]:
    """Every route of the API; `get_runtime` is called per request so the runtime is built lazily, once."""

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, endpoint(handler, get_runtime), methods=methods)

    return [
        route("/api/storage/upload", storage_upload, ["PUT"]),
        route("/api/storage/download", storage_download, ["GET"]),
    ]
