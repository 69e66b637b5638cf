"""Worker processes for the per-line stage of large inputs (blocks.py); the merge stays in the calling process.

Parsing, the record rules and the token estimate are CPU-bound Python, so threads do not help, and they are ~85%
of a validation: checking blocks of lines in worker processes while the caller reads and merges is what reaches
the benchmark target on two cores. Workers start from a "forkserver" (a plain fork of a multi-threaded web
server is unsafe), so starting them costs a fraction of a second; the validator only starts them for large inputs.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

from lora_core.validation.blocks import BlockChecker, BlockResult, ShapeHint
from lora_core.validation.limits import ValidationLimits

try:
    import resource
except ImportError:  # not on Windows; the peak RSS report is then left out
    resource = None  # type: ignore[assignment]

_checker: BlockChecker | None = None


def _start_worker(fmt: str, limits: ValidationLimits, caller_pid: int) -> None:
    global _checker
    _checker = BlockChecker(fmt, limits)
    threading.Thread(target=_exit_when_gone, args=(caller_pid,), name="caller-watch", daemon=True).start()


def _exit_when_gone(caller_pid: int) -> None:
    """End this worker once the process that started the pool is gone.

    A caller killed outright (SIGKILL, the OOM killer) never shuts its pool down, and the workers, which hold both
    ends of their task queue, would wait for work forever.
    """
    while True:
        time.sleep(1.0)
        try:
            os.kill(caller_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the pid now belongs to another user's process: ours is gone
            os._exit(0)


def _started() -> tuple[int, int] | None:
    return (os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) if resource is not None else None


def _check_block(
    first_number: int,
    data: bytes,
    too_long_last: bool,
    first_nonblank: int | None,
    hint: ShapeHint,
    room: tuple[int, int],
) -> BlockResult:
    assert _checker is not None, "the pool's initializer did not run"
    result = _checker.check_bytes(first_number, data, too_long_last, first_nonblank, hint, room)
    if resource is not None:
        result.worker = (os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return result


def read_range(fd: int, offset: int, length: int) -> bytes:
    """`length` bytes of an open file from `offset`, or fewer when the file has shrunk since."""
    data = os.pread(fd, length, offset)
    if len(data) < length:
        parts = [data]
        got = len(data)
        while got < length:
            more = os.pread(fd, length - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


def _check_range(
    path: str,
    ident: tuple[int, int],
    offset: int,
    length: int,
    first_number: int,
    too_long_last: bool,
    first_nonblank: int | None,
    hint: ShapeHint,
    room: tuple[int, int],
) -> BlockResult | None:
    """`_check_block` on bytes this worker reads itself from the caller's file; None when it cannot read them as the
    caller sees them (the file moved or replaced since, or shorter): the caller then checks the block itself."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) != ident:
            return None
        data = read_range(fd, offset, length)
    finally:
        os.close(fd)
    if len(data) < length:
        return None
    if data and data[-1:] != b"\n":
        data += b"\n"  # the file's last line, which lacks its b"\n" (see reader.LineReader.blocks)
    return _check_block(first_number, data, too_long_last, first_nonblank, hint, room)


class BlockPool:
    """A pool of worker processes checking blocks of one file; `submit` returns a future of its BlockResult.

    Use as a context manager: leaving it, on success or error, cancels what has not started and waits for the
    workers, so an exception (from the byte source or a worker) never leaves processes behind.
    """

    def __init__(self, workers: int, fmt: str, limits: ValidationLimits) -> None:
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_start_worker,
            initargs=(fmt, limits, os.getpid()),
        )
        # One no-op per worker: the workers start now, and `started` tells when they are up.
        self._warm_up = [self._executor.submit(_started) for _ in range(workers)]

    def started(self) -> bool:
        """Whether every worker is up; until then the caller checks blocks itself rather than wait."""
        return all(future.done() for future in self._warm_up)

    def submit(
        self,
        first_number: int,
        data: bytes,
        too_long_last: bool,
        first_nonblank: int | None,
        hint: ShapeHint,
        room: tuple[int, int],
    ) -> Future[BlockResult]:
        """Check a block (see BlockChecker.check_bytes): it travels as one bytes object, cheap to send."""
        return self._executor.submit(_check_block, first_number, data, too_long_last, first_nonblank, hint, room)

    def submit_range(
        self,
        path: str,
        ident: tuple[int, int],
        offset: int,
        length: int,
        first_number: int,
        too_long_last: bool,
        first_nonblank: int | None,
        hint: ShapeHint,
        room: tuple[int, int],
    ) -> Future[BlockResult | None]:
        """Check the block at `offset` of the local file `path` (device and inode `ident`): the worker reads it, so
        its bytes never pass through the caller. The future's result is None when the worker could not read it."""
        return self._executor.submit(
            _check_range, path, ident, offset, length, first_number, too_long_last, first_nonblank, hint, room
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlockPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
