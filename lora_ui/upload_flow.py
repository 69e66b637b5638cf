"""The Upload page's steps without the page: check the form, create the dataset, settle the browser's PUT.

Kept apart from the page so each step is a plain function a test can call with a session.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from lora_core import service
from lora_core.errors import ServiceError, UploadRejected
from lora_core.runtime import Runtime
from lora_ui.components import browser_url
from lora_ui.upload_component import UploadJob

# Session state while the browser sends a file: {"dataset_id": str, "name": str, "job": UploadJob}.
JOB_KEY = "upload_job"


def too_long(label: str, text: str | None, limit: int) -> str | None:
    """Why `text` is too long for its field (counted as the service counts it, trimmed), or None."""
    length = len(text.strip()) if text else 0
    if length <= limit:
        return None
    return f"The {label} is {length:,} characters long; the most is {limit:,}. Shorten it to upload."


def form_problems(
    name: str, chosen_file: dict[str, Any] | None, max_bytes: int, description: str | None = None
) -> list[str]:
    """What the user must fix before an upload can start (empty when the form is complete)."""
    problems = []
    if not name.strip():
        problems.append("Give the dataset a name.")
    for label, text, limit in (
        ("name", name, service.NAME_MAX_CHARS),
        ("description", description, service.DESCRIPTION_MAX_CHARS),
    ):
        if problem := too_long(label, text, limit):
            problems.append(problem)
    if not chosen_file:
        problems.append("Choose the file to upload.")
    problem = file_problem(chosen_file, max_bytes)
    if problem:
        problems.append(problem)
    return problems


def file_problem(chosen_file: dict[str, Any] | None, max_bytes: int) -> str | None:
    """Why the chosen file cannot be uploaded (empty, over the limit), or None. The picker says so as soon as the
    file is chosen, so the page disables Upload instead of saying it a second time."""
    if not chosen_file:
        return None
    size = int(chosen_file.get("size") or 0)
    if size <= 0:
        return "The chosen file is empty (0 bytes): choose the file that holds your examples."
    if size > max_bytes:
        return (
            f"The chosen file is {size:,} bytes; the limit is {max_bytes:,} bytes. Compress it with gzip "
            "(.jsonl.gz) or split it into smaller files."
        )
    return None


def start(
    runtime: Runtime, user_id: str, *, name: str, description: str, fmt: str, chosen_file: dict[str, Any]
) -> tuple[uuid.UUID, UploadJob]:
    """Create the dataset (status `uploading`) and the job the component runs; raises `ServiceError`."""
    with runtime.session() as session:
        created = service.create_dataset(
            session,
            runtime.store,
            runtime.settings,
            user_id,
            {
                "name": name,
                "description": description or None,
                "format": fmt,
                "file_name": chosen_file["name"],
                "file_size": int(chosen_file["size"]),
            },
        )
    job: UploadJob = {
        "id": uuid.uuid4().hex,
        "url": browser_url(created.upload.url, runtime.settings.public_base_url),
        "method": created.upload.method,
        "headers": dict(created.upload.headers),
        "file": {"name": chosen_file["name"], "size": int(chosen_file["size"])},
    }
    return created.dataset.id, job


@dataclass(frozen=True)
class Outcome:
    """How an upload ended: `dataset_id` to open, and `error` to show (both may be set: a rejected upload)."""

    dataset_id: uuid.UUID | str | None
    error: str | None = None


def settle(runtime: Runtime, user_id: str, dataset_id: uuid.UUID | str, result: dict[str, Any]) -> Outcome:
    """After the browser's PUT: confirm a successful one (queued for validation); drop the record of a failed one.

    A failed or cancelled PUT leaves nothing worth keeping, so the dataset is deleted and the user simply tries
    again. A PUT that succeeded but fails the checks (`UploadRejected`) keeps the record in `error` with the reason.
    """
    with runtime.session() as session:
        if result.get("ok"):
            try:
                service.confirm_upload(session, runtime.store, runtime.settings, user_id, dataset_id)
            except UploadRejected as error:
                return Outcome(dataset_id, f"The upload was rejected: {error.message}")
            except ServiceError as error:
                return Outcome(None, error.message)
            return Outcome(dataset_id)
        _discard(session, user_id, dataset_id)
    reason = str(result.get("error") or "The upload did not finish.")
    if result.get("cancelled"):
        return Outcome(None, "Upload cancelled. Nothing was saved.")
    return Outcome(None, f"Upload failed: {reason} Nothing was saved; choose the file and try again.")


def settle_left_upload(runtime: Runtime, user_id: str, dataset_id: uuid.UUID | str, name: str) -> str:
    """The user went to another page while the browser sent the file: leaving the Upload page stops the PUT, and
    no result will come. Confirm the file if it arrived whole before that; else drop the dataset at once, rather than
    leave it `uploading` until housekeeping expires it hours later. Returns what to tell the user."""
    with runtime.session() as session:
        try:
            service.confirm_upload(session, runtime.store, runtime.settings, user_id, dataset_id)
        except UploadRejected:  # the file did not arrive (whole): confirm removed what came
            _discard(session, user_id, dataset_id)
        except ServiceError:  # settled meanwhile (confirmed, deleted or expired): nothing left to do
            return f"The upload of “{name}” was interrupted when you left the Upload page."
        else:
            return f"“{name}” had finished uploading when you left the Upload page; it is being validated."
    return f"The upload of “{name}” stopped when you left the Upload page; nothing was saved. Upload it again."


def _discard(session: Session, user_id: str, dataset_id: uuid.UUID | str) -> None:
    with contextlib.suppress(ServiceError):  # already gone: nothing to clean up
        service.delete_dataset(session, user_id, dataset_id)
