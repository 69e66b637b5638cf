"""The background sweep: claim a `validating` dataset with a lease, validate it from storage, write the result.

Why a lease and not a lock: the claim is one `UPDATE … WHERE id = (SELECT … LIMIT 1) AND <still claimable>
RETURNING`, so two processes never take the same dataset, and a process that dies mid-validation only delays
it until the lease runs out. Results are written `WHERE lease_owner = me`, so a process that lost its lease
(it stalled past the expiry and someone else took over) cannot overwrite the newer result.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from lora_core.db import value_refused
from lora_core.housekeeping import expire_abandoned_uploads, purge_deleted_files
from lora_core.models import (
    STATISTIC_COLUMNS,
    Dataset,
    DatasetStatus,
    NotificationKind,
    as_utc,
    notify_owner,
    utcnow,
)
from lora_core.runtime import build_runtime
from lora_core.settings import Settings
from lora_core.storage import ObjectNotFound, ObjectStore, TransientStorageError
from lora_core.validation import (
    ValidationLimits,
    ValidationReport,
    validate_download,
    validate_file,
)
from lora_core.validation.parallel import start_worker_server
from lora_core.validation.sources import SourceChanged

log = logging.getLogger(__name__)

SWEEP_JOB_ID = "lora-validation-sweep"
HOUSEKEEPING_JOB_ID = "lora-housekeeping"
# Abandoned uploads are found within a minute of their grace period's end: plenty, for something hours old.
HOUSEKEEPING_INTERVAL_SECONDS = 60.0
# A dataset whose storage stayed unreachable through a claim's retries waits this long before its next claim, eight
# times as long after each further one (1 min, 8 min, …, at most RETRY_PAUSE_MAX_SECONDS): with the default 3
# claims, storage may be down for about 9 minutes before the dataset fails (at its last claim), not 100 s.
RETRY_PAUSE_SECONDS = 60.0
RETRY_PAUSE_MAX_SECONDS = 3600.0
# How late a lease renewal may be (a busy database, a slow machine) before its process is taken for dead.
LEASE_RENEWAL_SLACK_SECONDS = 30.0
_datasets = Dataset.__table__  # Core statements: the claim and the result are single SQL statements.


def _column_value(value: Any) -> Any:
    """A statistic as its column stores it: an integer past 64 bits (FORMAT.md bounds no turn_number, and total_turns
    sums them) is left out, NULL, rather than failing the write; the report keeps the exact value."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return None
    return value


_SURROGATES = str.maketrans({code: "\ufffd" for code in range(0xD800, 0xE000)})


def storable(value: Any) -> Any:
    """`value` (a report, a message) with what PostgreSQL's text and JSONB refuse replaced by U+FFFD: NUL, which is
    valid JSON (`\u0000`) and UTF-8, and lone surrogates (a line the standard library read). A sample's content or a
    quoted value holding one failed the result's write there, and the dataset was retried until "interrupted 3
    times" (SQLite stores them; both databases now store the same)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = value.translate(_SURROGATES)
        return value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


@dataclass(frozen=True)
class Claim:
    dataset_id: uuid.UUID
    user_id: str
    name: str
    format: str
    storage_path: str
    attempts: int
    file_size: int = 0  # as declared and confirmed at upload; for the log line of the outcome


class Stage(StrEnum):
    """Where a `validating` dataset is, as its lease fields tell (`validation_stage`)."""

    QUEUED = "queued"  # no claim yet: waiting for a sweep
    CHECKING = "checking"  # claimed, and its lease is being renewed: its lines are being checked
    RETRY_WAIT = "retry_wait"  # put back after storage stayed unreachable; claimable again at `until`
    STALLED = "stalled"  # claimed, but its lease has not been renewed: the process died; taken over at `until`


@dataclass(frozen=True)
class ValidationStage:
    stage: Stage
    until: datetime | None = None  # RETRY_WAIT, STALLED: when another claim can take it
    since: datetime | None = None  # QUEUED: since when it could be claimed (queued, or its last lease ended)


def validation_stage(dataset: Dataset, lease_seconds: float, now: datetime | None = None) -> ValidationStage:
    """What the sweep is doing with a `validating` dataset, for the pages: checking it, or why not yet.

    A live claim renews its lease every third of its length (`_holding_lease`); a lease left unrenewed well past
    that belongs to a process that died (killed, out of memory), and the dataset waits for the lease to run out.
    """
    now = now or utcnow()
    expires = as_utc(dataset.lease_expires_at) if dataset.lease_expires_at is not None else None
    queued = as_utc(dataset.updated_at)
    if expires is not None:
        queued = max(queued, expires)
    if dataset.lease_owner is None:
        if expires is not None and expires > now:
            return ValidationStage(Stage.RETRY_WAIT, expires)
        return ValidationStage(Stage.QUEUED, since=queued)
    if expires is None or expires <= now:
        return ValidationStage(Stage.QUEUED, since=queued)  # claimable now: the next sweep takes it over
    # Renewed last when the lease had its full length; a missed renewal leaves less than 2/3 of it, less slack.
    if expires - now < timedelta(seconds=lease_seconds * 2 / 3 - LEASE_RENEWAL_SLACK_SECONDS):
        return ValidationStage(Stage.STALLED, expires)
    return ValidationStage(Stage.CHECKING)


class LeaseLost(Exception):
    """Another process took the dataset over (our lease ran out); our result must be thrown away."""


class _Retry(Exception):
    """Storage stayed unreachable through every retry; the dataset goes back to the queue for a later claim."""


def default_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Sweeper:
    """Validates queued datasets one at a time. Any number of sweepers, in any processes, may share a database."""

    def __init__(
        self,
        engine: Engine,
        store: ObjectStore,
        settings: Settings,
        *,
        owner: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings
        self.owner = owner or default_owner_id()
        self.limits = ValidationLimits.from_settings(settings)
        self._sleep = sleep
        # Set by `stop`: no new claim is taken; the dataset being validated is finished (a process stopping for a
        # deploy would otherwise drain the whole queue first, and be killed mid-validation with a lease left).
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Take no new dataset; `run_once` returns once the one being validated is written."""
        self.stopping.set()

    # -- claiming ---------------------------------------------------------------------------------------------

    def claim_next(self) -> Claim | None:
        """Take the oldest claimable dataset, or None. Claimable: validating, not deleted, no live lease."""
        now = utcnow()
        claimable = sa.and_(
            _datasets.c.status == DatasetStatus.VALIDATING.value,
            _datasets.c.deleted_at.is_(None),
            sa.or_(_datasets.c.lease_expires_at.is_(None), _datasets.c.lease_expires_at < now),
        )
        candidate = sa.select(_datasets.c.id).where(claimable).order_by(_datasets.c.updated_at).limit(1)
        if self.engine.dialect.name == "postgresql":
            candidate = candidate.with_for_update(skip_locked=True)
        statement = (
            sa.update(_datasets)
            # The predicate is repeated outside the subquery: SQLite has no SKIP LOCKED, and this is what keeps
            # a row that another process claimed in between from being claimed twice.
            .where(_datasets.c.id == candidate.scalar_subquery(), claimable)
            .values(
                lease_owner=self.owner,
                lease_expires_at=now + timedelta(seconds=self.settings.sweep_lease_seconds),
                attempts=_datasets.c.attempts + 1,
            )
            .returning(
                _datasets.c.id,
                _datasets.c.user_id,
                _datasets.c.name,
                _datasets.c.format,
                _datasets.c.storage_path,
                _datasets.c.attempts,
                _datasets.c.file_size,
            )
        )
        with self.engine.begin() as connection:
            row = connection.execute(statement).first()
        if row is None:
            return None
        return Claim(
            dataset_id=row.id,
            user_id=row.user_id,
            name=row.name,
            format=row.format,
            storage_path=row.storage_path,
            attempts=row.attempts,
            file_size=row.file_size or 0,
        )

    def _renew_lease(self, claim: Claim) -> None:
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.update(_datasets)
                .where(_datasets.c.id == claim.dataset_id, _datasets.c.lease_owner == self.owner)
                .values(lease_expires_at=utcnow() + timedelta(seconds=self.settings.sweep_lease_seconds))
            )
        if result.rowcount != 1:
            raise LeaseLost(str(claim.dataset_id))

    @contextmanager
    def _holding_lease(self, claim: Claim) -> Iterator[None]:
        """Renew the lease every third of its length while the block runs, so a long validation keeps it."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.settings.sweep_lease_seconds / 3):
                try:
                    self._renew_lease(claim)
                except LeaseLost:
                    log.warning("lease on dataset %s was taken over; its result will be dropped", claim.dataset_id)
                    return
                except SQLAlchemyError as error:  # the database may come back before the lease runs out
                    log.warning("could not renew the lease on dataset %s: %s", claim.dataset_id, error)

        heartbeat = threading.Thread(target=beat, name=f"lease-{claim.dataset_id}", daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()

    # -- one dataset ------------------------------------------------------------------------------------------

    def process(self, claim: Claim) -> None:
        """Validate one claimed dataset and record the outcome; never raises for a problem of the dataset itself.

        Logs one line per dataset with its outcome and how long it took: what an operator needs to see a slow or
        failing validation without reading the database."""
        started = time.monotonic()
        if claim.attempts > self.settings.sweep_max_attempts:
            if self._write_failure(
                claim,
                f"Validation was interrupted {claim.attempts - 1} times (the worker stopped or storage was "
                "unreachable before it finished). Revalidate to try again.",
            ):
                _log_outcome(claim, "error: too many interrupted attempts", started)
            return
        try:
            report = self._validate_with_retries(claim)
        except ObjectNotFound:
            if self._write_failure(claim, "The file is missing from storage. Upload it again as a new dataset."):
                _log_outcome(claim, "error: the file is missing from storage", started)
        except _Retry:
            if claim.attempts >= self.settings.sweep_max_attempts:  # the next claim would give up without a try
                if self._write_failure(
                    claim,
                    f"Storage stayed unreachable through {claim.attempts} tries over several minutes, so the file "
                    "could not be read. Revalidate once storage is back.",
                ):
                    _log_outcome(claim, "error: storage stayed unreachable", started)
            else:
                self._release(claim)
                _log_outcome(claim, "put back in the queue: storage stayed unreachable", started)
        except LeaseLost:
            log.warning("lease on dataset %s was lost; another sweeper owns it now", claim.dataset_id)
        except Exception:
            # A bug in the validator or an unexpected storage failure: record it rather than retry forever.
            log.exception("validation of dataset %s failed unexpectedly", claim.dataset_id)
            self._write_failure(claim, "Validation failed because of an internal error. Revalidate to try again.")
        else:
            if not self._write_report(claim, report):
                return  # _finish logged why
            verdict = "ready" if report.valid else "error"
            counts = f"{_counted(report.error_count, 'error')}, {_counted(report.warning_count, 'warning')}"
            _log_outcome(claim, f"{verdict}, {counts}", started, validated=True)

    def _validate_with_retries(self, claim: Claim) -> ValidationReport:
        delay = 0.5
        # The lease is renewed through the tries and the pauses between them: a claim that retries storage is alive,
        # and validation_stage tells a dead claim by a lease left unrenewed.
        with self._holding_lease(claim):
            for attempt in range(self.settings.storage_retries + 1):
                try:
                    # Worker processes read their spans of a local file, or of a large S3 object's download
                    # spooled to the data folder, themselves. Both refuse a file over the limit unread.
                    path = self.store.local_path(claim.storage_path)
                    if path is not None:
                        try:
                            return validate_file(path, claim.format, self.limits)
                        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # as LocalStore.head
                            raise ObjectNotFound(claim.storage_path) from None
                    stream = self.store.open_stream(claim.storage_path)  # one GET: the size comes with the bytes
                    # validate_download closes the stream, in the thread that reads it.
                    spool_dir = self.settings.data_dir / "spool"
                    return validate_download(stream.chunks, stream.size, spool_dir, claim.format, self.limits)
                except (TransientStorageError, SourceChanged) as error:  # SourceChanged: the object changed
                    log.warning("storage error on dataset %s (try %d): %s", claim.dataset_id, attempt + 1, error)
                    if attempt < self.settings.storage_retries:
                        self._sleep(delay)
                        delay = min(delay * 2, 30.0)
        raise _Retry()

    # -- results ----------------------------------------------------------------------------------------------

    def _write_report(self, claim: Claim, report: ValidationReport) -> bool:
        data = storable(report.to_dict())
        stats: dict[str, Any] = data.get("stats") or {}
        valid = bool(data["valid"])
        now = utcnow()
        values: dict[str, Any] = {
            "status": (DatasetStatus.READY if valid else DatasetStatus.ERROR).value,
            "training_ready": valid,
            "validated_at": now,
            "validation_report": data,
            "error_count": data["error_count"],
            "warning_count": data["warning_count"],
            "error_message": None if valid else summarize_errors(data),
        }
        for name in STATISTIC_COLUMNS:
            values[name] = _column_value(stats.get(name))
        if valid:
            pairs = stats.get("total_training_pairs") or 0
            tokens = stats.get("total_tokens") or 0
            message = f"{pairs:,} training pairs, {tokens:,} tokens"
            if data["warning_count"]:
                message += f"; {data['warning_count']:,} warnings to review"
            notification = (NotificationKind.DATASET_READY, f"“{claim.name}” is ready for training", message + ".")
        else:
            notification = (
                NotificationKind.DATASET_FAILED,
                f"“{claim.name}” failed validation",
                values["error_message"],
            )
        try:
            return self._finish(claim, values, notification)
        except SQLAlchemyError as error:
            if not value_refused(error):
                raise
            # Retrying the same write would fail the same way, until "interrupted 3 times": keep the verdict, the
            # counts and the statistics, without the listed issues and samples that carried what was refused.
            log.exception(
                "the report of dataset %s was refused by the database; stored without its lists", claim.dataset_id
            )
            values["validation_report"] = _without_lists(data)
            return self._finish(claim, values, notification)

    def _write_failure(self, claim: Claim, message: str) -> bool:
        """The dataset could not be validated (its file missing, storage down, an internal error): `error`, with no
        `validated_at` and not "failed validation", since its lines were never checked."""
        values = {"status": DatasetStatus.ERROR.value, "training_ready": False, "error_message": message}
        return self._finish(
            claim, values, (NotificationKind.DATASET_FAILED, f"“{claim.name}” could not be validated", message)
        )

    def _finish(self, claim: Claim, values: dict[str, Any], notification: tuple[NotificationKind, str, str]) -> bool:
        """Write the outcome and the owner's notification in one transaction, only if we still hold the lease;
        False when we did not (the result was dropped)."""
        now = utcnow()
        kind, title, message = notification
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.update(_datasets)
                .where(
                    _datasets.c.id == claim.dataset_id,
                    _datasets.c.lease_owner == self.owner,
                    _datasets.c.status == DatasetStatus.VALIDATING.value,
                )
                .values(**values, lease_owner=None, lease_expires_at=None, updated_at=now)
                .returning(_datasets.c.deleted_at)
            ).first()
            if row is None:
                log.warning("result for dataset %s dropped: the lease is no longer ours", claim.dataset_id)
                return False
            # Deleted while it was validated: the record keeps its result, but the owner is not sent to a page
            # that no longer shows it.
            if row.deleted_at is None:
                notify_owner(connection, claim.user_id, claim.dataset_id, kind, title, message, now)
        return True

    def _release(self, claim: Claim) -> None:
        """Give the dataset back to the queue after a pause that grows with its claims (RETRY_PAUSE_SECONDS), for a
        later claim (counted in `attempts`)."""
        pause = min(RETRY_PAUSE_SECONDS * 8 ** min(claim.attempts - 1, 8), RETRY_PAUSE_MAX_SECONDS)
        retry_at = utcnow() + timedelta(seconds=max(pause, self.settings.sweep_interval_seconds))
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(_datasets)
                .where(_datasets.c.id == claim.dataset_id, _datasets.c.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=retry_at)
            )

    # -- the loop ---------------------------------------------------------------------------------------------

    def run_once(self, max_datasets: int | None = None) -> int:
        """Validate claimable datasets until none is left (or `max_datasets` were done, or `stop` was called);
        returns how many."""
        done = 0
        while (max_datasets is None or done < max_datasets) and not self.stopping.is_set():
            claim = self.claim_next()
            if claim is None:
                break
            self.process(claim)
            done += 1
        return done


def run_housekeeping(engine: Engine, store: ObjectStore, settings: Settings) -> None:
    """housekeeping.py's pass. A database error is logged, not raised, like the sweep's in `run_worker`: it must not
    stop the validations beside it (storage errors are handled per dataset inside the pass)."""
    try:
        expire_abandoned_uploads(engine, store, settings)
        purge_deleted_files(engine, store, settings)
    except SQLAlchemyError:
        log.exception("housekeeping failed; it runs again in %ss", HOUSEKEEPING_INTERVAL_SECONDS)


def _log_outcome(claim: Claim, outcome: str, started: float, *, validated: bool = False) -> None:
    """One line per processed dataset: its outcome and how long it took (with the speed, when it was read)."""
    seconds = time.monotonic() - started
    speed = f", {claim.file_size / seconds / 1e6:,.1f} MB/s" if validated and seconds > 0 else ""
    log.info(
        "dataset %s (%s, %s bytes): %s after %.2f s%s",
        claim.dataset_id,
        claim.format,
        f"{claim.file_size:,}",
        outcome,
        seconds,
        speed,
    )


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' if count != 1 else ''}"


# Set in a stored report whose listed issues and samples the database refused (`_without_lists`): the detail page
# says why it lists no lines beside complete counts. Not in FORMAT.md's report, which the CLI and API give as is.
LISTS_DROPPED = "lists_dropped"


def _without_lists(report: dict[str, Any]) -> dict[str, Any]:
    """A report without its listed issues and samples (the counts per code stay), marked LISTS_DROPPED."""
    return {**report, "errors": [], "warnings": [], "samples": [], LISTS_DROPPED: True}


def summarize_errors(report: dict[str, Any]) -> str:
    """For the detail page's banner and the notification: how many errors, and the one to fix first, with its line
    and suggestion.

    That is the first listed error of the most frequent code, not the first listed: file-level errors are listed
    first, and a file uploaded in the wrong format has a `wrong_format` on every line and, listed before them, a
    `no_training_pairs` that only follows from those; its fix is the choice of format that `wrong_format` suggests.
    """
    count = report.get("error_count") or 0
    errors: list[dict[str, Any]] = report.get("errors") or []
    counts: dict[str, int] = report.get("error_counts") or {}
    text = f"{_counted(count, 'error')} found"
    if not errors:
        return text
    listed = {issue["code"] for issue in errors}
    # sorted() is stable: among codes as frequent, the one that appears first in the file.
    code = next((code for code in sorted(counts, key=lambda c: -counts[c]) if code in listed), errors[0]["code"])
    issue = next(issue for issue in errors if issue["code"] == code)
    if len(counts) > 1:
        text += f", {counts.get(code, 0):,} of them `{code}`; the first: "
    else:
        text += "; the first: " if count > 1 else ": "
    where = f"line {issue['line']}: " if issue.get("line") is not None else ""
    suggestion = f" {issue['suggestion']}" if issue.get("suggestion") else ""
    return f"{text}{where}{issue['message']}{suggestion}"


# -- APScheduler wiring ---------------------------------------------------------------------------------------

_scheduler_lock = threading.Lock()
_scheduler: BackgroundScheduler | None = None
_sweeper: Sweeper | None = None


def start_sweep(engine: Engine, store: ObjectStore, settings: Settings) -> BackgroundScheduler:
    """Start this process's sweep (once: later calls return the running scheduler)."""
    global _scheduler, _sweeper
    with _scheduler_lock:
        if _scheduler is not None and _scheduler.running:
            return _scheduler
        sweeper = Sweeper(engine, store, settings)
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            sweeper.run_once,
            "interval",
            seconds=settings.sweep_interval_seconds,
            id=SWEEP_JOB_ID,
            max_instances=1,
            coalesce=True,
            # A sweep that starts late is still worth running; the default of 1 s would skip it silently.
            misfire_grace_time=max(30, int(settings.sweep_interval_seconds * 2)),
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            run_housekeeping,
            "interval",
            args=(engine, store, settings),
            seconds=HOUSEKEEPING_INTERVAL_SECONDS,
            id=HOUSEKEEPING_JOB_ID,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(HOUSEKEEPING_INTERVAL_SECONDS),
            next_run_time=datetime.now(UTC),
        )
        if sweeper.limits.workers > 1:
            scheduler.add_job(start_worker_server, id="lora-validation-workers")  # once, now, beside the sweep
        scheduler.start()
        _scheduler, _sweeper = scheduler, sweeper
        log.info("validation sweep started (every %ss, owner %s)", settings.sweep_interval_seconds, sweeper.owner)
        return scheduler


def stop_sweep(wait: bool = True) -> None:
    """Stop this process's sweep: no new claim, and (with `wait`) return once the dataset being validated is
    written."""
    global _scheduler, _sweeper
    with _scheduler_lock:
        if _sweeper is not None:
            _sweeper.stop()
        if _scheduler is not None and _scheduler.running:
            _scheduler.shutdown(wait=wait)
        _scheduler, _sweeper = None, None


def run_worker(settings: Settings, *, once: bool = False) -> int:
    """`python -m lora_core worker`: the sweep alone, for deployments that run validation apart from the pages.

    With `once`, validates what is claimable now and returns how many; else sweeps every interval until stopped.
    """
    runtime = build_runtime(settings, serves_browsers=False)
    sweeper = Sweeper(runtime.engine, runtime.store, runtime.settings)
    if sweeper.limits.workers > 1:
        start_worker_server()
    if once:
        run_housekeeping(runtime.engine, runtime.store, runtime.settings)
        return sweeper.run_once()
    stop = sweeper.stopping  # a signal stops the loop between datasets, after the one being validated
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sweeper.stop())
    log.info("worker %s sweeping every %ss", sweeper.owner, settings.sweep_interval_seconds)
    done = 0
    housekeeping_due = time.monotonic()
    while not stop.is_set():
        if time.monotonic() >= housekeeping_due:
            run_housekeeping(runtime.engine, runtime.store, runtime.settings)
            housekeeping_due = time.monotonic() + HOUSEKEEPING_INTERVAL_SECONDS
        try:
            done += sweeper.run_once()
        except SQLAlchemyError:  # the database restarting, say: the worker waits and tries again
            log.exception("sweep failed; it runs again in %ss", settings.sweep_interval_seconds)
        stop.wait(settings.sweep_interval_seconds)
    log.info("worker %s stopped", sweeper.owner)
    return done
