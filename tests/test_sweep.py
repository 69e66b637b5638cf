"""The background sweep: claims with leases, results, notifications, retries; in-process and across processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from lora_core import service
from lora_core import sweep as sweep_module
from lora_core.models import Dataset, DatasetStatus, Notification, NotificationKind, utcnow
from lora_core.settings import Settings
from lora_core.storage import LocalStore, ObjectInfo, ObjectStore, S3Store, TransientStorageError
from lora_core.sweep import Stage, Sweeper, ValidationStage, run_worker, validation_stage
from lora_core.validation import validate_stream
from lora_core.validation import validator as validator_module
from tests.conftest import EQ12_PATH
from tests.moto_server import running_moto_server
from tests.validation.test_spool import record_spools

USER = "alice"
ROOT = Path(__file__).resolve().parents[1]
GOOD_LINE = (
    b'{"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello there"},'
    b' {"role": "assistant", "content": "Hi! How can I help you today?"}]}\n'
)


def queue_dataset(engine: Engine, store: ObjectStore, settings: Settings, content: bytes, **fields: str) -> uuid.UUID:
    """Create, upload and confirm a dataset, as a user would; returns its id (status validating)."""
    data = {"name": "set", "file_name": "data.jsonl", "file_size": len(content), "format": "openai_chat"}
    data.update(fields)
    with Session(engine, expire_on_commit=False) as session:
        dataset = service.create_dataset(session, store, settings, USER, data).dataset
        store.put_stream(service.upload_key_for(dataset.storage_path), [content], max_bytes=len(content))
        service.confirm_upload(session, store, settings, USER, dataset.id)
        return dataset.id


@contextmanager
def moto_store() -> Iterator[S3Store]:
    """An S3 store on a fresh bucket of a moto server of its own, over real HTTP."""
    with running_moto_server() as endpoint:
        bucket = f"sweep-{uuid.uuid4().hex[:12]}"
        s3 = S3Store(bucket, endpoint_url=endpoint, region="us-east-1", upload_ttl=60, download_ttl=60)
        s3.ensure_bucket()
        yield s3


def load(engine: Engine, dataset_id: uuid.UUID) -> Dataset:
    with Session(engine) as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        return dataset


def notifications(engine: Engine, dataset_id: uuid.UUID) -> list[Notification]:
    with Session(engine) as session:
        return list(session.exec(select(Notification).where(Notification.dataset_id == dataset_id)).all())


class TestOutcomes:
    def test_eq12_sample_becomes_ready_with_statistics_and_a_notification(self, engine, store, settings):
        dataset_id = queue_dataset(
            engine, store, settings, EQ12_PATH.read_bytes(), format="brightrun_lora_v4", name="EQ-12"
        )
        assert Sweeper(engine, store, settings).run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.READY and dataset.training_ready
        assert (dataset.total_conversations, dataset.total_training_pairs, dataset.total_turns) == (12, 44, 88)
        assert (dataset.total_tokens, dataset.total_target_tokens) == (58316, 16533)
        assert dataset.error_count == 0 and dataset.warning_count >= 44
        assert dataset.validation_report["warning_counts"]["repeated_user_input"] == 44
        assert dataset.validated_at is not None and dataset.lease_owner is None
        [note] = notifications(engine, dataset_id)
        assert note.kind == NotificationKind.DATASET_READY and note.user_id == USER
        assert note.link == f"/dataset?id={dataset_id}"
        assert "44 training pairs" in note.message

    @pytest.mark.parametrize("turn_number", [10**20, 10**400], ids=["1e20", "1e400"])
    def test_statistics_too_large_for_a_column_keep_their_exact_value_in_the_report(
        self, engine, store, settings, turn_number
    ):
        """FORMAT.md sets no upper bound on turn_number, and total_turns sums the highest of each conversation: a
        value past a 64-bit column is left out of the column (the report keeps it) instead of failing the write."""
        pair = {
            "id": "p1",
            "conversation_id": "c1",
            "turn_number": turn_number,
            "system_prompt": "s",
            "conversation_history": [],
            "current_user_input": "u",
            "target_response": "a",
            "conversation_metadata": {},
            "emotional_context": {},
            "training_metadata": {},
        }
        content = (json.dumps(pair) + "\n").encode()
        dataset_id = queue_dataset(engine, store, settings, content, format="brightrun_lora_v3")
        assert Sweeper(engine, store, settings).run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.READY
        assert dataset.total_turns is None
        assert dataset.validation_report["stats"]["total_turns"] == turn_number
        assert dataset.total_training_pairs == 1

    def test_a_large_s3_dataset_is_spooled_and_checked_by_workers(self, engine, settings, monkeypatch):
        """On S3 the sweep downloads the object once; a large one goes to a spool file that workers read spans of.
        (EQ-12 counts as large here: the threshold is lowered.)"""
        spools = record_spools(monkeypatch)
        monkeypatch.setattr(validator_module, "PARALLEL_FROM_BYTES", 1000)
        data = EQ12_PATH.read_bytes()
        with moto_store() as s3:
            dataset_id = queue_dataset(engine, s3, settings, data, format="brightrun_lora_v4")
            assert Sweeper(engine, s3, settings).run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.READY and dataset.total_training_pairs == 44
        assert dataset.validation_report["warning_counts"]["repeated_user_input"] == 44
        assert [spool.size for spool in spools] == [len(data)]
        assert list((settings.data_dir / "spool").iterdir()) == []  # the spool file is gone
        assert dataset.validation_report == validate_stream([data], "brightrun_lora_v4").to_dict()

    def test_a_large_s3_object_that_is_not_text_is_an_error_report(self, engine, settings, monkeypatch):
        """The validation stops at the first bytes while the spool's thread may be inside a read: the report is
        written (not an internal error), and the download is closed by that thread."""
        monkeypatch.setattr(validator_module, "PARALLEL_FROM_BYTES", 1000)
        data = b"PK\x03\x04" + os.urandom(6 * 1024 * 1024)
        with moto_store() as s3:
            dataset_id = queue_dataset(engine, s3, settings, data, format="brightrun_lora_v4")
            assert Sweeper(engine, s3, settings).run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.ERROR
        assert dataset.validation_report["error_counts"] == {"not_text": 1}
        assert list((settings.data_dir / "spool").iterdir()) == []

    def test_s3_objects_missing_or_over_the_limit_are_permanent_errors(self, engine, settings):
        """On S3 the size comes with the one GET; an object over the limit is refused before its bytes are read."""
        with moto_store() as s3:
            too_large = queue_dataset(engine, s3, settings, GOOD_LINE * 3)
            small = settings.model_copy(update={"max_upload_bytes": len(GOOD_LINE)})
            assert Sweeper(engine, s3, small).run_once() == 1
            missing = queue_dataset(engine, s3, settings, GOOD_LINE)
            s3.delete(load(engine, missing).storage_path)
            assert Sweeper(engine, s3, settings).run_once() == 1
        dataset = load(engine, too_large)
        assert dataset.status == DatasetStatus.ERROR
        assert dataset.validation_report["error_counts"] == {"file_too_large": 1}
        dataset = load(engine, missing)
        assert dataset.status == DatasetStatus.ERROR and "missing from storage" in dataset.error_message

    def test_invalid_file_becomes_error_with_first_error_and_a_notification(self, engine, store, settings):
        content = GOOD_LINE + b"{not json\n" + GOOD_LINE
        dataset_id = queue_dataset(engine, store, settings, content)
        Sweeper(engine, store, settings).run_once()
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.ERROR and not dataset.training_ready
        assert dataset.error_message.startswith("1 error found: line 2: This line is not valid JSON: ")
        assert dataset.error_message.endswith(" each example must be complete on its own line.")  # its suggestion
        assert dataset.validation_report["errors"][0]["code"] == "invalid_json"
        [note] = notifications(engine, dataset_id)
        assert note.kind == NotificationKind.DATASET_FAILED

    def test_a_file_in_the_wrong_format_is_summed_up_by_its_most_frequent_error(self, engine, store, settings):
        """The file-level `no_training_pairs` is listed first but only follows from the `wrong_format` of every line:
        the banner and the notification name those, with the format to choose."""
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE * 3, format="brightrun_lora_v4")
        Sweeper(engine, store, settings).run_once()
        dataset = load(engine, dataset_id)
        assert dataset.validation_report["errors"][0]["code"] == "no_training_pairs"
        assert dataset.error_message == (
            "4 errors found, 3 of them `wrong_format`; the first: line 1: This line is OpenAI chat (`messages`), "
            "which the format `brightrun_lora_v4` does not accept. This line is OpenAI chat; choose the format "
            "`openai_chat`."
        )
        [note] = notifications(engine, dataset_id)
        assert note.message == dataset.error_message

    def test_object_missing_at_validation_is_a_permanent_error(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        store.delete(load(engine, dataset_id).storage_path)
        Sweeper(engine, store, settings).run_once()
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.ERROR
        assert "missing from storage" in dataset.error_message
        assert dataset.purged_at is None  # not removed by us: it may come back (a backup), and revalidate asks storage
        assert [n.kind for n in notifications(engine, dataset_id)] == [NotificationKind.DATASET_FAILED]

    def test_object_over_the_limit_is_not_validated(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE * 3)
        small = settings.model_copy(update={"max_upload_bytes": len(GOOD_LINE)})
        Sweeper(engine, store, small).run_once()
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.ERROR
        assert dataset.validation_report["error_counts"] == {"file_too_large": 1}
        assert dataset.validation_report["errors"][0]["line"] is None

    def test_deleted_and_uploading_datasets_are_not_claimed(self, engine, store, settings):
        deleted = queue_dataset(engine, store, settings, GOOD_LINE)
        with Session(engine) as session:
            service.delete_dataset(session, USER, deleted)
            service.create_dataset(
                session, store, settings, USER, {"name": "u", "file_name": "u.jsonl", "file_size": 5}
            )
        assert Sweeper(engine, store, settings).run_once() == 0
        assert load(engine, deleted).status == DatasetStatus.VALIDATING


class FlakyStore(LocalStore):
    """A store whose streamed reads fail with a transient error the first `failures` times (as S3's may)."""

    def __init__(self, inner: LocalStore, failures: int) -> None:
        self.__dict__.update(inner.__dict__)
        self.failures = failures
        self.reads = 0

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        self.reads += 1
        if self.reads <= self.failures:
            raise TransientStorageError("connection reset")
        yield from super().iter_chunks(key, chunk_size)

    def head(self, key: str) -> ObjectInfo | None:
        return super().head(key)

    def local_path(self, key: str) -> Path | None:
        return None  # like a remote store: the sweep must stream through iter_chunks


class TestRetriesAndLeases:
    def test_transient_errors_are_retried_with_backoff(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        flaky = FlakyStore(store, failures=2)
        sleeps: list[float] = []
        Sweeper(engine, flaky, settings, sleep=sleeps.append).run_once()
        assert load(engine, dataset_id).status == DatasetStatus.READY
        assert flaky.reads == 3 and sleeps == [0.5, 1.0]

    def test_storage_down_through_every_retry_requeues_then_fails_after_max_attempts(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        down = FlakyStore(store, failures=10**6)
        sweeper = Sweeper(engine, down, settings, sleep=lambda _s: None)
        sweeper.run_once()
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.VALIDATING and dataset.lease_owner is None
        assert dataset.lease_expires_at > utcnow() and dataset.attempts == 1
        assert down.reads == settings.storage_retries + 1
        assert sweeper.run_once() == 0  # paused before the next claim
        pauses = [(dataset.lease_expires_at - utcnow()).total_seconds()]
        for _ in range(settings.sweep_max_attempts - 1):
            _expire_lease(engine, dataset_id)
            sweeper.run_once()
            dataset = load(engine, dataset_id)
            if dataset.status == DatasetStatus.VALIDATING:
                pauses.append((dataset.lease_expires_at - utcnow()).total_seconds())
        # The pause grows (1 min, 8 min), and the last claim, having tried storage, gives up at once: an outage of
        # ~9 minutes, not ~100 s, fails the dataset, and no wait ends in a failure decided before it.
        assert settings.sweep_max_attempts == 3 and [round(pause / 60) for pause in pauses] == [1, 8]
        assert dataset.status == DatasetStatus.ERROR and dataset.attempts == settings.sweep_max_attempts
        assert down.reads == settings.sweep_max_attempts * (settings.storage_retries + 1)
        assert "Storage stayed unreachable through 3 tries" in dataset.error_message
        assert dataset.validated_at is None  # its lines were never checked
        [note] = notifications(engine, dataset_id)
        assert note.title == "“set” could not be validated"  # not "failed validation": the file may be fine

    def test_storage_back_before_the_last_claim_validates_the_dataset(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        tries = settings.storage_retries + 1
        flaky = FlakyStore(store, failures=(settings.sweep_max_attempts - 1) * tries)  # back for the last claim
        sweeper = Sweeper(engine, flaky, settings, sleep=lambda _s: None)
        for _ in range(settings.sweep_max_attempts):
            sweeper.run_once()
            _expire_lease(engine, dataset_id)
        assert load(engine, dataset_id).status == DatasetStatus.READY

    def test_a_claim_retrying_storage_keeps_its_lease_alive(self, engine, store, settings):
        """The lease is renewed through the retries and their pauses: a worker retrying storage is not shown as
        a dead one (sweep.validation_stage)."""
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        short = settings.model_copy(update={"sweep_lease_seconds": 0.6, "storage_retries": 2})
        claimed = []

        def pause(seconds: float) -> None:
            time.sleep(0.5)  # longer than a renewal period (0.2 s)
            claimed.append(load(engine, dataset_id).lease_expires_at)

        Sweeper(engine, FlakyStore(store, failures=10**6), short, sleep=pause).run_once()
        assert len(claimed) == 2 and claimed[1] > claimed[0]  # renewed between the tries

    def test_the_lease_is_renewed_while_a_long_validation_runs(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE * 10)  # 25 chunks of 64 bytes
        short = settings.model_copy(update={"sweep_lease_seconds": 1})

        class SlowStore(FlakyStore):
            def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
                for chunk in super().iter_chunks(key, chunk_size=64):
                    time.sleep(0.12)  # ~3 s in all: three lease lengths
                    yield chunk

        worker = threading.Thread(target=Sweeper(engine, SlowStore(store, failures=0), short, owner="slow").run_once)
        worker.start()
        time.sleep(2.0)  # the first lease would have run out by now
        assert Sweeper(engine, store, short, owner="other").claim_next() is None
        worker.join(timeout=30)
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.READY and dataset.attempts == 1

    def test_a_live_lease_is_respected_and_an_expired_one_is_taken_over(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        crashed = Sweeper(engine, store, settings, owner="crashed-process")
        claim = crashed.claim_next()
        assert claim is not None and claim.dataset_id == dataset_id and claim.attempts == 1
        other = Sweeper(engine, store, settings, owner="other")
        assert other.claim_next() is None
        _expire_lease(engine, dataset_id)
        assert other.run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.READY and dataset.attempts == 2

    def test_a_dataset_deleted_while_it_is_validated_keeps_its_result_without_a_notification(
        self, engine, store, settings, monkeypatch
    ):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        real_validate = sweep_module.validate_file

        def deleted_meanwhile(*args: object) -> object:
            with Session(engine) as session:
                service.delete_dataset(session, USER, dataset_id)
            return real_validate(*args)

        monkeypatch.setattr(sweep_module, "validate_file", deleted_meanwhile)
        assert Sweeper(engine, store, settings).run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.deleted_at is not None and dataset.status == DatasetStatus.READY
        assert dataset.lease_owner is None
        assert notifications(engine, dataset_id) == []  # its link would lead to "not found"

    def test_a_stopped_sweeper_finishes_its_dataset_and_claims_no_more(self, engine, store, settings, monkeypatch):
        """What a worker does on SIGTERM, and the app on shutdown: the queue is not drained first."""
        queued = [queue_dataset(engine, store, settings, GOOD_LINE, name=f"set {n}") for n in range(3)]
        sweeper = Sweeper(engine, store, settings)
        real_validate = sweep_module.validate_file

        def stopped_meanwhile(*args: object) -> object:
            sweeper.stop()
            return real_validate(*args)

        monkeypatch.setattr(sweep_module, "validate_file", stopped_meanwhile)
        assert sweeper.run_once() == 1
        statuses = sorted(load(engine, dataset_id).status for dataset_id in queued)
        assert statuses == [DatasetStatus.READY, DatasetStatus.VALIDATING, DatasetStatus.VALIDATING]
        assert all(load(engine, dataset_id).lease_owner is None for dataset_id in queued)  # free for others
        assert Sweeper(engine, store, settings).run_once() == 2

    def test_a_result_from_a_lost_lease_is_dropped(self, engine, store, settings, caplog):
        caplog.set_level("INFO", logger="lora_core.sweep")
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        slow = Sweeper(engine, store, settings, owner="slow")
        claim = slow.claim_next()
        _expire_lease(engine, dataset_id)
        assert Sweeper(engine, store, settings, owner="fast").claim_next() is not None
        slow.process(claim)
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.VALIDATING and dataset.lease_owner == "fast"
        assert notifications(engine, dataset_id) == []
        # The log says only that: no outcome line for a result that was not written.
        assert TestOutcomeLog.outcome_lines(caplog, dataset_id) == []
        [line] = TestOutcomeLog.outcome_lines(caplog, dataset_id, "WARNING")
        assert "dropped: the lease is no longer ours" in line


class TestOutcomeLog:
    """One log line per processed dataset, with its outcome and duration: what an operator reads to find a slow or
    failing validation."""

    @staticmethod
    def outcome_lines(caplog: pytest.LogCaptureFixture, dataset_id: uuid.UUID, level: str = "INFO") -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name == "lora_core.sweep" and record.levelname == level and str(dataset_id) in record.getMessage()
        ]

    def test_a_validated_dataset_logs_its_verdict_counts_duration_and_speed(self, engine, store, settings, caplog):
        caplog.set_level("INFO", logger="lora_core.sweep")
        data = EQ12_PATH.read_bytes()
        dataset_id = queue_dataset(engine, store, settings, data, format="brightrun_lora_v4")
        Sweeper(engine, store, settings).run_once()
        [line] = self.outcome_lines(caplog, dataset_id)
        assert f"(brightrun_lora_v4, {len(data):,} bytes): ready, 0 errors, " in line
        assert re.search(r"after \d+\.\d\d s, [\d,]+\.\d MB/s$", line), line

    def test_an_invalid_file_and_a_missing_one_log_why(self, engine, store, settings, caplog):
        caplog.set_level("INFO", logger="lora_core.sweep")
        invalid = queue_dataset(engine, store, settings, GOOD_LINE + b"{not json\n")
        missing = queue_dataset(engine, store, settings, GOOD_LINE)
        store.delete(load(engine, missing).storage_path)
        Sweeper(engine, store, settings).run_once()
        [line] = self.outcome_lines(caplog, invalid)
        assert "): error, 1 error, 1 warning after " in line  # invalid_json; few_examples
        [line] = self.outcome_lines(caplog, missing)
        assert re.search(r"\): error: the file is missing from storage after \d+\.\d\d s$", line), line

    def test_storage_down_logs_the_requeue(self, engine, store, settings, caplog):
        caplog.set_level("INFO", logger="lora_core.sweep")
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        Sweeper(engine, FlakyStore(store, failures=10**6), settings, sleep=lambda _s: None).run_once()
        [line] = self.outcome_lines(caplog, dataset_id)
        assert "put back in the queue: storage stayed unreachable after " in line and "MB/s" not in line


class TestValidationStage:
    """What the pages say of a validating dataset, read from its lease fields (sweep.validation_stage)."""

    def stage(self, engine: Engine, dataset_id: uuid.UUID, lease_seconds: float, **later: float) -> ValidationStage:
        now = utcnow() + timedelta(**later)
        return validation_stage(load(engine, dataset_id), lease_seconds, now)

    def test_a_confirmed_dataset_is_queued_then_checked_then_done(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        queued = self.stage(engine, dataset_id, 600)
        assert queued.stage == Stage.QUEUED and queued.since is not None
        assert abs((utcnow() - queued.since).total_seconds()) < 60  # queued when confirmed, just now
        sweeper = Sweeper(engine, store, settings.model_copy(update={"sweep_lease_seconds": 600}))
        claim = sweeper.claim_next()
        assert claim is not None
        assert self.stage(engine, dataset_id, 600) == ValidationStage(Stage.CHECKING)
        assert self.stage(engine, dataset_id, 600, seconds=150) == ValidationStage(Stage.CHECKING)  # renewal due
        # Not renewed well past its time (every 200 s): the process that held it died.
        expires = load(engine, dataset_id).lease_expires_at
        stalled = self.stage(engine, dataset_id, 600, seconds=240)
        assert stalled.stage == Stage.STALLED and stalled.until == expires.replace(tzinfo=stalled.until.tzinfo)
        # Once the lease has run out, the next sweep takes it over: queued since then, not since its upload.
        requeued = self.stage(engine, dataset_id, 600, seconds=601)
        assert requeued.stage == Stage.QUEUED and requeued.since == stalled.until

    def test_a_dataset_put_back_after_storage_trouble_waits_for_its_retry(self, engine, store, settings):
        dataset_id = queue_dataset(engine, store, settings, GOOD_LINE)
        Sweeper(engine, FlakyStore(store, failures=10**6), settings, sleep=lambda _s: None).run_once()
        waiting = self.stage(engine, dataset_id, settings.sweep_lease_seconds)
        assert waiting.stage == Stage.RETRY_WAIT and waiting.until is not None
        assert self.stage(engine, dataset_id, settings.sweep_lease_seconds, seconds=61).stage == Stage.QUEUED


def _expire_lease(engine: Engine, dataset_id: uuid.UUID) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.update(Dataset.__table__)
            .where(Dataset.__table__.c.id == dataset_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def _worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_")}
    env.update(
        LORA_DATA_DIR=str(settings.data_dir),
        LORA_DATABASE_URL=settings.effective_database_url,
        LORA_SECRET_KEY="test-secret",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


@pytest.mark.slow
class TestAcrossProcesses:
    def test_two_worker_processes_validate_every_dataset_exactly_once(self, engine, store, settings):
        count = 100
        ids = [queue_dataset(engine, store, settings, GOOD_LINE * 200, name=f"set {i}") for i in range(count)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "lora_core", "worker", "--once"],
                cwd=ROOT,
                env=_worker_env(settings),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=120)[0].decode() for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        done = [int(re.search(r"validated (\d+) dataset", output).group(1)) for output in outputs]
        assert sum(done) == count, outputs  # no dataset validated twice...
        assert min(done) > 0, outputs  # ...while both workers really competed for the queue
        for dataset_id in ids:
            dataset = load(engine, dataset_id)
            assert dataset.status == DatasetStatus.READY, dataset.error_message
            assert dataset.attempts == 1
            assert len(notifications(engine, dataset_id)) == 1

    def test_a_worker_killed_mid_validation_is_taken_over_after_its_lease(self, engine, store, settings, tmp_path):
        record = json.loads(EQ12_PATH.read_bytes().split(b"\n")[1])
        count = 40 * 1024 * 1024 // len(json.dumps(record))  # ~40 MB: long enough to be caught mid-validation
        big = "".join(json.dumps({**record, "id": f"pair-{i}"}) + "\n" for i in range(count)).encode()
        dataset_id = queue_dataset(engine, store, settings, big, format="brightrun_lora_v4")
        worker = subprocess.Popen(
            [sys.executable, "-m", "lora_core", "worker", "--once"],
            cwd=ROOT,
            env=_worker_env(settings, LORA_SWEEP_LEASE_SECONDS="3"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while load(engine, dataset_id).lease_owner is None:
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never claimed the dataset"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.VALIDATING and dataset.lease_owner is not None  # killed mid-way
        assert Sweeper(engine, store, settings, owner="survivor").run_once() == 0  # its lease still holds
        time.sleep(max(0.0, (dataset.lease_expires_at - utcnow()).total_seconds()) + 0.1)
        assert Sweeper(engine, store, settings, owner="survivor").run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.READY and dataset.attempts == 2
        assert dataset.total_training_pairs == count
        assert len(notifications(engine, dataset_id)) == 1

    def test_the_worker_loop_outlives_a_database_error_and_stops_when_told(self, engine, settings, monkeypatch, caplog):
        """`python -m lora_core worker`: a database that goes away for a while does not end the worker."""
        calls: list[int] = []

        def run_once(sweeper: Sweeper, max_datasets: int | None = None) -> int:
            calls.append(1)
            if len(calls) == 1:
                raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
            sweeper.stop()  # as SIGTERM does
            return 0

        monkeypatch.setattr(Sweeper, "run_once", run_once)
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            assert run_worker(settings.model_copy(update={"sweep_interval_seconds": 0.01})) == 0
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        assert len(calls) == 2
        assert "sweep failed" in caplog.text


class TestValuesTheDatabaseRefuses:
    """PostgreSQL's text and JSONB refuse NUL and lone surrogates, which a valid file can carry into the report (a
    sample's content, a quoted role): the write failed and the dataset was retried until "interrupted 3 times"."""

    def test_a_nul_in_a_sample_and_in_an_error_is_stored_as_a_replacement_character(self, engine, store, settings):
        good = json.loads(GOOD_LINE)
        good["messages"][1]["content"] = "Hello\u0000there"
        bad = json.loads(GOOD_LINE)
        bad["messages"][1]["role"] = "us\u0000er"
        content = (json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode()
        dataset_id = queue_dataset(engine, store, settings, content)
        assert Sweeper(engine, store, settings).run_once() == 1
        dataset = load(engine, dataset_id)
        assert dataset.status == DatasetStatus.ERROR and dataset.lease_owner is None
        assert dataset.validation_report["samples"][0]["messages"][1]["content"] == "Hello\ufffdthere"
        error = dataset.validation_report["errors"][0]
        assert error["code"] == "unknown_role" and "us\ufffder" in error["message"]
        assert "us\ufffder" in (dataset.error_message or "")
        [note] = notifications(engine, dataset_id)
        assert note.kind == NotificationKind.DATASET_FAILED and "\u0000" not in note.message

    def test_storable_replaces_nul_and_lone_surrogates_in_keys_and_values(self):
        report = {"a\u0000": ["ok", "x\ud800y", {"k": "caf\u00e9\u0000"}], "n": 1, "none": None}
        assert sweep_module.storable(report) == {
            "a\ufffd": ["ok", "x\ufffdy", {"k": "caf\u00e9\ufffd"}],
            "n": 1,
            "none": None,
        }

    def test_a_report_the_database_still_refuses_is_stored_without_its_lists(
        self, engine, store, settings, monkeypatch
    ):
        """The last resort: the verdict, counts and statistics are kept, instead of retrying a write that must fail."""
        dataset_id = queue_dataset(engine, store, settings, EQ12_PATH.read_bytes(), format="brightrun_lora_v4")
        sweeper = Sweeper(engine, store, settings)
        finish = sweeper._finish
        refused: list[bool] = []

        def refuse_lists_once(claim, values, notification):
            report = values.get("validation_report") or {}
            if report.get("samples") and not refused:
                refused.append(True)
                raise sa.exc.DataError("UPDATE datasets …", {}, Exception("value too long"))
            return finish(claim, values, notification)

        monkeypatch.setattr(sweeper, "_finish", refuse_lists_once)
        assert sweeper.run_once() == 1
        dataset = load(engine, dataset_id)
        assert refused and dataset.status == DatasetStatus.READY and dataset.lease_owner is None
        assert dataset.total_training_pairs == 44 and dataset.validation_report["warning_count"] >= 44
        assert dataset.validation_report["samples"] == [] and dataset.validation_report["warnings"] == []
        assert dataset.validation_report[sweep_module.LISTS_DROPPED] is True  # the detail page says why
        assert len(notifications(engine, dataset_id)) == 1
