"""Opening layer tar sources: paths, file objects, pipes and stdin, with the
compression (gzip, zstd, bzip2, xz or none) detected from the first bytes.

gzip goes through python-isal's ``igzip_threaded`` (decompression in a
background thread, ISA-L's inflate) when ``isal`` is installed, and the
standard library's :mod:`gzip` otherwise; zstd needs the ``zstandard`` package.
"""

from __future__ import annotations

import io
import os
import sys
from typing import BinaryIO, Callable, List, Optional, Tuple, Union

from .errors import CimError

__all__ = ["open_source", "CountingReader", "compression_of"]

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def compression_of(head: bytes) -> str:
    """'gzip', 'zstd', 'bzip2', 'xz' or 'none' for the first bytes of a stream."""
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return "none"


class CountingReader(io.RawIOBase):
    """A raw reader that replays ``head`` and then reads ``raw``, counting the
    bytes consumed from ``raw`` (for progress reports)."""

    def __init__(self, raw: BinaryIO, head: bytes = b"") -> None:
        super().__init__()
        self._raw = raw
        self._head = head
        self.consumed = len(head)
        self._readinto = getattr(raw, "readinto", None)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if self._readinto is not None:
            n = self._readinto(b)
        else:
            data = self._raw.read(len(b))
            n = len(data)
            b[:n] = data
        n = n or 0
        self.consumed += n
        return n


def _read_head(raw: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = raw.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def open_source(
    source: Union[str, "os.PathLike[str]", BinaryIO],
) -> Tuple[BinaryIO, CountingReader, str, Optional[int], str, List[Callable[[], None]]]:
    """Open ``source`` for reading a tar stream.

    Returns ``(reader, counter, compression, total_size, display_name, closers)``:
    ``reader`` yields the decompressed tar bytes; ``counter.consumed`` counts
    the (compressed) bytes read so far and ``total_size`` is the source's size
    when known, for progress and ETA; ``closers`` must be called when done.
    """
    closers: List[Callable[[], None]] = []
    total: Optional[int] = None
    if isinstance(source, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        if path == "-":
            raw = sys.stdin.buffer
            name = "<stdin>"
        else:
            name = path
            try:
                raw = io.open(path, "rb", buffering=0)
            except OSError as e:
                raise CimError(f"cimfs import: {path}: {e.strerror or e}", op="import", errno=e.errno) from None
            closers.append(raw.close)
            try:
                st = os.fstat(raw.fileno())
                import stat as _stat

                if _stat.S_ISREG(st.st_mode):
                    total = st.st_size
            except OSError:
                pass
    else:
        raw = source
        name = getattr(source, "name", None) or "<stream>"
        if not isinstance(name, str):
            name = "<stream>"
        try:
            if raw.seekable():
                pos = raw.tell()
                end = raw.seek(0, io.SEEK_END)
                raw.seek(pos)
                total = end - pos
        except (OSError, AttributeError, ValueError):
            total = None
    head = _read_head(raw, 6)
    counter = CountingReader(raw, head)
    kind = compression_of(head)
    reader: BinaryIO
    if kind == "none":
        reader = counter  # type: ignore[assignment]
    elif kind == "gzip":
        reader = _gzip_reader(counter)
        closers.insert(0, reader.close)
    elif kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise CimError(f"cimfs import: {name}: the input is zstd-compressed; install the 'zstandard' package",
                           op="import") from None
        reader = zstandard.ZstdDecompressor().stream_reader(counter, read_size=1 << 20, read_across_frames=True,
                                                            closefd=False)
        closers.insert(0, reader.close)
    elif kind == "bzip2":
        import bz2

        reader = bz2.BZ2File(counter, "rb")  # type: ignore[assignment]
        closers.insert(0, reader.close)
    else:
        import lzma

        reader = lzma.LZMAFile(counter, "rb")  # type: ignore[assignment]
        closers.insert(0, reader.close)
    return reader, counter, kind, total, name, closers


def _gzip_reader(raw: BinaryIO) -> BinaryIO:
    try:
        from isal import igzip_threaded

        return igzip_threaded.open(raw, "rb", threads=1, block_size=1 << 20)  # type: ignore[return-value]
    except ImportError:
        pass
    try:
        from isal import igzip

        return igzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    except ImportError:
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
