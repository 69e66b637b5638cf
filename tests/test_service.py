"""The use cases, on SQLite and PostgreSQL, with the real local store underneath."""

from __future__ import annotations

import inspect
import re
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from lora_core import service
from lora_core.errors import Conflict, FieldProblem, InvalidInput, NotFound, StorageUnavailable, UploadRejected
from lora_core.models import Dataset, DatasetStatus, Notification, NotificationKind, utcnow
from lora_core.settings import Settings
from lora_core.storage import LocalStore, ObjectStore, StorageError

ALICE = "alice"
BOB = "bob"
CONTENT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


@pytest.fixture
def session(engine: Engine):  # type: ignore[no-untyped-def]
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _create(session, store, settings, user=ALICE, **overrides):  # type: ignore[no-untyped-def]
    data = {"name": "Support chats", "file_name": "chats.jsonl", "file_size": len(CONTENT), "format": "openai_chat"}
    data.update(overrides)
    return service.create_dataset(session, store, settings, user, data)


def _upload(store: LocalStore, dataset: Dataset, content: bytes = CONTENT) -> None:
    """What the browser does with the upload URL: put the file at the dataset's upload key."""
    store.put_stream(service.upload_key_for(dataset.storage_path), [content], max_bytes=10**9)


def _count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(model.__table__)).scalar_one()


class TestCreate:
    @pytest.mark.parametrize("user", ["CORP\\alice", "..", "team/alice", "x" * 255, "tab\there"])
    def test_a_user_id_that_cannot_be_a_folder_still_uploads(self, session, store, settings, user):
        """A domain login (`CORP\\alice`) from a proxy made every create fail with "storage unavailable"."""
        dataset = _create(session, store, settings, user=user).dataset
        folder, dataset_folder, _ = dataset.storage_path.split("/")
        assert folder == service.storage_user_folder(user) and re.fullmatch(r"u-[0-9a-f]{32}", folder)
        assert dataset_folder == str(dataset.id) and dataset.user_id == user
        _upload(store, dataset)
        assert service.confirm_upload(session, store, settings, user, dataset.id).status == DatasetStatus.VALIDATING
        assert service.storage_user_folder(user) == folder  # the same folder for every dataset of the user

    def test_creates_uploading_record_with_safe_path_and_upload_url(self, session, store, settings):
        created = _create(session, store, settings, file_name="My Data (v2).jsonl")
        dataset = created.dataset
        assert dataset.status == DatasetStatus.UPLOADING
        assert dataset.storage_path == f"{ALICE}/{dataset.id}/My_Data_v2_.jsonl"
        assert dataset.file_name == "My Data (v2).jsonl"
        assert dataset.storage_bucket == "local"
        assert created.upload.method == "PUT"
        assert created.upload.url.startswith("http://127.0.0.1:8501/api/storage/upload?token=")
        claims = store.verify_token(created.upload.url.split("token=", 1)[1], "put")
        assert claims.key == f"{ALICE}/{dataset.id}/incoming/My_Data_v2_.jsonl" and claims.size == len(CONTENT)
        stored = session.get(Dataset, dataset.id)
        assert stored is not None and stored.created_at.tzinfo is not None
        assert "http" not in stored.storage_path

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"name": ""}, "name"),
            ({"name": "   "}, "name"),
            ({"name": "x" * 201}, "name"),
            ({"name": "bad\x07name"}, "name"),
            ({"file_name": "../../x"}, "file_name"),
            ({"file_name": "a/b.jsonl"}, "file_name"),
            ({"file_name": "a\\b.jsonl"}, "file_name"),
            ({"file_name": ".."}, "file_name"),
            ({"file_name": "x" * 256}, "file_name"),
            ({"file_name": "é" * 200}, "file_name"),
            ({"file_name": "evil\nname.jsonl"}, "file_name"),
            ({"file_name": "nul\x00.jsonl"}, "file_name"),
            ({"file_size": 0}, "file_size"),
            ({"file_size": -5}, "file_size"),
            ({"file_size": "12"}, "file_size"),
            ({"file_size": 500 * 1024 * 1024 + 1}, "file_size"),
            ({"format": "alpaca"}, "format"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    def test_bad_input_is_a_field_error_and_writes_nothing(self, session, store, settings, engine, overrides, field):
        with pytest.raises(InvalidInput) as caught:
            _create(session, store, settings, **overrides)
        assert field in [problem.field for problem in caught.value.details]
        assert _count(engine, Dataset) == 0
        assert (
            not any(p.is_file() for p in settings.storage_root.rglob("*")) if settings.storage_root.exists() else True
        )

    @pytest.mark.parametrize(
        ("overrides", "problem"),
        [
            (
                {"file_name": "a/b.jsonl"},
                FieldProblem("file_name", "must be a plain file name, without folders ('/' or '\\')", "value_error"),
            ),
            (
                {"name": "   "},
                FieldProblem("name", "Give the dataset a name (it cannot be blank).", "string_too_short"),
            ),
            (
                {"file_name": "長" * 100 + ".jsonl"},
                FieldProblem(
                    "file_name",
                    "must be at most 255 bytes in UTF-8, as file systems allow; this one is 306 (a character outside "
                    "ASCII takes 2–4): rename the file to something shorter",
                    "value_error",
                ),
            ),
            (
                {"file_name": " "},
                FieldProblem(
                    "file_name", "Give the name of the file you will upload (it cannot be blank).", "string_too_short"
                ),
            ),
        ],
    )
    def test_bad_input_is_told_in_our_own_words(self, session, store, settings, overrides, problem):
        with pytest.raises(InvalidInput) as caught:
            _create(session, store, settings, **overrides)
        assert caught.value.details == [problem]
        assert caught.value.message == f"Some fields are not valid: {problem.field}: {problem.message}"

    def test_no_record_when_the_upload_url_cannot_be_made(self, session, settings, engine):
        class BrokenStore(LocalStore):
            def upload_target(self, key, size, content_type="application/octet-stream"):  # type: ignore[no-untyped-def]
                from lora_core.storage import TransientStorageError

                raise TransientStorageError("storage is down")

        broken = BrokenStore(
            settings.storage_root,
            secret_key=b"k",
            public_base_url=settings.public_base_url,
            upload_ttl=60,
            download_ttl=60,
        )
        with pytest.raises(StorageUnavailable):
            _create(session, broken, settings)
        assert _count(engine, Dataset) == 0


class TestConfirm:
    def test_confirm_moves_to_validating(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset)
        confirmed = service.confirm_upload(session, store, settings, ALICE, dataset.id)
        assert confirmed.status == DatasetStatus.VALIDATING
        assert b"".join(store.iter_chunks(dataset.storage_path)) == CONTENT

    @pytest.mark.parametrize("file_name", ["incoming", "incoming.", "INCOMING"])
    def test_a_file_named_like_the_upload_folder_is_confirmed(self, session, store, settings, file_name):
        """`…/incoming` was the folder holding `…/incoming/incoming`: the move onto it failed on every retry."""
        dataset = _create(session, store, settings, file_name=file_name).dataset
        assert dataset.file_name == file_name  # the name shown and downloaded stays the user's
        assert dataset.storage_path.endswith(f"/{file_name.rstrip('.')}_")  # also where names ignore case (macOS)
        _upload(store, dataset)
        assert service.confirm_upload(session, store, settings, ALICE, dataset.id).status == DatasetStatus.VALIDATING
        assert b"".join(store.iter_chunks(dataset.storage_path)) == CONTENT

    def test_a_later_upload_to_the_same_url_cannot_replace_the_confirmed_file(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset)
        service.confirm_upload(session, store, settings, ALICE, dataset.id)
        _upload(store, dataset, CONTENT.replace(b"hello", b"HELLO"))  # the URL is valid for an hour (S3 too)
        assert b"".join(store.iter_chunks(dataset.storage_path)) == CONTENT

    def test_confirm_after_an_interrupted_confirm_finds_the_moved_file(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset)
        store.move(service.upload_key_for(dataset.storage_path), dataset.storage_path)  # moved, not recorded
        confirmed = service.confirm_upload(session, store, settings, ALICE, dataset.id)
        assert confirmed.status == DatasetStatus.VALIDATING

    def test_missing_object_is_an_error_that_says_so(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        with pytest.raises(UploadRejected, match="never uploaded"):
            service.confirm_upload(session, store, settings, ALICE, dataset.id)
        stored = service.get_dataset(session, ALICE, dataset.id)
        assert stored.status == DatasetStatus.ERROR
        assert "never uploaded" in (stored.error_message or "")
        assert not stored.file_stored

    def test_a_rejected_upload_has_no_file_to_download_or_revalidate(self, session, store, settings):
        """The rejected bytes are removed: both say so, in the same words, instead of reaching for the file."""
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset, CONTENT + b"extra")
        with pytest.raises(UploadRejected):
            service.confirm_upload(session, store, settings, ALICE, dataset.id)
        assert service.get_dataset(session, ALICE, dataset.id).purged_at is not None
        with pytest.raises(Conflict, match=re.escape(service.NO_FILE_MESSAGE)):
            service.download_url(session, store, ALICE, dataset.id)
        with pytest.raises(Conflict, match=re.escape(service.NO_FILE_MESSAGE)):
            service.revalidate_dataset(session, store, ALICE, dataset.id)

    def test_a_dataset_without_a_file_is_told_so_without_asking_storage(self, session, store, settings):
        """Known from the record: even with storage down, the answer is the 409 that says why, not a 503."""
        dataset = _create(session, store, settings).dataset
        with pytest.raises(UploadRejected):
            service.confirm_upload(session, store, settings, ALICE, dataset.id)  # never uploaded

        class DownStore(LocalStore):
            def head(self, key):  # type: ignore[no-untyped-def]
                raise StorageError("storage is down")

        down = DownStore(
            settings.storage_root, secret_key=b"k", public_base_url="http://x", upload_ttl=60, download_ttl=60
        )
        for call in (service.revalidate_dataset, service.download_url):
            with pytest.raises(Conflict, match=re.escape(service.NO_FILE_MESSAGE)):
                call(session, down, ALICE, dataset.id)

    def test_a_rejected_upload_that_could_not_be_removed_is_left_for_the_purge(self, session, store, settings):
        """purged_at says the bytes are gone; when removing them fails it stays clear, so that housekeeping's purge
        of the dataset, once deleted, still removes them."""
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset, CONTENT + b"extra")

        class StuckStore(LocalStore):
            def delete(self, key):  # type: ignore[no-untyped-def]
                raise StorageError("storage is down")

        stuck = StuckStore(
            settings.storage_root, secret_key=b"k", public_base_url="http://x", upload_ttl=60, download_ttl=60
        )
        with pytest.raises(UploadRejected):
            service.confirm_upload(session, stuck, settings, ALICE, dataset.id)
        stored = service.get_dataset(session, ALICE, dataset.id)
        assert stored.status == DatasetStatus.ERROR and stored.purged_at is None
        assert store.head(service.upload_key_for(dataset.storage_path)) is not None

    def test_size_mismatch_is_an_error_and_the_object_is_removed(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset, CONTENT + b"extra")
        with pytest.raises(UploadRejected, match=f"{len(CONTENT) + 5} bytes but {len(CONTENT)} bytes were declared"):
            service.confirm_upload(session, store, settings, ALICE, dataset.id)
        assert service.get_dataset(session, ALICE, dataset.id).status == DatasetStatus.ERROR
        assert store.head(service.upload_key_for(dataset.storage_path)) is None
        assert store.head(dataset.storage_path) is None

    def test_object_over_the_limit_is_rejected(self, session, store, settings):
        small = settings.model_copy(update={"max_upload_bytes": 50})
        dataset = _create(session, store, small, file_size=40).dataset
        _upload(store, dataset, b"x" * 60)
        with pytest.raises(UploadRejected, match="over the 50-byte limit"):
            service.confirm_upload(session, store, small, ALICE, dataset.id)
        assert store.head(service.upload_key_for(dataset.storage_path)) is None

    def test_confirm_twice_is_a_conflict(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset)
        service.confirm_upload(session, store, settings, ALICE, dataset.id)
        with pytest.raises(Conflict):
            service.confirm_upload(session, store, settings, ALICE, dataset.id)


class TestListing:
    def _make(self, session, store, settings, names, user=ALICE):  # type: ignore[no-untyped-def]
        return [_create(session, store, settings, user=user, name=name).dataset for name in names]

    def test_newest_first_with_pages(self, session, store, settings):
        made = self._make(session, store, settings, [f"set {i}" for i in range(5)])
        first = service.list_datasets(session, ALICE, page=1, limit=2)
        assert (first.total, first.total_pages, first.page, first.limit) == (5, 3, 1, 2)
        assert [d.name for d in first.items] == ["set 4", "set 3"]
        last = service.list_datasets(session, ALICE, page=3, limit=2)
        assert [d.id for d in last.items] == [made[0].id]
        assert service.list_datasets(session, ALICE, page=4, limit=2).items == []

    def test_search_is_case_insensitive_and_wildcards_match_themselves(self, session, store, settings):
        self._make(session, store, settings, ["Sales_Q1", "SalesXQ1", "100% real", "1000 real", 'it\'s "quoted"'])
        assert [d.name for d in service.list_datasets(session, ALICE, search="sales_").items] == ["Sales_Q1"]
        assert [d.name for d in service.list_datasets(session, ALICE, search="0%").items] == ["100% real"]
        assert [d.name for d in service.list_datasets(session, ALICE, search='"quoted').items] == ['it\'s "quoted"']
        assert service.list_datasets(session, ALICE, search="SALES").total == 2
        assert service.list_datasets(session, ALICE, search="\\").total == 0

    def test_search_folds_case_beyond_ascii_on_every_database(self, session, store, settings):
        """SQLite's LIKE and lower() fold A-Z only: "CAFÉ" missed "café" there (a browser QA run found it)."""
        self._make(session, store, settings, ["naïve café", "Ünïcödé Größe", "Re\u0301sume\u0301 2024", "plain"])

        def found(search: str) -> list[str]:
            return [d.name for d in service.list_datasets(session, ALICE, search=search).items]

        assert found("CAFÉ") == found("café") == found("NAÏVE") == ["naïve café"]
        assert found("ÜNÏ") == found("ünï") == found("GRÖSSE") == found("größe") == ["Ünïcödé Größe"]
        assert found("RÉSUMÉ") == ["Re\u0301sume\u0301 2024"]  # stored decomposed, searched composed
        assert found("ü") == ["Ünïcödé Größe"]

    def test_datasets_named_matches_the_whole_name_ignoring_case_and_spaces(self, session, store, settings):
        sales, _other, percent, older_sales, summer, sophia, street, resume = self._make(
            session,
            store,
            settings,
            ["Sales_Q1", "SalesXQ1", "100% real", "sales_q1", "Été 2024", "ΣΟΦΙΑ", "Straße", "Re\u0301sume\u0301"],
        )
        self._make(session, store, settings, ["Sales_Q1"], user=BOB)
        deleted = self._make(session, store, settings, ["100% real"])[0]
        service.delete_dataset(session, ALICE, deleted.id)

        def named(name: str) -> list[str]:
            return [str(d.id) for d in service.datasets_named(session, ALICE, name)]

        assert named(" SALES_q1 ") == [str(older_sales.id), str(sales.id)]  # newest first
        assert named("100% real") == [str(percent.id)]  # not the deleted one
        assert named("été 2024") == [str(summer.id)] and named("σοφια") == [str(sophia.id)]  # not only ASCII
        assert named("  Sales_Q1\t") == named("sales_q1")  # a pasted tab is trimmed like a space
        assert named("STRASSE") == [str(street.id)]  # ß folds to ss
        assert named("Résumé") == [str(resume.id)]  # stored decomposed (as pasted on macOS), typed composed
        assert named("100_ real") == named("Sales") == named("%") == named("_") == []
        assert named("") == named("   ") == named("Sales_Q1\x00") == named("x" * 201) == []
        assert len(service.datasets_named(session, ALICE, "sales_q1", limit=1)) == 1

    def test_status_filter_and_owner_scope(self, session, store, settings):
        mine = self._make(session, store, settings, ["a", "b"])
        self._make(session, store, settings, ["theirs"], user=BOB)
        _upload(store, mine[0])
        service.confirm_upload(session, store, settings, ALICE, mine[0].id)
        validating = service.list_datasets(session, ALICE, status="validating")
        assert [d.name for d in validating.items] == ["a"]
        assert service.list_datasets(session, ALICE).total == 2
        assert [d.name for d in service.list_datasets(session, BOB).items] == ["theirs"]

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [({"page": 0}, "page"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"status": "done"}, "status")],
    )
    def test_out_of_range_parameters(self, session, kwargs, field):
        with pytest.raises(InvalidInput) as caught:
            service.list_datasets(session, ALICE, **kwargs)
        assert [p.field for p in caught.value.details] == [field]


class TestOwnership:
    def test_another_users_dataset_is_not_found_for_every_action(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        _upload(store, dataset)
        for action in (
            lambda: service.get_dataset(session, BOB, dataset.id),
            lambda: service.confirm_upload(session, store, settings, BOB, dataset.id),
            lambda: service.delete_dataset(session, BOB, dataset.id),
            lambda: service.revalidate_dataset(session, store, BOB, dataset.id),
            lambda: service.download_url(session, store, BOB, dataset.id),
        ):
            with pytest.raises(NotFound):
                action()
        assert service.get_dataset(session, ALICE, dataset.id).status == DatasetStatus.UPLOADING

    @pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "../x", str(uuid.uuid4())])
    def test_malformed_or_unknown_id_is_not_found(self, session, bad_id):
        with pytest.raises(NotFound):
            service.get_dataset(session, ALICE, bad_id)

    def test_soft_delete_hides_but_keeps_the_record(self, session, store, settings, engine):
        dataset = _create(session, store, settings).dataset
        service.delete_dataset(session, ALICE, dataset.id)
        with pytest.raises(NotFound):
            service.get_dataset(session, ALICE, dataset.id)
        assert service.list_datasets(session, ALICE).total == 0
        assert _count(engine, Dataset) == 1


class TestRevalidateAndDownload:
    def _finished(self, session, store, settings, status):  # type: ignore[no-untyped-def]
        dataset = _create(session, store, settings).dataset
        store.put_stream(dataset.storage_path, [CONTENT], max_bytes=10**9)  # where confirm leaves the file
        row = session.get(Dataset, dataset.id)
        row.status = status
        row.total_training_pairs = 1
        row.validation_report = {"valid": True}
        row.attempts = 2
        session.add(row)
        session.commit()
        return row

    def test_revalidate_resets_results_and_queues(self, session, store, settings):
        dataset = self._finished(session, store, settings, DatasetStatus.READY)
        again = service.revalidate_dataset(session, store, ALICE, dataset.id)
        assert again.status == DatasetStatus.VALIDATING
        assert again.total_training_pairs is None and again.validation_report is None and again.attempts == 0

    def test_revalidate_as_another_format_keeps_that_format(self, session, store, settings):
        dataset = self._finished(session, store, settings, DatasetStatus.ERROR)
        again = service.revalidate_dataset(session, store, ALICE, dataset.id, "brightrun_lora_v3")
        assert (again.status, again.format) == (DatasetStatus.VALIDATING, "brightrun_lora_v3")

    def test_revalidate_as_an_unknown_format_changes_nothing(self, session, store, settings):
        dataset = self._finished(session, store, settings, DatasetStatus.READY)
        with pytest.raises(InvalidInput) as raised:
            service.revalidate_dataset(session, store, ALICE, dataset.id, "alpaca")
        assert raised.value.details[0].field == "format"
        assert "brightrun_lora_v4, brightrun_lora_v3, openai_chat" in raised.value.details[0].message
        stored = service.get_dataset(session, ALICE, dataset.id)
        assert (stored.status, stored.format) == (DatasetStatus.READY, dataset.format)

    def test_a_revalidation_in_between_is_never_overwritten(self, session, store, settings, engine):
        """Another revalidation (as another format) tries to queue the dataset between this one's checks and its
        write. PostgreSQL's row lock keeps it waiting (here: its lock timeout), and this one goes through; on SQLite
        the lock is a no-op, the other one wins, and this one is refused rather than overwrite it."""
        dataset = self._finished(session, store, settings, DatasetStatus.ERROR)
        postgres = engine.dialect.name == "postgresql"
        blocked: list[bool] = []

        class RacingStore(LocalStore):
            def head(self, key):  # type: ignore[no-untyped-def]
                try:
                    with engine.begin() as connection:  # the other revalidation, while this one asks storage
                        if postgres:
                            connection.execute(sa.text("SET LOCAL lock_timeout = '500ms'"))
                        connection.execute(
                            sa.update(Dataset.__table__)
                            .where(Dataset.__table__.c.id == dataset.id)
                            .values(status=DatasetStatus.VALIDATING.value, format="brightrun_lora_v3")
                        )
                except sa.exc.OperationalError:
                    blocked.append(True)
                return super().head(key)

        racing = RacingStore(
            settings.storage_root, secret_key=b"k", public_base_url="http://x", upload_ttl=60, download_ttl=60
        )
        if postgres:
            service.revalidate_dataset(session, racing, ALICE, dataset.id, "openai_chat")
            expected = "openai_chat"
        else:
            with pytest.raises(Conflict, match="This dataset is validating"):
                service.revalidate_dataset(session, racing, ALICE, dataset.id, "openai_chat")
            expected = "brightrun_lora_v3"
        assert blocked == ([True] if postgres else [])
        with Session(engine) as fresh:
            stored = fresh.get(Dataset, dataset.id)
            assert (stored.status, stored.format) == (DatasetStatus.VALIDATING, expected)

    def test_revalidate_while_uploading_is_a_conflict(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        with pytest.raises(Conflict):
            service.revalidate_dataset(session, store, ALICE, dataset.id)

    def test_download_url_is_fresh_and_not_stored(self, session, store, settings):
        dataset = self._finished(session, store, settings, DatasetStatus.READY)
        url = service.download_url(session, store, ALICE, dataset.id)
        claims = store.verify_token(url.split("token=", 1)[1], "get")
        assert claims.key == dataset.storage_path and claims.file_name == "chats.jsonl"
        assert session.get(Dataset, dataset.id).storage_path == dataset.storage_path


class TestIssueExcerpts:
    BAD = b'{"messages": [{"role": "user", "content": "hi"} {"role": "assistant", "content": "yo"}]}\n'

    def _failed(self, session, store, settings, content):  # type: ignore[no-untyped-def]
        from lora_core.validation import validate_stream

        dataset = _create(session, store, settings).dataset
        store.put_stream(dataset.storage_path, [content], max_bytes=10**9)
        row = session.get(Dataset, dataset.id)
        row.status = DatasetStatus.ERROR
        row.validation_report = validate_stream([content], "openai_chat").to_dict()
        session.add(row)
        session.commit()
        return row

    def test_the_text_at_each_named_column_read_up_to_the_last_line_needed(self, session, store, settings):
        dataset = self._failed(session, store, settings, CONTENT + self.BAD + CONTENT * 50_000)  # 4.6 MB
        opened: list[Any] = []

        class Watched(LocalStore):
            def open_stream(self, key, chunk_size=64 * 1024):  # type: ignore[no-untyped-def]
                stream = super().open_stream(key, chunk_size)
                opened.append(stream.chunks)
                return stream

        watched = Watched(
            settings.storage_root, secret_key=b"k", public_base_url="http://x", upload_ttl=60, download_ttl=60
        )
        found = service.issue_excerpts(session, watched, settings, ALICE, dataset.id)
        [(key, excerpt)] = found.items()
        assert key == (2, "column", 49) and excerpt.text[excerpt.at] == "{"
        [chunks] = opened
        assert inspect.getgeneratorstate(chunks) == inspect.GEN_CLOSED  # let go before the end of the file
        with pytest.raises(NotFound):
            service.issue_excerpts(session, store, settings, BOB, dataset.id)

    def test_no_file_or_no_position_is_told_without_reading(self, session, store, settings):
        no_position = self._failed(session, store, settings, b'{"messages": [{"role": "x", "content": "hi"}]}\n')
        assert service.issue_excerpts(session, store, settings, ALICE, no_position.id) == {}
        lost = self._failed(session, store, settings, self.BAD)
        store.delete(lost.storage_path)
        with pytest.raises(Conflict, match=re.escape(service.NO_FILE_MESSAGE)):
            service.issue_excerpts(session, store, settings, ALICE, lost.id)
        lost.purged_at = utcnow()
        session.add(lost)
        session.commit()
        with pytest.raises(Conflict, match=re.escape(service.NO_FILE_MESSAGE)):
            service.issue_excerpts(session, store, settings, ALICE, lost.id)

    def test_storage_down_is_a_clear_error(self, session, store, settings):
        dataset = self._failed(session, store, settings, self.BAD)

        class DownStore(LocalStore):
            def open_stream(self, key, chunk_size=64 * 1024):  # type: ignore[no-untyped-def]
                raise StorageError("storage is down")

        down = DownStore(
            settings.storage_root, secret_key=b"k", public_base_url="http://x", upload_ttl=60, download_ttl=60
        )
        with pytest.raises(StorageUnavailable, match="Could not read the file: storage is down"):
            service.issue_excerpts(session, down, settings, ALICE, dataset.id)


class TestNotifications:
    def _notify(self, session, user, title, dataset_id=None):  # type: ignore[no-untyped-def]
        notification = Notification(
            user_id=user,
            dataset_id=dataset_id,
            kind=NotificationKind.DATASET_READY,
            title=title,
            message="m",
            created_at=utcnow(),
        )
        session.add(notification)
        session.commit()
        return notification

    def test_list_count_and_mark_read_are_per_user(self, session):
        first = self._notify(session, ALICE, "one")
        self._notify(session, ALICE, "two")
        bobs = self._notify(session, BOB, "bob's")
        assert service.unread_notification_count(session, ALICE) == 2
        assert [n.title for n in service.list_notifications(session, ALICE)] == ["two", "one"]
        service.mark_notification_read(session, ALICE, first.id)
        assert service.unread_notification_count(session, ALICE) == 1
        assert [n.title for n in service.list_notifications(session, ALICE, unread_only=True)] == ["two"]
        with pytest.raises(NotFound):
            service.mark_notification_read(session, ALICE, bobs.id)
        assert service.mark_all_notifications_read(session, ALICE) == 1
        assert service.unread_notification_count(session, ALICE) == 0
        assert service.unread_notification_count(session, BOB) == 1
        assert session.exec(select(Notification).where(Notification.user_id == BOB)).one().read_at is None

    def test_opening_a_dataset_marks_only_its_owners_notifications_about_it_read(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        other = _create(session, store, settings).dataset
        about = [self._notify(session, ALICE, "ready", dataset.id), self._notify(session, ALICE, "again", dataset.id)]
        self._notify(session, ALICE, "other", other.id)
        self._notify(session, ALICE, "no dataset")
        bobs = self._notify(session, BOB, "bob's, same id", dataset.id)
        assert service.mark_dataset_notifications_read(session, ALICE, dataset.id) == 2
        assert service.mark_dataset_notifications_read(session, ALICE, str(dataset.id)) == 0  # already read
        unread = service.list_notifications(session, ALICE, unread_only=True)
        assert sorted(n.title for n in unread) == ["no dataset", "other"]
        assert all(n.read_at is not None for n in about)
        session.refresh(bobs)
        assert bobs.read_at is None
        with pytest.raises(NotFound):
            service.mark_dataset_notifications_read(session, ALICE, "not-an-id")

    def test_deleting_a_dataset_marks_its_notifications_read(self, session, store, settings):
        """They would lead to 'Dataset not found', which opening them can no longer clear."""
        dataset = _create(session, store, settings).dataset
        other = _create(session, store, settings).dataset
        self._notify(session, ALICE, "failed", dataset.id)
        self._notify(session, ALICE, "other", other.id)
        bobs = self._notify(session, BOB, "bob's, same id", dataset.id)
        service.delete_dataset(session, ALICE, dataset.id)
        assert [n.title for n in service.list_notifications(session, ALICE, unread_only=True)] == ["other"]
        session.refresh(bobs)
        assert bobs.read_at is None


class TestHardening:
    def test_description_with_a_nul_is_refused_but_line_breaks_are_fine(self, session, store, settings, engine):
        with pytest.raises(InvalidInput) as caught:
            _create(session, store, settings, description="bad\x00text")
        assert [p.field for p in caught.value.details] == ["description"]
        assert _count(engine, Dataset) == 0
        created = _create(session, store, settings, description="line one\nline two\ttabbed")
        assert created.dataset.description == "line one\nline two\ttabbed"

    @pytest.mark.parametrize(("kwargs", "field"), [({"page": 10**12}, "page"), ({"search": "a\x00b"}, "search")])
    def test_absurd_page_and_control_characters_in_search_are_refused(self, session, kwargs, field):
        with pytest.raises(InvalidInput) as caught:
            service.list_datasets(session, ALICE, **kwargs)
        assert [p.field for p in caught.value.details] == [field]

    def test_upload_is_allowed_only_while_the_dataset_waits_for_its_file(self, session, store, settings):
        dataset = _create(session, store, settings).dataset
        upload_key = service.upload_key_for(dataset.storage_path)
        assert service.upload_allowed(session, upload_key)
        assert not service.upload_allowed(session, dataset.storage_path)  # not an upload key
        _upload(store, dataset)
        service.confirm_upload(session, store, settings, ALICE, dataset.id)
        assert not service.upload_allowed(session, upload_key)
        assert not service.upload_allowed(session, "alice/unknown/incoming/file.jsonl")


def test_the_list_leaves_the_reports_unread(engine: Engine, store: ObjectStore, settings: Settings) -> None:
    """A list polled every 2 s loads each listed dataset's columns, not its report (listed issues and samples)."""
    with Session(engine) as session:
        created = service.create_dataset(
            session, store, settings, "alice", {"name": "Set", "file_name": "a.jsonl", "file_size": 10}
        )
        session.exec(
            sa.update(Dataset).where(Dataset.id == created.dataset.id).values(validation_report={"big": "x" * 1000})
        )
        session.commit()
    with Session(engine) as session:
        [item] = service.list_datasets(session, "alice").items
        assert "validation_report" not in item.__dict__  # deferred: not loaded with the row
        assert service.get_dataset(session, "alice", item.id).validation_report == {"big": "x" * 1000}
