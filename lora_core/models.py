"""Database tables. Times are timezone-aware UTC; statuses are strings checked by the database, not native enums."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Deterministic constraint names, so Alembic can alter them on SQLite (batch mode) and PostgreSQL alike.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """`moment` with its time zone: SQLite hands back naive datetimes, which are UTC here."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def name_key(name: str) -> str:
    """What two names that mean the same share: composed Unicode, case folded ("Straße" and "STRASSE" alike), no
    surrounding spaces. Neither database folds case like this (SQLite folds ASCII letters only), so it is stored."""
    return unicodedata.normalize("NFC", name.strip()).casefold()


class DatasetStatus(StrEnum):
    UPLOADING = "uploading"
    VALIDATING = "validating"
    READY = "ready"
    ERROR = "error"


class NotificationKind(StrEnum):
    DATASET_READY = "dataset_ready"
    DATASET_FAILED = "dataset_failed"


def _status_type(enum: type[StrEnum], name: str) -> sa.Enum:
    # native_enum=False: a VARCHAR plus CHECK, which Alembic can extend later (a native PG enum it cannot).
    return sa.Enum(
        enum,
        name=name,
        native_enum=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        create_constraint=True,
    )


class Dataset(SQLModel, table=True):
    """One uploaded dataset: its file in object storage (path only, never a URL) and its validation outcome."""

    __tablename__ = "datasets"
    __table_args__ = (
        sa.Index("ix_datasets_user_status", "user_id", "status"),
        sa.Index("ix_datasets_user_created", "user_id", "created_at"),
        sa.Index("ix_datasets_status_lease", "status", "lease_expires_at"),
        # Housekeeping looks for files to purge every minute: deleted rows only, not the whole table.
        sa.Index("ix_datasets_deleted", "deleted_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(max_length=255)
    name: str = Field(max_length=200)
    # name_key(name), set on every write (below): what the list's search and the same-name check compare.
    name_key: str = Field(default="", sa_type=sa.Text, sa_column_kwargs={"server_default": ""})
    description: str | None = Field(default=None, sa_type=sa.Text)
    format: str = Field(max_length=32)
    status: DatasetStatus = Field(
        default=DatasetStatus.UPLOADING, sa_type=_status_type(DatasetStatus, "dataset_status")
    )
    storage_bucket: str = Field(max_length=255)
    storage_path: str = Field(max_length=1024, sa_column_kwargs={"unique": True})
    file_name: str = Field(max_length=255)
    file_size: int = Field(sa_type=sa.BigInteger)

    # Statistics of FORMAT.md, copied out of the report so lists and sorting need no JSON.
    total_examples: int | None = Field(default=None, sa_type=sa.BigInteger)
    total_conversations: int | None = Field(default=None, sa_type=sa.BigInteger)
    total_training_pairs: int | None = Field(default=None, sa_type=sa.BigInteger)
    total_turns: int | None = Field(default=None, sa_type=sa.BigInteger)
    total_tokens: int | None = Field(default=None, sa_type=sa.BigInteger)
    total_target_tokens: int | None = Field(default=None, sa_type=sa.BigInteger)
    avg_turns_per_conversation: float | None = None
    avg_tokens_per_pair: float | None = None
    error_count: int | None = None
    warning_count: int | None = None
    training_ready: bool = False
    validated_at: datetime | None = None
    validation_report: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    error_message: str | None = Field(default=None, sa_type=sa.Text)

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = None
    # When we removed the file from storage, or found none to keep: housekeeping purged it (a deleted dataset, after
    # settings.deleted_retention_days), or the upload was rejected at confirm or abandoned (what arrived removed).
    # Download and revalidate are not offered then. (A file the sweep finds missing is not marked: it may come back,
    # from a backup or once a wrong bucket setting is fixed, and revalidate asks storage.)
    purged_at: datetime | None = None

    # The sweep's claim: who holds it, until when, and how many claims there have been.
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=255)
    lease_expires_at: datetime | None = None

    @property
    def file_stored(self) -> bool:
        """Whether the dataset has a file in storage to download or validate again (see `purged_at`)."""
        return self.status != DatasetStatus.UPLOADING and self.purged_at is None


@sa.event.listens_for(Dataset, "before_insert")
@sa.event.listens_for(Dataset, "before_update")
def _set_name_key(_mapper: Any, _connection: Any, dataset: Dataset) -> None:
    dataset.name_key = name_key(dataset.name)


# The statistics columns of `Dataset`, named as in the report's `stats` (FORMAT.md), which fills them.
STATISTIC_COLUMNS: tuple[str, ...] = (
    "total_examples",
    "total_conversations",
    "total_training_pairs",
    "total_turns",
    "total_tokens",
    "total_target_tokens",
    "avg_turns_per_conversation",
    "avg_tokens_per_pair",
)


class Notification(SQLModel, table=True):
    """A message to a dataset's owner, e.g. that validation finished."""

    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_user_created", "user_id", "created_at"),
        sa.Index("ix_notifications_user_read", "user_id", "read_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(max_length=255)
    dataset_id: uuid.UUID | None = Field(default=None, foreign_key="datasets.id", ondelete="SET NULL")
    kind: NotificationKind = Field(sa_type=_status_type(NotificationKind, "notification_kind"))
    title: str = Field(max_length=300)
    message: str = Field(sa_type=sa.Text)
    link: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    read_at: datetime | None = None


def notify_owner(
    connection: sa.Connection,
    user_id: str,
    dataset_id: uuid.UUID,
    kind: NotificationKind,
    title: str,
    message: str,
    now: datetime,
) -> None:
    """Insert a notification about a dataset for its owner, in the caller's transaction (beside the dataset's
    change that it reports, so the two are written together or not at all)."""
    connection.execute(
        sa.insert(Notification.__table__).values(
            id=uuid.uuid4(),
            user_id=user_id,
            dataset_id=dataset_id,
            kind=kind.value,
            title=title[:300],
            message=message,
            link=f"/dataset?id={dataset_id}",
            created_at=now,
        )
    )


class ApiToken(SQLModel, table=True):
    """A personal API token: only its SHA-256 is stored; the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (sa.Index("ix_api_tokens_user", "user_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(max_length=255)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    token_prefix: str = Field(max_length=16, description="The first characters, so a user can tell tokens apart.")
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
