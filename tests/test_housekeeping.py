"""Housekeeping: uploads never completed become errors once nothing can complete them, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from lora_core import service
from lora_core.errors import Conflict
from lora_core.housekeeping import UPLOAD_GRACE, expire_abandoned_uploads
from lora_core.models import Dataset, DatasetStatus, Notification, NotificationKind, utcnow
from lora_core.settings import Settings
from lora_core.storage import LocalStore, make_store
from lora_core.sweep import run_housekeeping

USER = "alice"
LINE = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}\n'


@pytest.fixture
def store(settings: Settings) -> LocalStore:
    store = make_store(settings)
    assert isinstance(store, LocalStore)
    return store


def create(engine: Engine, store: LocalStore, settings: Settings, *, age: timedelta, name: str = "set") -> Dataset:
    """A dataset created `age` ago and still `uploading`."""
    data = {"name": name, "file_name": "data.jsonl", "file_size": 10 * len(LINE), "format": "openai_chat"}
    with Session(engine, expire_on_commit=False) as session:
        dataset = service.create_dataset(session, store, settings, USER, data).dataset
    with engine.begin() as connection:
        connection.execute(
            sa.update(Dataset.__table__).where(Dataset.__table__.c.id == dataset.id).values(created_at=utcnow() - age)
        )
    return dataset


def load(engine: Engine, dataset_id: uuid.UUID) -> Dataset:
    with Session(engine) as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        return dataset


def notifications(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.exec(select(Notification)).all())


def expired_age(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.upload_url_ttl_seconds) + UPLOAD_GRACE + timedelta(minutes=1)


def test_an_upload_never_completed_becomes_an_error_and_its_partial_file_is_removed(engine, store, settings):
    abandoned = create(engine, store, settings, age=expired_age(settings), name="abandoned")
    upload_key = service.upload_key_for(abandoned.storage_path)
    store.put_stream(upload_key, [LINE * 3], max_bytes=len(LINE) * 3)  # a part of the declared 10 lines
    # Still within the grace period: an upload that started before its URL expired may be completing.
    in_grace = create(engine, store, settings, age=timedelta(seconds=settings.upload_url_ttl_seconds + 60))

    assert expire_abandoned_uploads(engine, store, settings) == 1

    dataset = load(engine, abandoned.id)
    assert dataset.status == DatasetStatus.ERROR and not dataset.training_ready
    assert dataset.error_message is not None and "not completed" in dataset.error_message
    assert "Create the dataset again" in dataset.error_message
    assert store.head(upload_key) is None
    [note] = notifications(engine)
    assert (note.user_id, note.dataset_id, note.kind) == (USER, abandoned.id, NotificationKind.DATASET_FAILED)
    assert note.title == "“abandoned” was not uploaded" and note.message == dataset.error_message
    assert load(engine, in_grace.id).status == DatasetStatus.UPLOADING

    # Once is enough: a second pass (or another process's) finds nothing more to do.
    assert expire_abandoned_uploads(engine, store, settings) == 0
    assert len(notifications(engine)) == 1

    # A confirm that comes too late gets a clear answer.
    with Session(engine) as session, pytest.raises(Conflict, match="already error"):
        service.confirm_upload(session, store, settings, USER, abandoned.id)


def test_only_uploading_datasets_are_expired_and_deleted_ones_are_not_notified(engine, store, settings):
    old = expired_age(settings)
    confirmed = create(engine, store, settings, age=old, name="confirmed")
    key = service.upload_key_for(confirmed.storage_path)
    store.put_stream(key, [LINE * 10], max_bytes=len(LINE) * 10)
    with Session(engine) as session:
        service.confirm_upload(session, store, settings, USER, confirmed.id)
    deleted = create(engine, store, settings, age=old, name="deleted")
    with Session(engine) as session:
        service.delete_dataset(session, USER, deleted.id)

    run_housekeeping(engine, store, settings)  # as the scheduler runs it

    assert load(engine, confirmed.id).status == DatasetStatus.VALIDATING
    assert store.head(confirmed.storage_path) is not None
    assert load(engine, deleted.id).status == DatasetStatus.ERROR
    assert notifications(engine) == []


def test_a_confirm_that_gets_in_first_wins(engine, store, settings):
    """The expiry is conditional on the dataset still uploading when it is written, so a confirm between the
    housekeeping's query and its update is kept."""
    dataset = create(engine, store, settings, age=expired_age(settings))
    key = service.upload_key_for(dataset.storage_path)
    store.put_stream(key, [LINE * 10], max_bytes=len(LINE) * 10)
    real_connect = engine.connect

    def query_then_confirm() -> sa.Connection:
        """The housekeeping's first connection (its query); the owner's confirm runs as soon as it is closed."""
        engine.connect = real_connect  # type: ignore[method-assign]  # one shot: later connections are plain
        connection = real_connect()
        real_close = connection.close

        def close() -> None:
            real_close()
            with Session(engine) as session:
                service.confirm_upload(session, store, settings, USER, dataset.id)

        connection.close = close  # type: ignore[method-assign]
        return connection

    engine.connect = query_then_confirm  # type: ignore[method-assign]
    try:
        assert expire_abandoned_uploads(engine, store, settings) == 0
    finally:
        engine.connect = real_connect  # type: ignore[method-assign]
    assert load(engine, dataset.id).status == DatasetStatus.VALIDATING
    assert store.head(dataset.storage_path) is not None
    assert notifications(engine) == []


def test_a_housekeeping_failure_is_logged_not_raised(engine, store, settings, monkeypatch, caplog):
    def broken(*_args: object) -> int:
        raise RuntimeError("database went away")

    monkeypatch.setattr("lora_core.sweep.expire_abandoned_uploads", broken)
    run_housekeeping(engine, store, settings)
    assert "housekeeping failed" in caplog.text
