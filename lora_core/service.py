"""Use cases: the only way pages and the API read or change datasets and notifications.

Every function takes the caller's `user_id` and acts only on that user's rows: another user's dataset is
`NotFound`, exactly like a missing one. Each function commits its own work or none of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import orm
from sqlmodel import Session, col, select

from lora_core.errors import (
    Conflict,
    FieldProblem,
    InvalidInput,
    NotFound,
    StorageUnavailable,
    UploadRejected,
    choice_problem,
    field_problems,
)
from lora_core.models import STATISTIC_COLUMNS, Dataset, DatasetStatus, Notification, name_key, utcnow
from lora_core.settings import DATASET_FORMATS, DEFAULT_FORMAT, Settings
from lora_core.storage import InvalidKey, ObjectNotFound, ObjectStore, StorageError, UploadTarget, check_key
from lora_core.validation import ValidationLimits
from lora_core.validation.excerpts import Excerpt, excerpt_positions, read_excerpts
from lora_core.validation.spool import close_chunks

log = logging.getLogger(__name__)

MAX_PAGE_LIMIT = 100
DEFAULT_PAGE_LIMIT = 20
# Download and revalidate of a dataset without a file (models.Dataset.purged_at says why there is none).
NO_FILE_MESSAGE = "This dataset has no stored file to use; create the dataset again to upload the file."
DatasetFormat = Literal["brightrun_lora_v4", "brightrun_lora_v3", "openai_chat"]
assert set(DatasetFormat.__args__) == set(DATASET_FORMATS)  # one list of formats, checked at import

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_PAGE = 1_000_000  # beyond this OFFSET overflows some databases; nobody pages that far
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


BLANK_MESSAGES = {
    "name": "Give the dataset a name (it cannot be blank).",
    "file_name": "Give the name of the file you will upload (it cannot be blank).",
}


NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 5000


class DatasetCreate(BaseModel):
    """What a user supplies to start an upload; the size limit depends on settings, so `create_dataset` checks it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=NAME_MAX_CHARS)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)
    format: DatasetFormat = DEFAULT_FORMAT
    file_name: str = Field(min_length=1, max_length=255)
    file_size: int = Field(ge=1, strict=True)

    @field_validator("name", "file_name", mode="before")
    @classmethod
    def _not_blank(cls, value: object, info: ValidationInfo) -> object:
        """Refuse a blank name before min_length does, with a message that says what to do, not "at least 1 character".

        `str.strip` removes all that pydantic's stripping does, plus \\x1c-\\x1f, which `_CONTROL` refuses anyway:
        so this refuses nothing that was accepted before, and the code stays `string_too_short`.
        """
        if isinstance(value, str) and not value.strip():
            raise PydanticCustomError("string_too_short", BLANK_MESSAGES[info.field_name], {"min_length": 1})
        return value

    @field_validator("name")
    @classmethod
    def _name_is_printable(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("description")
    @classmethod
    def _description_is_text(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL_EXCEPT_WHITESPACE.search(value):
            raise ValueError("must not contain control characters (other than tabs and line breaks)")
        return value

    @field_validator("file_name")
    @classmethod
    def _file_name_is_plain(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        if "/" in value or "\\" in value:
            raise ValueError("must be a plain file name, without folders ('/' or '\\')")
        if value in {".", ".."}:
            raise ValueError("must be a file name, not '.' or '..'")
        size = len(value.encode("utf-8"))
        if size > 255:
            raise ValueError(
                f"must be at most 255 bytes in UTF-8, as file systems allow; this one is {size:,} "
                "(a character outside ASCII takes 2–4): rename the file to something shorter"
            )
        return value


@dataclass(frozen=True)
class CreatedDataset:
    dataset: Dataset
    upload: UploadTarget


@dataclass(frozen=True)
class DatasetPage:
    items: list[Dataset]
    total: int
    page: int
    limit: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.limit) if self.total else 0


def storage_file_name(file_name: str) -> str:
    """A storage-key-safe form of a user's file name: ASCII letters, digits, `.`, `_`, `-`; never empty or dotted."""
    ascii_name = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
    safe = _KEY_UNSAFE.sub("_", ascii_name).strip("._") or "dataset"
    safe = safe[:200]
    # A file named like the upload folder would be that folder's parent's twin: `…/incoming` is the folder that
    # holds `…/incoming/incoming`, so confirm could never move the upload there. The key changes, not the name.
    return f"{safe}_" if safe.casefold() == UPLOAD_FOLDER else safe  # case-insensitive file systems too (macOS)


# A user id stands as its own folder when it is one plain path segment of at most this many UTF-8 bytes.
USER_FOLDER_MAX_BYTES = 100


def storage_user_folder(user_id: str) -> str:
    """The first segment of a user's storage paths: the id itself (`alice@example.com`), readable to an operator,
    unless it could not be one segment of a key (`storage.check_key` refuses a domain login `CORP\\alice`, `..`, a
    control character; a slash would make two) or is too long for a file name (an OIDC subject); then `u-` and 32
    hex digits of its SHA-256, stable per user. Those ids made every upload fail with "storage unavailable"."""
    data = user_id.encode("utf-8", "surrogatepass")
    if "/" not in user_id and len(data) <= USER_FOLDER_MAX_BYTES:
        with contextlib.suppress(InvalidKey):  # refused: the hashed folder below
            return check_key(user_id)
    return "u-" + hashlib.sha256(data).hexdigest()[:32]


UPLOAD_FOLDER = "incoming"


def upload_key_for(storage_path: str) -> str:
    """Where the browser uploads a dataset's file: beside its storage path, in `incoming/`.

    Confirm moves the file to the storage path, out of reach of the upload URL, which stays valid until it expires
    (an hour): a later PUT to it cannot replace the file that was validated.
    """
    folder, _, name = storage_path.rpartition("/")
    return f"{folder}/{UPLOAD_FOLDER}/{name}"


def storage_path_for_upload_key(key: str) -> str | None:
    """The storage path an upload key belongs to, or None when `key` is not an upload key."""
    folder, _, name = key.rpartition("/")
    head, _, marker = folder.rpartition("/")
    return f"{head}/{name}" if marker == UPLOAD_FOLDER and head else None


def _invalid_from(error: ValidationError) -> InvalidInput:
    problems = field_problems(error)
    return InvalidInput(
        "Some fields are not valid: " + "; ".join(f"{p.field}: {p.message}" for p in problems), problems
    )


def create_dataset(
    session: Session, store: ObjectStore, settings: Settings, user_id: str, data: DatasetCreate | dict
) -> CreatedDataset:
    """Create the record in `uploading` and an expiring URL to upload the file to; if no URL, no record either."""
    if not isinstance(data, DatasetCreate):
        try:
            data = DatasetCreate.model_validate(data)
        except ValidationError as error:
            raise _invalid_from(error) from None
    if data.file_size > settings.max_upload_bytes:
        raise InvalidInput(
            f"The file is {data.file_size:,} bytes; the limit is {settings.max_upload_bytes:,} bytes.",
            [FieldProblem("file_size", f"must be at most {settings.max_upload_bytes} bytes", "too_large")],
        )
    dataset_id = uuid.uuid4()
    dataset = Dataset(
        id=dataset_id,
        user_id=user_id,
        name=data.name,
        description=data.description or None,
        format=data.format,
        status=DatasetStatus.UPLOADING,
        storage_bucket=store.bucket,
        storage_path=f"{storage_user_folder(user_id)}/{dataset_id}/{storage_file_name(data.file_name)}",
        file_name=data.file_name,
        file_size=data.file_size,
    )
    try:
        upload = store.upload_target(upload_key_for(dataset.storage_path), data.file_size)
    except StorageError as error:
        raise StorageUnavailable(f"Could not prepare the upload: {error}") from error
    session.add(dataset)
    session.commit()
    return CreatedDataset(dataset=dataset, upload=upload)


def _parse_id(value: uuid.UUID | str, what: str = "Dataset") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found.") from None


def _owned_dataset(session: Session, user_id: str, dataset_id: uuid.UUID | str, *, for_update: bool = False) -> Dataset:
    query = select(Dataset).where(
        Dataset.id == _parse_id(dataset_id), Dataset.user_id == user_id, col(Dataset.deleted_at).is_(None)
    )
    if for_update:
        query = query.with_for_update()
    dataset = session.exec(query).first()
    if dataset is None:
        raise NotFound("Dataset not found.")
    return dataset


def get_dataset(session: Session, user_id: str, dataset_id: uuid.UUID | str) -> Dataset:
    return _owned_dataset(session, user_id, dataset_id)


def confirm_upload(
    session: Session, store: ObjectStore, settings: Settings, user_id: str, dataset_id: uuid.UUID | str
) -> Dataset:
    """Check the uploaded object against what was declared, move it to the storage path, queue it for validation.

    On a missing object, a size mismatch or an oversize file the dataset goes to `error` with a message that says
    which, the rejected object is removed, and `UploadRejected` carries that message to the caller.
    """
    dataset = _owned_dataset(session, user_id, dataset_id, for_update=True)
    if dataset.status != DatasetStatus.UPLOADING:
        raise Conflict(f"This dataset is already {dataset.status.value}; only an uploading dataset can be confirmed.")
    upload_key = upload_key_for(dataset.storage_path)
    try:
        info = store.head(upload_key)
        if info is None and (moved := store.head(dataset.storage_path)) is not None:
            # An earlier confirm moved the file but did not get to record it.
            info, upload_key = moved, dataset.storage_path
    except StorageError as error:
        raise StorageUnavailable(f"Could not check the uploaded file: {error}") from error
    problem: str | None = None
    if info is None:
        problem = "The file was never uploaded (nothing is stored for this dataset). Create the dataset again."
    elif info.size > settings.max_upload_bytes:
        problem = f"The uploaded file is {info.size:,} bytes, over the {settings.max_upload_bytes:,}-byte limit."
    elif info.size != dataset.file_size:
        problem = (
            f"The uploaded file is {info.size:,} bytes but {dataset.file_size:,} bytes were declared: "
            "the upload was incomplete or a different file was sent. Upload the file again as a new dataset."
        )
    now = utcnow()
    dataset.updated_at = now
    if problem is None:
        if upload_key != dataset.storage_path:
            try:
                store.move(upload_key, dataset.storage_path)
            except StorageError as error:
                raise StorageUnavailable(f"Could not store the uploaded file: {error}") from error
        # Housekeeping may have expired the upload meanwhile (housekeeping.py): then that stands.
        session.add(dataset)
        if not _update_while(session, dataset, (DatasetStatus.UPLOADING,), status=DatasetStatus.VALIDATING):
            if upload_key != dataset.storage_path:
                _remove_if_expired(session, store, dataset)
            raise Conflict(f"This dataset is {dataset.status.value}: {dataset.error_message or 'it changed meanwhile'}")
        return dataset
    dataset.status = DatasetStatus.ERROR
    dataset.error_message = problem
    dataset.training_ready = False
    # No file to download or revalidate: none arrived, or the rejected one is removed below. Should that fail,
    # purged_at is cleared again, so that housekeeping's purge of the deleted dataset still removes the leftover.
    dataset.purged_at = now
    session.add(dataset)
    session.commit()
    if info is not None:
        try:
            store.delete(upload_key)
        except StorageError as error:
            log.warning("could not remove rejected upload %s: %s", upload_key, error)
            dataset.purged_at = None
            session.add(dataset)
            session.commit()
    raise UploadRejected(problem, [FieldProblem("file", problem, "upload_rejected")])


def _remove_if_expired(session: Session, store: ObjectStore, dataset: Dataset) -> None:
    """After this confirm moved the file and lost to housekeeping's expiry (SQLite has no row lock to hold it off),
    remove the file it moved, which the expiry may have looked for too early (an S3 move is a copy, then a delete).
    Only for a dataset the expiry closed (error, its files marked purged): another confirm that won instead is
    validating that very file."""
    session.refresh(dataset)
    if dataset.status != DatasetStatus.ERROR or dataset.purged_at is None:
        return
    try:
        store.delete(dataset.storage_path)
    except StorageError as error:
        log.warning("could not remove the file of expired dataset %s: %s", dataset.id, error)


def list_datasets(
    session: Session,
    user_id: str,
    *,
    status: DatasetStatus | str | None = None,
    search: str | None = None,
    page: int = 1,
    limit: int = DEFAULT_PAGE_LIMIT,
) -> DatasetPage:
    """The user's datasets, newest first. `search` matches names case-insensitively; `%` and `_` match themselves."""
    problems = []
    if not isinstance(page, int) or not 1 <= page <= MAX_PAGE:
        problems.append(FieldProblem("page", f"must be a whole number from 1 to {MAX_PAGE:,}"))
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_LIMIT:
        problems.append(FieldProblem("limit", f"must be a whole number from 1 to {MAX_PAGE_LIMIT}"))
    if status is not None and status not in {s.value for s in DatasetStatus}:
        problems.append(FieldProblem("status", "must be one of " + ", ".join(s.value for s in DatasetStatus)))
    if search is not None and len(search) > 200:
        problems.append(FieldProblem("search", "must be at most 200 characters"))
    if search is not None and _CONTROL.search(search):
        problems.append(FieldProblem("search", "must not contain control characters"))
    if problems:
        raise InvalidInput("Some parameters are not valid.", problems)

    conditions = [Dataset.user_id == user_id, col(Dataset.deleted_at).is_(None)]
    if status is not None:
        conditions.append(Dataset.status == DatasetStatus(status))
    if search and search.strip():
        # On the stored name_key, not ilike: SQLite's folds ASCII letters only ("CAFÉ" missed "café").
        conditions.append(col(Dataset.name_key).like(f"%{_like_literal(name_key(search))}%", escape="\\"))
    total = session.exec(select(sa.func.count()).select_from(Dataset).where(*conditions)).one()
    items = session.exec(
        select(Dataset)
        .where(*conditions)
        # Without the report: a list (polled every 2 s while something is pending) needs the statistics' columns,
        # not the listed issues and samples (up to 3 lines' worth of messages each); `get_dataset` has it.
        .options(orm.defer(Dataset.validation_report))  # type: ignore[arg-type]
        .order_by(col(Dataset.created_at).desc(), col(Dataset.id).desc())
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return DatasetPage(items=list(items), total=total, page=page, limit=limit)


def datasets_named(session: Session, user_id: str, name: str, *, limit: int = 3) -> list[Dataset]:
    """The user's datasets (not deleted) named `name`, ignoring case, surrounding spaces and how the text is encoded
    in Unicode (models.name_key: "STRASSE" finds "Straße", a name pasted in decomposed form the one typed), newest
    first: the upload form says so before a second dataset gets the same name (allowed, but hard to tell apart)."""
    wanted = name.strip()
    if not wanted or len(wanted) > NAME_MAX_CHARS or _CONTROL.search(wanted):
        return []
    return list(
        session.exec(
            select(Dataset)
            .where(Dataset.user_id == user_id, col(Dataset.deleted_at).is_(None), Dataset.name_key == name_key(wanted))
            .order_by(col(Dataset.created_at).desc(), col(Dataset.id).desc())
            .limit(limit)
        )
    )


def _like_literal(text: str) -> str:
    """`text` as a LIKE pattern that matches itself (escape character `\\`)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _listed_status(session: Session, storage_path: str) -> DatasetStatus | None:
    """The status of the dataset stored at `storage_path`, None when there is none or it is deleted: what a signed
    storage link, which names a key and no user, may still do is decided by it."""
    return session.exec(
        select(Dataset.status).where(Dataset.storage_path == storage_path, col(Dataset.deleted_at).is_(None))
    ).first()


def upload_allowed(session: Session, upload_key: str) -> bool:
    """Whether a signed upload to `upload_key` may still write: only while its dataset waits for the file.

    An upload URL stays valid until it expires; refusing it after confirm keeps stray files out of `incoming/`.
    """
    storage_path = storage_path_for_upload_key(upload_key)
    return storage_path is not None and _listed_status(session, storage_path) == DatasetStatus.UPLOADING


def download_allowed(session: Session, storage_path: str) -> bool:
    """Whether a signed download of `storage_path` may still be served: not once its dataset is deleted, which
    promises that the file "can no longer be downloaded" (a link fetched before lives for its TTL otherwise)."""
    return _listed_status(session, storage_path) is not None


def delete_dataset(session: Session, user_id: str, dataset_id: uuid.UUID | str) -> None:
    """Soft delete: the dataset disappears from every view at once. Its file stays for `deleted_retention_days` (an
    operator can still restore it), then housekeeping removes it from storage; the record stays, for audit."""
    dataset = _owned_dataset(session, user_id, dataset_id, for_update=True)
    now = utcnow()
    dataset.deleted_at = now
    dataset.updated_at = now
    session.add(dataset)
    # Its notifications lead nowhere now ("Dataset not found"): they no longer ask to be read.
    _mark_unread_read(session, user_id, col(Notification.dataset_id) == dataset.id)
    session.commit()


def revalidate_dataset(
    session: Session, store: ObjectStore, user_id: str, dataset_id: uuid.UUID | str, fmt: str | None = None
) -> Dataset:
    """Queue a finished dataset (ready or error) for a fresh validation: after the rules changed, or as another
    format (`fmt`), when its report found the file to be in another format than the one chosen at upload (the
    `wrong_format` suggestion), so that fixing the choice does not take a new upload."""
    if fmt is not None and fmt not in DATASET_FORMATS:
        raise InvalidInput("The format is not one we validate.", [choice_problem("format", DATASET_FORMATS)])
    dataset = _owned_dataset(session, user_id, dataset_id, for_update=True)
    finished = (DatasetStatus.READY, DatasetStatus.ERROR)
    if dataset.status not in finished:
        raise Conflict(f"This dataset is {dataset.status.value}; only a ready or failed dataset can be revalidated.")
    if dataset.purged_at is not None:  # known without asking storage
        raise Conflict(NO_FILE_MESSAGE)
    try:
        info = store.head(dataset.storage_path)
    except StorageError as error:
        raise StorageUnavailable(f"Could not check the stored file: {error}") from error
    if info is None:
        raise Conflict(NO_FILE_MESSAGE)
    values: dict[str, Any] = dict.fromkeys(_VALIDATION_RESULTS)
    values.update(training_ready=False, attempts=0, status=DatasetStatus.VALIDATING)
    if fmt is not None:
        values["format"] = fmt
    # Two revalidations (as two formats, say) must not both pass, one queued as the format the other then writes.
    if not _update_while(session, dataset, finished, **values):
        raise Conflict(f"This dataset is {dataset.status.value}; only a ready or failed dataset can be revalidated.")
    return dataset


def _update_while(session: Session, dataset: Dataset, statuses: tuple[DatasetStatus, ...], **values: Any) -> bool:
    """Write `values` (and updated_at) to `dataset` in one UPDATE that applies only while its status is still one of
    `statuses`, what the caller checked it to be: on SQLite the row lock of `_owned_dataset` is a no-op, and another
    request or housekeeping may have moved it on meanwhile. Commits and refreshes `dataset`; False when it had moved
    (nothing written, the caller's pending changes dropped)."""
    changed = session.execute(
        sa.update(Dataset)
        .where(col(Dataset.id) == dataset.id, col(Dataset.status).in_(statuses))
        .values(**values, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        session.rollback()
        session.refresh(dataset)
        return False
    session.commit()
    session.refresh(dataset)
    return True


# What a validation wrote, cleared when the dataset is queued again.
_VALIDATION_RESULTS = (
    *STATISTIC_COLUMNS,
    "error_count",
    "warning_count",
    "validated_at",
    "validation_report",
    "error_message",
    "lease_owner",
    "lease_expires_at",
)


def download_url(session: Session, store: ObjectStore, user_id: str, dataset_id: uuid.UUID | str) -> str:
    """A fresh expiring URL for the dataset's file; never stored."""
    dataset = _owned_dataset(session, user_id, dataset_id)
    if dataset.status == DatasetStatus.UPLOADING:
        raise Conflict("The file has not been uploaded yet.")
    if dataset.purged_at is not None:
        raise Conflict(NO_FILE_MESSAGE)
    try:
        if store.head(dataset.storage_path) is None:
            raise Conflict(NO_FILE_MESSAGE)
        return store.download_url(dataset.storage_path, dataset.file_name)
    except StorageError as error:
        raise StorageUnavailable(f"Could not prepare the download: {error}") from error


def issue_excerpts(
    session: Session, store: ObjectStore, settings: Settings, user_id: str, dataset_id: uuid.UUID | str
) -> dict[tuple[int, str, int], Excerpt]:
    """The text around each column or byte the dataset's listed issues name (excerpts.py), keyed by (line,
    "column" or "offset", position): read from the stored file, only up to the last line needed."""
    dataset = _owned_dataset(session, user_id, dataset_id)
    if not dataset.file_stored:
        raise Conflict(NO_FILE_MESSAGE)
    wanted = excerpt_positions(dataset.validation_report or {})
    if not wanted:
        return {}
    try:
        stream = store.open_stream(dataset.storage_path)
        try:
            return read_excerpts(stream.chunks, wanted, ValidationLimits.from_settings(settings))
        finally:
            close_chunks(stream.chunks)  # read only up to the last line needed: the rest is let go
    except ObjectNotFound:
        raise Conflict(NO_FILE_MESSAGE) from None
    except StorageError as error:
        raise StorageUnavailable(f"Could not read the file: {error}") from error


def list_notifications(
    session: Session, user_id: str, *, unread_only: bool = False, limit: int = DEFAULT_PAGE_LIMIT
) -> list[Notification]:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidInput(
            "Some parameters are not valid.", [FieldProblem("limit", f"must be from 1 to {MAX_PAGE_LIMIT}")]
        )
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(col(Notification.read_at).is_(None))
    query = query.order_by(col(Notification.created_at).desc(), col(Notification.id).desc()).limit(limit)
    return list(session.exec(query).all())


def listed_dataset_ids(session: Session, user_id: str, dataset_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `dataset_ids` are the user's and not deleted: a notification of a deleted one links nowhere."""
    wanted = set(dataset_ids)
    if not wanted:
        return set()
    rows = session.exec(
        select(Dataset.id).where(
            col(Dataset.id).in_(wanted), Dataset.user_id == user_id, col(Dataset.deleted_at).is_(None)
        )
    ).all()
    return set(rows)


def unread_notification_count(session: Session, user_id: str) -> int:
    return session.exec(
        select(sa.func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, col(Notification.read_at).is_(None))
    ).one()


def mark_notification_read(session: Session, user_id: str, notification_id: uuid.UUID | str) -> Notification:
    notification = session.exec(
        select(Notification).where(
            Notification.id == _parse_id(notification_id, "Notification"), Notification.user_id == user_id
        )
    ).first()
    if notification is None:
        raise NotFound("Notification not found.")
    if notification.read_at is None:
        notification.read_at = utcnow()
        session.add(notification)
        session.commit()
    return notification


def mark_all_notifications_read(session: Session, user_id: str) -> int:
    """Mark every unread notification of the user read; returns how many were unread."""
    count = _mark_unread_read(session, user_id)
    session.commit()
    return count


def mark_dataset_notifications_read(
    session: Session, user_id: str, dataset_id: uuid.UUID | str, *, created_before: datetime | None = None
) -> int:
    """Mark the user's unread notifications about one dataset read: opening the dataset's result is reading them,
    and the unread count should not keep asking for it. `created_before` leaves alone what arrived after the page
    read the dataset (the result of a validation it did not show). Returns how many were unread."""
    conditions = [col(Notification.dataset_id) == _parse_id(dataset_id, "Dataset")]
    if created_before is not None:
        conditions.append(col(Notification.created_at) <= created_before)
    count = _mark_unread_read(session, user_id, *conditions)
    session.commit()
    return count


def _mark_unread_read(session: Session, user_id: str, *where: sa.ColumnElement[bool]) -> int:
    """Mark the user's unread notifications that meet `where` read, in the caller's transaction."""
    now: datetime = utcnow()
    result = session.execute(
        sa.update(Notification)
        .where(col(Notification.user_id) == user_id, col(Notification.read_at).is_(None), *where)
        .values(read_at=now)
    )
    return result.rowcount
