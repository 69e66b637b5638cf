"""A download validated while it is spooled to disk (spool.py) gives the report of a single pass over its bytes, and
leaves no file behind, whether it succeeds, the download breaks, or the object is not the size it was said to be."""

from __future__ import annotations

import gzip
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lora_core.validation import ValidationLimits
from lora_core.validation import spool as spool_module
from lora_core.validation import validator as validator_module
from lora_core.validation.sources import SourceChanged
from lora_core.validation.spool import WINDOW_BYTES, Spool
from lora_core.validation.validator import run_source_validation, run_validation, validate_download
from tests.conftest import EQ12_PATH
from tests.validation.test_file_ranges import FILE_CASES, LINE_LIMIT
from tests.validation.test_rule_codes import V4


class BrokenDownload(Exception):
    pass


def trickle(data: bytes, size: int, *, fail_after: int | None = None) -> Iterator[bytes]:
    """The chunks of a slow download, raising BrokenDownload after `fail_after` bytes when asked to."""
    for start in range(0, len(data), size):
        if fail_after is not None and start >= fail_after:
            raise BrokenDownload("connection reset")
        time.sleep(0.0005)
        yield data[start : start + size]


def record_spools(monkeypatch: pytest.MonkeyPatch) -> list[Spool]:
    """The spools the validator makes from now on, in order (still usable after they are closed)."""
    spools: list[Spool] = []

    class RecordingSpool(Spool):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            spools.append(self)

    monkeypatch.setattr(validator_module, "Spool", RecordingSpool)
    return spools


def single_pass(data: bytes) -> str:
    report, _info = run_validation(iter((data,)), V4, ValidationLimits(workers=0, line_limit_bytes=LINE_LIMIT))
    return json.dumps(report.to_dict())


@pytest.mark.parametrize("window", [WINDOW_BYTES, 300], ids=["window 64 MiB", "window 300 B"])
@pytest.mark.parametrize("name", list(FILE_CASES))
def test_a_spooled_download_gives_the_single_pass_report(
    name: str, window: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also through a window smaller than a span: the download waits for the merge, and every merged span is
    punched out of the file (in steps of 512 bytes here), before the workers of later spans read theirs."""
    monkeypatch.setattr(spool_module, "PUNCH_BYTES", 512)
    data = FILE_CASES[name]
    limits = ValidationLimits(workers=2, line_limit_bytes=LINE_LIMIT)
    with Spool(trickle(data, 97), len(data), tmp_path, window=window) as spool:
        report, info = run_source_validation(spool.source, V4, limits, block_bytes=200, parallel_from_bytes=-1)
    assert json.dumps(report.to_dict()) == single_pass(data)
    if report.stats.total_examples > 3 and "json array" not in name:
        assert info.workers == 2 and info.worker_peak_rss_kib  # workers read spans of the file while it grew
    assert list(tmp_path.iterdir()) == []


def test_a_broken_download_raises_its_error_and_leaves_nothing(tmp_path: Path) -> None:
    data = FILE_CASES["header, duplicates and many lines"]
    limits = ValidationLimits(workers=2, line_limit_bytes=LINE_LIMIT)
    chunks = trickle(data, 50, fail_after=len(data) // 2)
    with pytest.raises(BrokenDownload), Spool(chunks, len(data), tmp_path) as spool:
        run_source_validation(spool.source, V4, limits, block_bytes=200, parallel_from_bytes=-1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("window", [WINDOW_BYTES, 300], ids=["window 64 MiB", "window 300 B"])
@pytest.mark.parametrize("declared", [-10, 10], ids=["shorter than said", "longer than said"])
def test_an_object_of_another_size_is_source_changed(declared: int, window: int, tmp_path: Path) -> None:
    """An object longer than said is found at the end of its download, past the window too."""
    data = FILE_CASES["header, duplicates and many lines"]
    limits = ValidationLimits(workers=2, line_limit_bytes=LINE_LIMIT)
    spool = Spool(trickle(data, 64), len(data) + declared, tmp_path, window=window)
    with pytest.raises(SourceChanged), spool:
        run_source_validation(spool.source, V4, limits, block_bytes=200, parallel_from_bytes=-1)
    assert list(tmp_path.iterdir()) == []


def test_validate_download_spools_only_large_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = FILE_CASES["header, duplicates and many lines"]
    limits = ValidationLimits(workers=2, line_limit_bytes=LINE_LIMIT)
    spools = record_spools(monkeypatch)
    small = validate_download(trickle(data, 64), len(data), tmp_path, V4, limits)
    assert spools == []  # under PARALLEL_FROM_BYTES: checked as it streams in
    monkeypatch.setattr(validator_module, "PARALLEL_FROM_BYTES", 100)
    large = validate_download(trickle(data, 64), len(data), tmp_path, V4, limits)
    assert [spool.size for spool in spools] == [len(data)]
    assert json.dumps(small.to_dict()) == json.dumps(large.to_dict()) == single_pass(data)
    assert list(tmp_path.iterdir()) == []
    too_large = validate_download(iter(()), limits.max_upload_bytes + 1, tmp_path, V4, limits)
    assert too_large.error_counts == {"file_too_large": 1}


def test_a_validation_that_stops_early_does_not_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip archive is `not_text` from its first bytes: the report does not wait for the rest of the download."""
    sent: list[int] = []

    def slow_zip() -> Iterator[bytes]:
        for index in range(2000):
            sent.append(index)
            time.sleep(0.001)
            yield (b"PK\x03\x04" if index == 0 else b"") + b"\x00" * 10_000

    monkeypatch.setattr(validator_module, "PARALLEL_FROM_BYTES", 100)
    report = validate_download(slow_zip(), 2000 * 10_000 + 4, tmp_path, V4, ValidationLimits(workers=2))
    assert report.error_counts == {"not_text": 1}
    assert len(sent) < 500  # one read of 1 MiB was needed; 20 MB were on offer
    assert list(tmp_path.iterdir()) == []


def test_spool_files_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    host = spool_module._host_tag()
    orphan = tmp_path / f"validating-999999999-{host}-abc.part"  # no such pid here
    elsewhere = tmp_path / "validating-999999999-0badc0de-abc.part"  # a process of another machine sharing the folder
    untagged = tmp_path / "validating-999999999-xyz.part"  # named before names had a machine tag
    other = tmp_path / "notes.txt"
    for path in (orphan, elsewhere, untagged, other):
        path.write_bytes(b"kept")
    with Spool(iter([b"{}\n"]), 3, tmp_path) as spool:
        assert not orphan.exists() and not untagged.exists() and elsewhere.exists() and other.exists()
        assert Path(spool.path).exists() and f"validating-{os.getpid()}-{host}-" in spool.path
        spool.wait(3)
        Path(spool.path).unlink()  # removed meanwhile (by hand, say): leaving the spool still works
    assert sorted(tmp_path.iterdir()) == sorted([elsewhere, other])


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_download_stays_a_window_ahead_and_released_bytes_leave_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "PUNCH_BYTES", 4096)
    data = os.urandom(256 * 1024)
    window, chunk = 32 * 1024, 1024
    with Spool(trickle(data, chunk), len(data), tmp_path, window=window) as spool:
        spool.wait(chunk)
        time.sleep(0.3)  # time enough to download it all, were it not for the window
        assert window <= spool.written <= window + chunk
        spool.wait(window + 10 * chunk)  # what is waited for comes in, window or not
        assert spool.written >= window + 10 * chunk

        spool.release(100 * 1024)
        wait_until(lambda: spool.written >= 100 * 1024 + window)
        time.sleep(0.3)
        assert spool.written <= 100 * 1024 + window + chunk
        assert os.pread(spool.read_fd, 4096, 100 * 1024) == data[100 * 1024 : 100 * 1024 + 4096]
        if spool_module._hole_puncher() is None or spool.punched == 0:
            pytest.skip("this file system cannot punch holes in files; the window still bounds the download")
        assert spool.punched == 100 * 1024 - 100 * 1024 % 4096
        assert os.pread(spool.read_fd, 4096, 0) == bytes(4096)  # punched out: read back as zeros
        assert os.stat(spool.path).st_blocks * 512 < spool.written  # the file holds less than was downloaded
        spool.release(len(data))
        spool.wait(len(data))
    assert list(tmp_path.iterdir()) == []


def test_closing_a_spool_stops_a_download_held_by_its_window(tmp_path: Path) -> None:
    data = os.urandom(64 * 1024)
    with Spool(trickle(data, 1024), len(data), tmp_path, window=4096) as spool:
        spool.wait(1024)
        thread = spool._thread
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert list(tmp_path.iterdir()) == []


def zip_download(first: int, closed: threading.Event, read: threading.Event | None = None) -> Iterator[bytes]:
    """A zip archive's download (`not_text` from its first bytes) that sets `closed` when it is closed or ends; its
    second read waits for `read` when given (a read in progress when the validation ends)."""
    try:
        yield b"PK\x03\x04" + bytes(first)
        if read is not None:
            read.wait(10)
        while True:
            yield bytes(10_000)
    finally:
        closed.set()


@pytest.mark.parametrize(
    ("size", "workers"),
    [(20_000_000, 2), (20_000_000, 0), (600 * 1024 * 1024, 2)],
    ids=["spooled", "streamed", "over the limit, unread"],
)
def test_validate_download_closes_the_chunks_it_takes_over(
    size: int, workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validation that stops early leaves no download open: the chunks are closed before it returns."""
    monkeypatch.setattr(validator_module, "PARALLEL_FROM_BYTES", 100)
    closed = threading.Event()
    chunks = zip_download(2_000_000, closed)
    report = validate_download(chunks, size, tmp_path, V4, ValidationLimits(workers=workers))
    unread = size > 500 * 1024 * 1024
    assert report.error_counts == ({"file_too_large": 1} if unread else {"not_text": 1})
    assert inspect.getgeneratorstate(chunks) == inspect.GEN_CLOSED
    assert closed.is_set() != unread  # a generator never started has nothing to clean up
    assert list(tmp_path.iterdir()) == []


def test_a_read_in_progress_when_the_validation_ends_is_closed_by_the_spool_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report does not wait for a slow read (beyond STOP_WAIT_SECONDS), and the generator, which only its own
    thread can close while it runs, is closed by the spool's thread once the read returns."""
    monkeypatch.setattr(validator_module, "PARALLEL_FROM_BYTES", 100)
    monkeypatch.setattr(spool_module, "STOP_WAIT_SECONDS", 0.05)
    closed, read = threading.Event(), threading.Event()
    chunks = zip_download(2_000_000, closed, read)
    started = time.monotonic()
    report = validate_download(chunks, 20_000_000, tmp_path, V4, ValidationLimits(workers=2))
    assert report.error_counts == {"not_text": 1}
    assert time.monotonic() - started < 5
    assert not closed.is_set()  # the second read is still in progress
    with pytest.raises(ValueError, match="already executing"):
        chunks.close()  # what a caller closing the chunks itself would run into
    read.set()
    assert closed.wait(5)
    assert list(tmp_path.iterdir()) == []


def test_a_gzip_download_is_released_as_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gzip is read in order through this process, not in spans: what was read leaves the spool as it goes, so
    disk use stays within the window for a compressed object too."""
    monkeypatch.setattr(validator_module, "PARALLEL_FROM_BYTES", 100)
    spools = record_spools(monkeypatch)
    data = gzip.compress(EQ12_PATH.read_bytes() * 20)  # ~0.9 MB, downloaded in 4 KB chunks
    report = validate_download(trickle(data, 4096), len(data), tmp_path, V4, ValidationLimits(workers=2))
    expected, _info = run_validation(iter((data,)), V4, ValidationLimits(workers=0))
    assert report.to_dict() == expected.to_dict()
    [spool] = spools
    assert spool.released == len(data)
    assert list(tmp_path.iterdir()) == []


def test_a_spool_that_cannot_be_created_closes_the_chunks(tmp_path: Path) -> None:
    """No thread will read them: the download is let go at once (a spool folder that is a file, say)."""
    closed = threading.Event()
    chunks = zip_download(10, closed)
    next(chunks)  # a download under way
    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"")
    with pytest.raises(OSError):
        Spool(chunks, 20_000_000, blocked)
    assert closed.is_set() and inspect.getgeneratorstate(chunks) == inspect.GEN_CLOSED
