"""Byte sources a validation can read at any offset, and the spans of lines cut from them without a newline scan.

A large stored file is validated span by span: the file is cut at fixed byte offsets, and whoever checks a span
(a worker process, usually) reads it from the source itself and takes the lines that *start* in it, reading past
its end to finish the last one. So the validating process reads nothing but the file's head, and the lines of a
span are numbered from 1: the merge (validator.py) knows how many lines the spans before it held, and shifts them.

A source is small and picklable (a path), so it travels to worker processes; each process opens it once and pins
the very file the validation started on, by (device, inode). Reading something else raises `SourceChanged`, and
the validating process, which still has the file open, checks that span itself. (An S3 object is first streamed
into such a file: spool.py.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

# What is read past a span's end at first, to finish its last line without a second read in most files.
SPAN_OVERLAP = 256 * 1024
# What is read at a time while finishing a line longer than SPAN_OVERLAP, or looking for a span's first line.
EXTEND_BYTES = 1024 * 1024


class SourceChanged(OSError):
    """The source is no longer the object the validation started on (replaced, moved or gone)."""


class ByteSource(Protocol):
    """Random access to a stored object's bytes; picklable, so worker processes read their spans themselves."""

    size: int

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset`; fewer only at the end of the object. Raises OSError (SourceChanged when the
        object is not the one the validation started on) or a storage error."""
        ...

    def chunks(self, offset: int, chunk_bytes: int) -> Iterator[bytes]:
        """The bytes from `offset` to the end, in chunks of about `chunk_bytes`, for what is read in order (gzip,
        small files, a file's head)."""
        ...

    def for_worker(self, reach: int) -> ByteSource:
        """The source a worker process reads bytes [0, reach) from (picklable); it may wait until they are there
        (spool.SpooledSource: an object still downloading)."""
        ...

    def release(self, offset: int) -> None:
        """Bytes before `offset` will not be read again: a spooled download frees them (spool.SpooledSource);
        a stored file is left as it is."""
        ...


# -- local files ---------------------------------------------------------------------------------------------------

# (path, device, inode) → an open descriptor, in this process. The validating process registers the file it opened
# (`LocalFileSource.open`), so it keeps reading that file even if the path is replaced meanwhile; a worker opens the
# path once and checks it is the same file.
_LOCAL_FDS: dict[tuple[str, int, int], int] = {}


def read_range(fd: int, offset: int, length: int) -> bytes:
    """`length` bytes of an open file from `offset`, or fewer when the file ends sooner."""
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


@dataclass(frozen=True)
class LocalFileSource:
    """A local file, pinned by (device, inode)."""

    path: str
    device: int
    inode: int
    size: int

    @classmethod
    def open(cls, fd: int, path: str, size: int | None = None) -> LocalFileSource:
        """The source of a file this process has open as `fd` (of `size` bytes when it is still being written);
        reads here go through `fd` until `close`."""
        stat = os.fstat(fd)
        source = cls(os.path.abspath(path), stat.st_dev, stat.st_ino, stat.st_size if size is None else size)
        _LOCAL_FDS[source._key] = fd
        return source

    def close(self) -> None:
        """Forget the descriptor registered by `open` (the caller closes it)."""
        _LOCAL_FDS.pop(self._key, None)

    @property
    def _key(self) -> tuple[str, int, int]:
        return (self.path, self.device, self.inode)

    def _fd(self) -> int:
        fd = _LOCAL_FDS.get(self._key)
        if fd is not None:
            return fd
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:  # gone, or no longer reachable by its path (a folder replaced, permissions changed)
            raise SourceChanged(f"{self.path} cannot be opened again: {exc.strerror}") from exc
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) != (self.device, self.inode):
            os.close(fd)
            raise SourceChanged(f"{self.path} was replaced")
        _LOCAL_FDS[self._key] = fd  # kept open for this process's later spans; a worker lives for one validation
        return fd

    def read(self, offset: int, length: int) -> bytes:
        return read_range(self._fd(), offset, length)

    def chunks(self, offset: int, chunk_bytes: int) -> Iterator[bytes]:
        return iter_source(self, offset, chunk_bytes)

    def for_worker(self, reach: int) -> LocalFileSource:
        return self

    def release(self, offset: int) -> None:
        pass  # a stored file is the user's: nothing of it is freed


def iter_source(source: ByteSource, start: int = 0, chunk_bytes: int = EXTEND_BYTES) -> Iterator[bytes]:
    """The source's bytes from `start`, in chunks, each one `read` (ByteSource.chunks for a local file)."""
    offset = start
    while offset < source.size:
        chunk = source.read(offset, chunk_bytes)
        if not chunk:
            return
        yield chunk
        offset += len(chunk)


# -- spans ---------------------------------------------------------------------------------------------------------


def span_reach(end: int, line_limit: int) -> int:
    """How far `read_span` may read for a span that ends at `end`: its overlap, or a last line read on until it is
    known to be over the limit."""
    return end + max(SPAN_OVERLAP, line_limit + 1 + EXTEND_BYTES)


def read_span(source: ByteSource, data_start: int, start: int, end: int, line_limit: int) -> tuple[int, bytes, bool]:
    """The lines of `source` that start in [start, end), as the reader would give them (reader.LineReader.blocks).

    Returns (first, data, too_long_last): `first` is the offset of the first of those lines; `data` is the lines,
    each ending with b"\\n" (one is added to the file's last line when it lacks it); `too_long_last` means one more
    line, the last to start in the span, is longer than `line_limit` and was skipped, never held whole (reading
    stops at most EXTEND_BYTES past the limit). `data_start` is where the text's first line starts (after a BOM).
    Lines start at `data_start` and after every b"\\n", except at the end of the source (a final line end does not
    start a line).
    """
    held_limit = line_limit + 1  # + the CR of a CRLF line end
    size = source.size
    end = min(end, size)
    if start >= end:
        return end, b"", False
    # The first line start in [start, end): `start` itself, or just after the first b"\n" at or after start - 1.
    read_from = start if start <= data_start else start - 1
    buf = source.read(read_from, end - read_from + SPAN_OVERLAP)
    if len(buf) < end - read_from:
        raise SourceChanged("the file became shorter while it was being validated")
    if read_from < start:
        newline = buf.find(b"\n", 0, end - 1 - read_from)
        if newline < 0:
            return end, b"", False  # the span lies inside one line, which started before it
        first = newline + 1
    else:
        first = 0
    # The last line that starts in the span starts after the last b"\n" before end - 1, and ends at the first
    # b"\n" from there.
    last_start = buf.rfind(b"\n", first, end - 1 - read_from) + 1 or first
    line_end = buf.find(b"\n", max(last_start, end - 1 - read_from))
    if line_end >= 0:
        if line_end - last_start > held_limit:
            return read_from + first, buf[first:last_start], True
        return read_from + first, buf[first : line_end + 1], False
    # The last line goes on past what was read: read on until its end, dropping it once it is over the limit.
    parts = [buf[first:]]
    line_bytes = len(buf) - last_start
    offset = read_from + len(buf)
    while line_bytes <= held_limit:
        more = source.read(offset, EXTEND_BYTES)
        if not more:  # the end of the source: the file's last line, without its b"\n"
            return read_from + first, b"".join(parts) + b"\n", False
        offset += len(more)
        newline = more.find(b"\n")
        if newline >= 0:
            line_bytes += newline
            if line_bytes > held_limit:
                break
            parts.append(more[: newline + 1])
            return read_from + first, b"".join(parts), False
        line_bytes += len(more)
        parts.append(more)
    data = b"".join(parts)
    return read_from + first, data[: last_start - first], True
