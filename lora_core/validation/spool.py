"""A remote object validated while it downloads: streamed once into a local spool file, checked span by span.

S3 serves one sequential GET fast, but each ranged GET of a large object costs time in proportion to the whole
object on moto (~200 ms per 2 MiB range of a 500 MB object, against ~1 GB/s for one GET). So the object is
streamed once, by a thread of the validating process, into a file under the spool folder, and worker processes
read their spans of that file (sources.LocalFileSource) once the download has passed everything they may read
(sources.span_reach). Memory stays bounded: the object goes to disk, not to RAM; the file is removed afterwards.

The file holds a window of the object, not all of it: the download runs at most `window` bytes ahead of what the
validation has released (merged spans are never read again), and released bytes are punched out of the file
(fallocate, where Linux and the file system allow it). Disk use stays bounded whatever the object's size, and the
page cache reuses the same pages: writing 500 MB into fresh page cache took ~0.5 s of kernel time on a VM that had
sat idle, ~0.09 s through a 64 MiB window; the file is removed in ~2 ms instead of ~25 ms.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType

from lora_core.validation.limits import MIB
from lora_core.validation.sources import LocalFileSource, SourceChanged, iter_source

# How far the download may run ahead of what the validation has released (unless the validation waits for more).
WINDOW_BYTES = 64 * MIB
# Released bytes are punched out of the file in steps of at least this.
PUNCH_BYTES = 4 * MIB
# How long closing a spool waits for its download thread to stop (it stops between chunks; a read in progress
# finishes first). A thread still reading then closes the chunks itself when its read returns.
STOP_WAIT_SECONDS = 2.0


def close_chunks(chunks: Iterable[bytes]) -> None:
    """Close an iterator of chunks that has a `close` (a generator over a download: its connection is let go)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


class Spool:
    """`chunks` written to a new file in `directory` by a thread; `wait(end)` blocks until bytes [0, end) are in.

    Use as a context manager: leaving it stops the download (between chunks) and removes the file. An exception
    raised by `chunks` (a storage error) is raised again by `wait`, in the validating thread.

    The spool takes `chunks` over: its thread, the only one that reads them, closes them when it stops (a generator
    cannot be closed by another thread while it runs, and a validation may end while a read is in progress).
    """

    def __init__(
        self, chunks: Iterable[bytes], size: int, directory: str | os.PathLike[str], window: int = WINDOW_BYTES
    ) -> None:
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            remove_orphans(directory)
            prefix = f"validating-{os.getpid()}-{_host_tag()}-"
            write_fd, self.path = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=directory)
        except BaseException:
            close_chunks(chunks)  # no thread will read them
            raise
        self.size = size
        self.written = 0
        self.error: BaseException | None = None
        self._done = False
        self._stop = False
        self._changed = threading.Condition()
        self._window = window
        self._allowed = window  # the download writes on while `written` is below this
        self.released = 0  # bytes before this are not read again
        self.punched = 0  # bytes before this are punched out of the file
        self._punch = _hole_puncher()
        self.read_fd = os.open(self.path, os.O_RDWR)  # read here, and written to punch holes in (fallocate)
        self.source = SpooledSource(LocalFileSource.open(self.read_fd, self.path, size), self)
        self._thread = threading.Thread(target=self._download, args=(chunks, write_fd), name="spool", daemon=True)
        self._thread.start()

    def _download(self, chunks: Iterable[bytes], fd: int) -> None:
        try:
            for chunk in chunks:
                with self._changed:
                    # Past the size it reads on, window or not: more bytes mean the object changed.
                    while self._allowed <= self.written < self.size and not self._stop:
                        self._changed.wait()
                if self._stop:
                    return
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                with self._changed:
                    self.written += len(chunk)
                    self._changed.notify_all()
                if self.written > self.size:
                    raise SourceChanged("the object is larger than it was when its validation started")
        except BaseException as exc:  # handed to the validating thread by `wait`
            self.error = exc
        finally:
            os.close(fd)
            try:
                close_chunks(chunks)
            except Exception as exc:  # a download that cannot even close is one that failed
                self.error = self.error or exc
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def wait(self, end: int) -> None:
        """Return once bytes [0, min(end, size)) are in the file; raise the download's error if it failed."""
        end = min(end, self.size)
        with self._changed:
            if end > self._allowed:  # what is waited for may always be downloaded, whatever the window
                self._allowed = end
                self._changed.notify_all()
            while self.written < end and not self._done:
                self._changed.wait()
        if self.written < end:
            if self.error is not None:
                raise self.error
            raise SourceChanged("the object is smaller than it was when its validation started")

    def release(self, offset: int) -> None:
        """Bytes before `offset` will not be read again: let the download run `window` bytes past them, and punch
        them out of the file."""
        with self._changed:
            if offset <= self.released:
                return
            self.released = offset
            if offset + self._window > self._allowed:
                self._allowed = offset + self._window
                self._changed.notify_all()
        upto = offset - offset % PUNCH_BYTES
        if self._punch is not None and upto - self.punched >= PUNCH_BYTES:
            if self._punch(self.read_fd, self.punched, upto - self.punched):
                self.punched = upto
            else:
                self._punch = None  # not on this file system: the file keeps what was downloaded

    def close(self) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        self._thread.join(STOP_WAIT_SECONDS)
        self.source.local.close()
        os.close(self.read_fd)
        Path(self.path).unlink(missing_ok=True)  # gone already: another machine's remove_orphans (old names)

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, _value: BaseException | None, _traceback: TracebackType | None
    ) -> None:
        """Remove the file; after a validation that read all it needed, also see the download end well (an object
        longer than its size is found only there)."""
        try:
            # A validation that stopped early (not text, a JSON array, a gzip cap) did not need the rest: it is not
            # waited for. One that read the whole object waits for the stream's end, which is one chunk away.
            if kind is None and self.written >= self.size:
                self._thread.join()
                if self.error is not None:
                    raise self.error
        finally:
            self.close()


def remove_orphans(directory: str | os.PathLike[str]) -> None:
    """Remove the spool files of processes that are gone (killed mid-validation: nothing else would remove them).

    A file's name holds the pid of the process that spooled it and a tag of its machine: a pid means something only
    on its own machine (or container), and the data folder may be shared by several.
    """
    for path in Path(directory).glob("validating-*.part"):
        parts = path.name.removesuffix(".part").split("-")  # mkstemp's random part has no dash
        # This machine's files; and those named before names had a machine tag (3 parts), taken as its, as then.
        ours = len(parts) == 3 or (len(parts) == 4 and parts[2] == _host_tag())
        pid = parts[1] if ours else ""
        if not (pid.isascii() and pid.isdecimal()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:  # a live process of another user
            continue


@functools.cache
def _host_tag() -> str:
    """This machine's tag in spool file names: 8 hex digits (no dash) of its host name and, on Linux, of its pid
    namespace, within which pids mean something (containers sharing a host name may each have their own)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux, or no /proc
        namespace = 0
    return hashlib.sha256(f"{socket.gethostname()}/{namespace}".encode()).hexdigest()[:8]


class SpooledSource:
    """The spool file as a sources.ByteSource for the validating process: every read waits for its bytes; a worker
    gets the file itself (`for_worker`), once the download has passed what it may read."""

    def __init__(self, local: LocalFileSource, spool: Spool) -> None:
        self.local = local
        self.spool = spool
        self.size = local.size

    def read(self, offset: int, length: int) -> bytes:
        self.spool.wait(offset + length)
        return self.local.read(offset, length)

    def chunks(self, offset: int, chunk_bytes: int) -> Iterator[bytes]:
        return iter_source(self, offset, chunk_bytes)  # each read waits for its bytes

    def for_worker(self, reach: int) -> LocalFileSource:
        self.spool.wait(reach)
        return self.local

    def release(self, offset: int) -> None:
        self.spool.release(offset)


@functools.cache
def _hole_puncher() -> Callable[[int, int, int], bool] | None:
    """fallocate(fd, PUNCH_HOLE | KEEP_SIZE, offset, length) from the C library, which frees a file's blocks and
    cached pages in place (the file's size and the descriptors open on it stay); None where there is no such call
    (not Linux). The function returns False where the file system refuses it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int
    punch_hole_keep_size = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (linux/falloc.h)

    def punch(fd: int, offset: int, length: int) -> bool:
        return fallocate(fd, punch_hole_keep_size, offset, length) == 0

    return punch
