"""Worker processes for the per-line stage of large inputs (blocks.py); the merge stays in the calling process.

Parsing, the record rules and the token estimate are CPU-bound Python, so threads do not help, and they are nearly
all of a validation: checking spans of a file in worker processes, each reading its span from the source itself
(sources.py), while the caller only merges, is what reaches the benchmark target on two cores. Workers start from a
"forkserver" (a plain fork of a multi-threaded web server is unsafe) that has imported the validator once, and
without the caller's main script (worker_main.py), so a worker starts in milliseconds instead of importing either
again (~0.2 s of CPU each under Streamlit); the validator only starts them for large inputs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

from lora_core.validation.blocks import BlockChecker, BlockResult, ShapeHint
from lora_core.validation.limits import ValidationLimits
from lora_core.validation.sources import ByteSource, SourceChanged, read_span

try:
    import resource
except ImportError:  # not on Windows; the peak RSS report is then left out
    resource = None  # type: ignore[assignment]

_checker: BlockChecker | None = None

logger = logging.getLogger(__name__)

# Imported by the workers' forkserver before anything else: it starts a `ValidationWorker` without the caller's
# main script, which every worker would otherwise run again.
WORKER_MAIN_MODULE = "lora_core.validation.worker_main"

try:
    from multiprocessing.context import ForkServerContext, ForkServerProcess
except ImportError:  # Windows: no forkserver
    _WORKER_CONTEXT = None
else:

    class ValidationWorker(ForkServerProcess):
        """A worker process of a pool from `_context()`. Its name starts with its class's (`WORKER_NAME_PREFIX`),
        which is how the forkserver knows to prepare it without the caller's main script (worker_main.py)."""

    class _WorkerContext(ForkServerContext):
        Process = ValidationWorker

    _WORKER_CONTEXT = _WorkerContext()

# multiprocessing names a process after its class: "ValidationWorker-3".
WORKER_NAME_PREFIX = "ValidationWorker-"


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
    """This worker's (pid, peak RSS in KiB), or None where `resource` is missing."""
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
    result.worker = _started()
    return result


def span_block(
    source: ByteSource,
    data_start: int,
    start: int,
    end: int,
    first_nonblank_at: int | None,
    line_limit: int,
    first_number: int = 1,
) -> tuple[int, bytes, bool, int | None]:
    """The lines of `source` that start in [start, end) (sources.read_span) as a block to check, numbered from
    `first_number`: from 1 in a worker, which cannot know how many lines the spans before held (the merge shifts
    them). `first_nonblank_at`, the byte offset of the file's first non-blank line, becomes its line number here
    when it falls in the span (a `_meta` header is allowed there)."""
    first, data, too_long_last = read_span(source, data_start, start, end, line_limit)
    first_nonblank = None
    if first_nonblank_at is not None and first <= first_nonblank_at < first + len(data):
        first_nonblank = first_number + data.count(b"\n", 0, first_nonblank_at - first)
    return first_number, data, too_long_last, first_nonblank


def _check_span(
    source: ByteSource,
    data_start: int,
    start: int,
    end: int,
    first_nonblank_at: int | None,
    hint: ShapeHint,
    room: tuple[int, int],
) -> BlockResult | None:
    """Check a span (`span_block`) in a worker; None when the source is no longer the object the caller started
    on (the caller then checks the span from what it has open)."""
    assert _checker is not None, "the pool's initializer did not run"
    try:
        block = span_block(source, data_start, start, end, first_nonblank_at, _checker.limits.line_limit_bytes)
    except SourceChanged:
        return None
    result = _checker.check_bytes(*block, hint, room)
    result.worker = _started()
    return result


def _context() -> multiprocessing.context.BaseContext:
    """The context of the validation workers: a forkserver that has imported the line checks, whose processes are
    `ValidationWorker`s (started without the caller's main script, worker_main.py)."""
    if _WORKER_CONTEXT is None:  # no forkserver on this platform (Windows): the same error as before
        return multiprocessing.get_context("forkserver")
    # Imported once by the forkserver (which starts with the first pool), not by every worker.
    _WORKER_CONTEXT.set_forkserver_preload([WORKER_MAIN_MODULE, __name__])
    return _WORKER_CONTEXT


def start_worker_server() -> None:
    """Start the forkserver that worker processes fork from, and return once it has imported the validator.

    multiprocessing keeps one forkserver per process, for the process's life: only the first pool would pay for
    starting it (~0.2 s of a core, while the validation waits for its workers). A process that will validate (the
    sweep) calls this at its start, so its first validation starts like every later one.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=_context()) as pool:
        if not pool.submit(_started_without_main).result():
            logger.warning(
                "Validation workers will start slowly: their forkserver could not import %s, so each one runs this "
                "process's main script again. Install lora_core (`pip install -e .` in the project folder, as "
                "scripts/run.sh does) or run from the project folder.",
                WORKER_MAIN_MODULE,
            )


def _started_without_main() -> bool:
    """In a worker: whether its forkserver prepared it without the caller's main script (worker_main.py)."""
    return WORKER_MAIN_MODULE in sys.modules


class BlockPool:
    """A pool of worker processes checking blocks of one file; `submit` and `submit_span` return a future of the
    block's BlockResult.

    Use as a context manager: leaving it, on success or error, cancels what has not started and waits for the
    workers, so an exception (from the byte source or a worker) never leaves processes behind.
    """

    def __init__(self, workers: int, fmt: str, limits: ValidationLimits) -> None:
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_context(),
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

    def submit_span(
        self,
        source: ByteSource,
        data_start: int,
        start: int,
        end: int,
        first_nonblank_at: int | None,
        hint: ShapeHint,
        room: tuple[int, int],
    ) -> Future[BlockResult | None]:
        """Check the lines that start in [start, end) of `source` (see `span_block`): the worker reads them, so
        their bytes never pass through the caller. The future's result is None when the worker found the source
        changed."""
        return self._executor.submit(_check_span, source, data_start, start, end, first_nonblank_at, hint, room)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlockPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
