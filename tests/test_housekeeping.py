"""Housekeeping, on SQLite and PostgreSQL: uploads never completed become errors once nothing can complete them, and the
files of deleted datasets leave storage after the retention period."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from lora_core import service
from lora_core import sweep as sweep_module
from lora_core.errors import Conflict
from lora_core.housekeeping import UPLOAD_GRACE, expire_abandoned_uploads, purge_deleted_files
from lora_core.models import Dataset, DatasetStatus, Notification, NotificationKind, utcnow
from lora_core.settings import Settings
from lora_core.storage import LocalStore, StorageError
from lora_core.sweep import (
    HOUSEKEEPING_INTERVAL_SECONDS,
    HOUSEKEEPING_JOB_ID,
    Sweeper,
    run_housekeeping,
    run_worker,
    start_sweep,
    stop_sweep,
)
from tests.test_sweep import load

USER = "alice"
LINE = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}\n'


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


def notifications(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.exec(select(Notification)).all())


@contextmanager
def after_the_first_query(engine: Engine, action: Callable[[], None]) -> Iterator[None]:
    """Run `action` as soon as the first connection `engine` hands out meanwhile is closed: between a housekeeping
    pass's query and its updates, where another process (or person) could get in."""
    real_connect = engine.connect

    def connect_once() -> sa.Connection:
        engine.connect = real_connect  # type: ignore[method-assign]  # one shot: later connections are plain
        connection = real_connect()
        real_close = connection.close

        def close() -> None:
            real_close()
            action()

        connection.close = close  # type: ignore[method-assign]
        return connection

    engine.connect = connect_once  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine.connect = real_connect  # type: ignore[method-assign]


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
    assert dataset.purged_at is not None and not dataset.file_stored  # nothing to download or revalidate
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

    def confirm() -> None:
        with Session(engine) as session:
            service.confirm_upload(session, store, settings, USER, dataset.id)

    with after_the_first_query(engine, confirm):
        assert expire_abandoned_uploads(engine, store, settings) == 0
    assert load(engine, dataset.id).status == DatasetStatus.VALIDATING
    assert store.head(dataset.storage_path) is not None
    assert notifications(engine) == []


def test_an_abandoned_upload_that_could_not_be_removed_is_left_for_the_purge(engine, store, settings, monkeypatch):
    """purged_at says the bytes are gone; when removing them fails it is cleared again, so that the purge of the
    dataset, once deleted, still removes them."""
    abandoned = create(engine, store, settings, age=expired_age(settings), name="abandoned")
    upload_key = service.upload_key_for(abandoned.storage_path)
    store.put_stream(upload_key, [LINE * 3], max_bytes=len(LINE) * 3)

    def refuse(_key: str) -> None:
        raise StorageError("storage is down")

    monkeypatch.setattr(store, "delete", refuse)
    assert expire_abandoned_uploads(engine, store, settings) == 1
    dataset = load(engine, abandoned.id)
    assert dataset.status == DatasetStatus.ERROR and dataset.purged_at is None
    assert store.head(upload_key) is not None


def test_a_housekeeping_failure_is_logged_not_raised(engine, store, settings, monkeypatch, caplog):
    def broken(*_args: object) -> int:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("database went away"))

    monkeypatch.setattr("lora_core.sweep.expire_abandoned_uploads", broken)
    run_housekeeping(engine, store, settings)
    assert "housekeeping failed" in caplog.text

    def bug(*_args: object) -> int:
        raise TypeError("a bug")

    monkeypatch.setattr("lora_core.sweep.expire_abandoned_uploads", bug)
    with pytest.raises(TypeError):  # not swallowed: the scheduler logs it, the worker stops on it
        run_housekeeping(engine, store, settings)


def uploaded(engine: Engine, store: LocalStore, settings: Settings, name: str) -> Dataset:
    """A dataset whose file is stored (confirmed, validating)."""
    dataset = create(engine, store, settings, age=timedelta(0), name=name)
    store.put_stream(service.upload_key_for(dataset.storage_path), [LINE * 10], max_bytes=len(LINE) * 10)
    with Session(engine) as session:
        service.confirm_upload(session, store, settings, USER, dataset.id)
    return dataset


def deleted_ago(engine: Engine, dataset: Dataset, age: timedelta) -> None:
    with Session(engine) as session:
        service.delete_dataset(session, USER, dataset.id)
    with engine.begin() as connection:
        connection.execute(
            sa.update(Dataset.__table__).where(Dataset.__table__.c.id == dataset.id).values(deleted_at=utcnow() - age)
        )


def test_the_files_of_datasets_deleted_past_the_retention_are_removed_and_the_records_kept(engine, store, settings):
    retention = timedelta(days=settings.deleted_retention_days)
    old = uploaded(engine, store, settings, "old")
    deleted_ago(engine, old, retention + timedelta(hours=1))
    leftover = service.upload_key_for(old.storage_path)
    store.put_stream(leftover, [LINE], max_bytes=len(LINE))  # a later PUT to its upload URL
    recent = uploaded(engine, store, settings, "recent")
    deleted_ago(engine, recent, retention - timedelta(hours=1))
    kept = uploaded(engine, store, settings, "kept")

    assert purge_deleted_files(engine, store, settings) == 1

    assert store.head(old.storage_path) is None and store.head(leftover) is None
    purged = load(engine, old.id)
    assert purged.purged_at is not None and purged.deleted_at is not None  # the record stays, for audit
    assert store.head(recent.storage_path) is not None and load(engine, recent.id).purged_at is None
    assert store.head(kept.storage_path) is not None and load(engine, kept.id).purged_at is None
    assert purge_deleted_files(engine, store, settings) == 0  # done once


def test_a_file_that_cannot_be_removed_now_is_tried_again(engine, store, settings, monkeypatch):
    dataset = uploaded(engine, store, settings, "old")
    deleted_ago(engine, dataset, timedelta(days=settings.deleted_retention_days + 1))
    real_delete = store.delete

    def storage_down(key: str) -> None:
        raise StorageError("storage is down")

    monkeypatch.setattr(store, "delete", storage_down)
    run_housekeeping(engine, store, settings)  # as the scheduler runs it: logged, not raised
    assert load(engine, dataset.id).purged_at is None and store.head(dataset.storage_path) is not None

    monkeypatch.setattr(store, "delete", real_delete)
    assert purge_deleted_files(engine, store, settings) == 1
    assert load(engine, dataset.id).purged_at is not None and store.head(dataset.storage_path) is None


def test_a_deleted_dataset_under_a_live_lease_waits(engine, store, settings):
    """Deleted while a sweep validates it: its file is not pulled from under that validation."""
    dataset = uploaded(engine, store, settings, "busy")
    assert Sweeper(engine, store, settings, owner="busy").claim_next() is not None
    deleted_ago(engine, dataset, timedelta(days=settings.deleted_retention_days + 1))
    assert purge_deleted_files(engine, store, settings) == 0
    assert store.head(dataset.storage_path) is not None


def test_an_expiry_and_a_confirm_at_the_same_moment_have_one_winner(engine, store, settings, monkeypatch):
    """Housekeeping runs while a late confirm is moving the file. On PostgreSQL the confirm's row lock holds it off
    (the confirm wins); on SQLite, which has no row locks, the expiry wins and the confirm is refused. Never both:
    a dataset `validating` with a "not uploaded" notification, then "ready" too."""
    dataset = create(engine, store, settings, age=expired_age(settings))
    store.put_stream(service.upload_key_for(dataset.storage_path), [LINE * 10], max_bytes=len(LINE) * 10)
    real_move = store.move
    housekeeping: list[threading.Thread] = []

    def move_while_housekeeping_runs(source: str, target: str) -> None:
        real_move(source, target)
        thread = threading.Thread(target=expire_abandoned_uploads, args=(engine, store, settings))
        thread.start()
        thread.join(2)  # it finishes now (SQLite) or waits for the confirm's transaction (PostgreSQL)
        housekeeping.append(thread)

    monkeypatch.setattr(store, "move", move_while_housekeeping_runs)
    refused = None
    with Session(engine) as session:
        try:
            service.confirm_upload(session, store, settings, USER, dataset.id)
        except Conflict as conflict:
            refused = conflict
    housekeeping[0].join(10)
    Sweeper(engine, store, settings).run_once()

    final = load(engine, dataset.id)
    titles = [note.title for note in notifications(engine)]
    if refused is None:
        assert final.status == DatasetStatus.READY and titles == ["“set” is ready for training"]
    else:
        assert "not completed" in str(refused)
        assert final.status == DatasetStatus.ERROR and titles == ["“set” was not uploaded"]
        # The file the confirm had moved is not left in storage, where no purge would look for it.
        assert store.head(dataset.storage_path) is None
        assert store.head(service.upload_key_for(dataset.storage_path)) is None


def test_a_file_moved_by_a_confirm_that_was_not_recorded_is_removed_on_expiry(engine, store, settings):
    """A confirm that moved the file to the dataset's path and then failed to record it (the connection dropped)
    left a dataset `uploading` with its file at storage_path; the expiry removed only the upload's key."""
    dataset = create(engine, store, settings, age=expired_age(settings))
    store.put_stream(dataset.storage_path, [LINE * 10], max_bytes=len(LINE) * 10)  # where the move put it
    assert expire_abandoned_uploads(engine, store, settings) == 1
    assert load(engine, dataset.id).status == DatasetStatus.ERROR
    assert store.head(dataset.storage_path) is None


def test_a_dataset_restored_before_its_purge_keeps_its_file(engine, store, settings):
    """An operator restores a deleted dataset (clears deleted_at) between the purge's query and its work."""
    dataset = uploaded(engine, store, settings, "restored")
    deleted_ago(engine, dataset, timedelta(days=settings.deleted_retention_days + 1))

    def restore() -> None:
        with engine.begin() as connection:
            connection.execute(
                sa.update(Dataset.__table__).where(Dataset.__table__.c.id == dataset.id).values(deleted_at=None)
            )

    with after_the_first_query(engine, restore):
        assert purge_deleted_files(engine, store, settings) == 0
    assert store.head(dataset.storage_path) is not None and load(engine, dataset.id).purged_at is None


def test_housekeeping_runs_beside_the_sweep_and_in_the_worker(engine, store, settings):
    quiet = settings.model_copy(update={"validation_workers": 0})
    scheduler = start_sweep(engine, store, quiet)
    try:
        job = scheduler.get_job(HOUSEKEEPING_JOB_ID)
        assert job is not None and job.trigger.interval.total_seconds() == HOUSEKEEPING_INTERVAL_SECONDS
        sweeper = sweep_module._sweeper
        assert sweeper is not None
    finally:
        stop_sweep()
    assert sweeper.stopping.is_set()  # stopping the app stops the sweeper between datasets

    abandoned = create(engine, store, settings, age=expired_age(settings))
    assert run_worker(quiet, once=True) == 0  # `python -m lora_core worker --once`
    assert load(engine, abandoned.id).status == DatasetStatus.ERROR


def test_the_retention_has_a_bound_the_database_can_compare() -> None:
    with pytest.raises(ValueError, match="deleted_retention_days"):
        Settings(_env_file=None, deleted_retention_days=1e6)


def test_a_move_that_lands_after_the_expiry_s_deletes_is_cleaned_up_by_the_confirm(
    engine, store, settings, monkeypatch
):
    """An S3 move is a copy then a delete: a large copy can land after the expiry removed both keys (SQLite, which
    has no row lock to hold the expiry off). The confirm, refused, removes what its move left."""
    dataset = create(engine, store, settings, age=expired_age(settings))
    upload_key = service.upload_key_for(dataset.storage_path)
    store.put_stream(upload_key, [LINE * 10], max_bytes=len(LINE) * 10)
    real_move = store.move

    def slow_copy(source: str, target: str) -> None:
        content = b"".join(store.iter_chunks(source))
        thread = threading.Thread(target=expire_abandoned_uploads, args=(engine, store, settings))
        thread.start()
        thread.join(2)  # the expiry runs now (SQLite) or waits for the confirm's transaction (PostgreSQL)
        store.put_stream(target, [content], max_bytes=len(content))  # the copy lands
        store.delete(source)

    monkeypatch.setattr(store, "move", slow_copy)
    with Session(engine) as session:
        try:
            service.confirm_upload(session, store, settings, USER, dataset.id)
        except Conflict:
            assert load(engine, dataset.id).status == DatasetStatus.ERROR
            assert store.head(dataset.storage_path) is None  # not left where no purge looks
        else:  # the row lock made the expiry wait: the confirm won, and its file is needed
            monkeypatch.setattr(store, "move", real_move)
            assert store.head(dataset.storage_path) is not None
