"""Housekeeping beside the sweep: uploads that were never completed, and the files of deleted datasets.

A dataset is created in `uploading` and waits for its file and a confirm. When neither comes (the browser tab was
closed, the upload failed, a script stopped), it would stay `uploading` for good: listed with a blue badge that
never changes, keeping the datasets page refreshing itself, with whatever part of the file arrived left in storage.
Once its upload URL has expired, and a grace period has passed for an upload that started just before then (S3
checks a presigned URL when the request starts), nothing can complete it: it becomes `error`, saying why, its
partial upload is removed, and its owner is told.

Deleting a dataset hides it at once, and keeps its file for `settings.deleted_retention_days` (an operator can still
restore it by clearing `deleted_at`); then the file is removed from storage and `purged_at` set. The record stays,
for audit. Without this, every file ever deleted would be stored, and paid for, for good.

Every step is safe with several processes doing it at once: the change is one `UPDATE … WHERE status =
'uploading'`, so a confirm that gets in first wins, and removing an object twice is not an error.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lora_core.models import Dataset, DatasetStatus, NotificationKind, notify_owner, utcnow
from lora_core.service import upload_key_for
from lora_core.settings import Settings
from lora_core.storage import ObjectStore, StorageError

log = logging.getLogger(__name__)

# How long after its upload URL expired an upload that started in time may still be completing.
UPLOAD_GRACE = timedelta(hours=1)
# Datasets handled per statement, so one pass never holds many rows (the rest wait for the next pass).
BATCH = 100
_datasets = Dataset.__table__


def abandoned_upload_message(settings: Settings) -> str:
    hours = (timedelta(seconds=settings.upload_url_ttl_seconds) + UPLOAD_GRACE) / timedelta(hours=1)
    return (
        f"The upload was not completed: the file was not confirmed within {hours:g} hours of creating the dataset, "
        "and its upload link has expired. Create the dataset again to upload the file."
    )


def expire_abandoned_uploads(
    engine: Engine, store: ObjectStore, settings: Settings, now: datetime | None = None
) -> int:
    """Turn the datasets still `uploading` past their upload URL's expiry and UPLOAD_GRACE into `error`, remove
    what was uploaded of them (at the upload's key or, moved by an unrecorded confirm, at the dataset's path), and
    notify their owners; returns how many."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.upload_url_ttl_seconds) - UPLOAD_GRACE
    message = abandoned_upload_message(settings)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                _datasets.c.id,
                _datasets.c.user_id,
                _datasets.c.name,
                _datasets.c.storage_path,
                _datasets.c.deleted_at,
            )
            .where(_datasets.c.status == DatasetStatus.UPLOADING.value, _datasets.c.created_at < cutoff)
            .order_by(_datasets.c.created_at)
            .limit(BATCH)
        ).all()
    expired = 0
    for dataset_id, user_id, name, storage_path, deleted_at in rows:
        with engine.begin() as connection:
            result = connection.execute(
                sa.update(_datasets)
                .where(_datasets.c.id == dataset_id, _datasets.c.status == DatasetStatus.UPLOADING.value)
                .values(
                    status=DatasetStatus.ERROR.value,
                    training_ready=False,
                    error_message=message,
                    updated_at=now,
                    purged_at=now,  # what was uploaded of it is removed below (cleared again if that fails)
                )
            )
            if result.rowcount != 1:  # confirmed (or expired by another process) meanwhile
                continue
            if deleted_at is None:  # a dataset its owner deleted is not worth a message
                title = f"“{name}” was not uploaded"
                notify_owner(connection, user_id, dataset_id, NotificationKind.DATASET_FAILED, title, message, now)
        expired += 1
        try:
            # The upload's key, then the dataset's own path: a confirm that moved the file there but could not
            # record it (or lost to this expiry on SQLite, after its move) left it there, and nothing else would
            # remove it. In this order, a move racing these deletes cannot leave the file behind either.
            store.delete(upload_key_for(storage_path))
            store.delete(storage_path)
        except StorageError as error:  # the record already says why; the leftover is only wasted space
            log.warning("could not remove the abandoned upload of dataset %s: %s", dataset_id, error)
            _unmark_purged(engine, dataset_id, now)  # so that the purge of the deleted dataset removes it later
    if expired:
        log.info("%d abandoned upload(s) marked as errors", expired)
    return expired


def purge_deleted_files(engine: Engine, store: ObjectStore, settings: Settings, now: datetime | None = None) -> int:
    """Remove from storage the files of datasets deleted more than `deleted_retention_days` ago (and any upload
    left beside them), and mark them purged; returns how many.

    Each dataset is marked first, by one conditional UPDATE (still deleted, past the retention, not purged, under no
    live lease), and only then is its file removed: a dataset an operator restores meanwhile, or another process
    purges, is left alone. A file that cannot be removed now (storage down) is unmarked again, for the next pass.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.deleted_retention_days)
    purgeable = sa.and_(
        _datasets.c.deleted_at < cutoff,
        _datasets.c.purged_at.is_(None),
        sa.or_(_datasets.c.lease_expires_at.is_(None), _datasets.c.lease_expires_at < now),
    )
    with engine.connect() as connection:
        candidates = (
            connection.execute(sa.select(_datasets.c.id).where(purgeable).order_by(_datasets.c.deleted_at).limit(BATCH))
            .scalars()
            .all()
        )
    purged = 0
    for dataset_id in candidates:
        with engine.begin() as connection:
            storage_path = connection.execute(
                sa.update(_datasets)
                .where(_datasets.c.id == dataset_id, purgeable)
                .values(purged_at=now)
                .returning(_datasets.c.storage_path)
            ).scalar()
        if storage_path is None:  # restored, or purged by another process, meanwhile
            continue
        try:
            store.delete(storage_path)
            store.delete(upload_key_for(storage_path))
        except StorageError as error:
            log.warning("could not remove the file of deleted dataset %s (tried again later): %s", dataset_id, error)
            _unmark_purged(engine, dataset_id, now)
            continue
        purged += 1
    if purged:
        log.info("%d deleted dataset file(s) removed from storage", purged)
    return purged


def _unmark_purged(engine: Engine, dataset_id: uuid.UUID, marked_at: datetime) -> None:
    """Take back the purged_at this pass set (`marked_at`) when the file could not be removed after all."""
    with engine.begin() as connection:
        connection.execute(
            sa.update(_datasets)
            .where(_datasets.c.id == dataset_id, _datasets.c.purged_at == marked_at)
            .values(purged_at=None)
        )
