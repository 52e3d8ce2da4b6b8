"""Writing images: :func:`cimfs.create` and the :class:`Writer` it returns."""

from __future__ import annotations

import os
from typing import BinaryIO, Optional, Union

from . import _core
from ._types import FileAttributes, FileInfo
from .errors import path_error

__all__ = ["Writer", "create", "BACKENDS"]

BACKENDS = ("auto", "portable", "native")
_COPY_CHUNK = 1 << 20

BytesLike = Union[bytes, bytearray, memoryview]


def _choose_backend(backend: str, region_set: Optional[str], format_version: int) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend != "auto":
        return backend
    if region_set is not None or format_version != 3:
        return "portable"  # only the portable writer can honour these
    from .native import default_backend

    return default_backend()


def _parent_name(directory: str, parent: str) -> str:
    """A parent must live in the image's directory (they share region files)."""
    head, tail = os.path.split(parent)
    if head and os.path.abspath(head) != os.path.abspath(directory or "."):
        raise ValueError(f"parent image {parent!r} must be in the same directory as the new image ({directory!r})")
    return tail


class Writer:
    """Writes one image: ``DIR/NAME`` plus its ``region_*`` and ``objectid_*`` files.

    Use it as a context manager: the image is committed when the block ends
    normally; if the block raises, the image is discarded and none of its files
    remain. Nothing is visible under ``NAME`` until :meth:`commit` succeeds.

    Paths are image-relative, backslash separated (``/`` accepted). Parents must
    be added before their children. One stream is open at a time: after
    ``add_file(path, size=n)`` call :meth:`write` until ``n`` bytes are written;
    the next operation closes the stream and raises if it is short.
    """

    def __init__(
        self,
        directory: Union[str, "os.PathLike[str]"],
        name: str,
        *,
        parent: Optional[str] = None,
        region_set: Optional[str] = None,
        format_version: int = 3,
        durable: bool = False,
        backend: str = "auto",
        create_flags: int = 0,
    ) -> None:
        directory = os.fspath(directory)
        if parent is not None:
            parent = _parent_name(directory, os.fspath(parent))
        if format_version not in (2, 3):
            raise ValueError("format_version must be 2 or 3")
        #: "portable" or "native": the backend writing this image
        self.backend = _choose_backend(backend, region_set, format_version)
        self._core = _core.Writer(directory, name, parent or "", region_set, format_version, durable,
                                  self.backend, int(create_flags))
        self.path = os.path.join(directory, name)

    @classmethod
    def _from_core(cls, core, path: str, backend: str) -> "Writer":
        self = cls.__new__(cls)
        self._core = core
        self.path = path
        self.backend = backend
        return self

    # -- context manager ------------------------------------------------------
    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self.committed:
            try:
                self.commit()
            finally:
                self.close()
        else:
            self.close()

    def __repr__(self) -> str:
        state = "committed" if self.committed else "open"
        return f"<cimfs.Writer {self.path!r} {state}>"

    @property
    def committed(self) -> bool:
        return self._core.committed

    # -- adding things ------------------------------------------------------------
    def add_file(
        self,
        path: str,
        info: Optional[FileInfo] = None,
        *,
        size: Optional[int] = None,
        data: Optional[BytesLike] = None,
        source: Optional[BinaryIO] = None,
    ) -> None:
        """Add a file (or, with ``FileAttributes.DIRECTORY`` in ``info``, a directory).

        Give the content as ``data`` (any C-contiguous buffer: bytes, bytearray,
        memoryview, mmap, numpy array), or ``size`` plus ``source`` (a binary file
        object read until ``size`` bytes), or ``size`` alone and then call
        :meth:`write`. Adding an existing file replaces it; adding an existing
        directory again updates its metadata and keeps its children.
        """
        info = info or FileInfo()
        if data is not None:
            view = memoryview(data)
            n = view.nbytes
            if size is not None and size != n:
                raise ValueError(f"size={size} but data has {n} bytes")
            size = n
        size = size or 0
        self._core.add_file(
            path,
            int(info.attributes),
            size,
            info.creation_time,
            info.last_write_time,
            info.change_time,
            info.last_access_time,
            info.security_descriptor,
            info.extended_attributes or b"",
            info.reparse_data or b"",
        )
        if data is not None and size:
            self._core.write(view)
        elif source is not None and size:
            self._copy_from(source, size, path)

    def add_directory(self, path: str, info: Optional[FileInfo] = None) -> None:
        """Add a directory (or update the metadata of an existing one, or the root's with "")."""
        info = info or FileInfo()
        if not info.attributes & FileAttributes.DIRECTORY:
            info = FileInfo(**{**info.__dict__, "attributes": int(info.attributes) | FileAttributes.DIRECTORY})
        self.add_file(path, info)

    def write(self, data: BytesLike) -> int:
        """Append to the open stream; the bytes go straight to the region file."""
        self._core.write(data)
        return memoryview(data).nbytes

    def close_stream(self) -> None:
        """Close the open stream now (raises if it is short of its declared size)."""
        self._core.close_stream()

    def add_stream(
        self,
        path: str,
        size: Optional[int] = None,
        *,
        data: Optional[BytesLike] = None,
        source: Optional[BinaryIO] = None,
    ) -> None:
        """Add the alternate data stream ``file:stream`` (``file:stream:$DATA`` accepted)."""
        if data is not None:
            view = memoryview(data)
            size = view.nbytes
        size = size or 0
        self._core.add_stream(path, size)
        if data is not None and size:
            self._core.write(view)
        elif source is not None and size:
            self._copy_from(source, size, path)

    def _copy_from(self, source: BinaryIO, size: int, path: str) -> None:
        buf = bytearray(min(size, _COPY_CHUNK))
        view = memoryview(buf)
        left = size
        readinto = getattr(source, "readinto", None)
        while left:
            want = min(left, len(buf))
            if readinto is not None:
                got = readinto(view[:want])
                chunk = view[:got] if got else None
            else:
                b = source.read(want)
                got = len(b)
                chunk = b if got else None
            if not got:
                raise path_error("invalid_argument", "write", self.path, path,
                                 f"source ended after {size - left} of {size} bytes")
            self._core.write(chunk)
            left -= got
        self._core.close_stream()

    def add_link(self, existing: str, new: str) -> None:
        """Give the existing file ``existing`` a second name ``new`` (a hard link)."""
        self._core.add_link(existing, new)

    def remove(self, path: str) -> None:
        """Remove a path from the image; a directory goes with all it holds."""
        self._core.remove(path)

    def add_tombstone(self, path: str) -> None:
        """Mark ``path`` deleted in a merged image (native backend only)."""
        self._core.add_tombstone(path)

    def add_merge_link(self, existing: str, new: str) -> None:
        """Create a merge link (native backend only)."""
        self._core.add_merge_link(existing, new)

    # -- finishing ------------------------------------------------------------------
    def commit(self) -> None:
        """Write the metadata and make the image visible under its name."""
        self._core.commit()

    def close(self) -> None:
        """Release the writer; an image that was not committed leaves no files."""
        self._core.close()


def create(directory: Union[str, "os.PathLike[str]"], name: str, **options) -> Writer:
    """Start writing the image ``directory/name``; use the result in a ``with`` block.

    The options are :class:`Writer`'s: ``parent`` names an image in the same
    directory to fork: the new image starts as the parent's tree, refers to the
    parent's regions for everything it does not change, and never modifies the
    parent's files (``parent == name`` forks in place, replacing the header).
    ``region_set`` fixes the region-set GUID (for reproducible output);
    ``format_version`` is 3 (default) or 2; ``durable=True`` fsyncs every file
    and the directory at commit.

    ``backend``: ``"portable"`` (this package's writer, any OS), ``"native"``
    (cimfs.dll, Windows only; ``create_flags`` are ``cimfs.native.CreateFlags``
    for ``CimCreateImage2``) or ``"auto"`` (:func:`cimfs.default_backend`:
    portable unless ``CIMFS_BACKEND=native``; portable whenever a
    portable-only option such as ``region_set`` is given).
    """
    return Writer(directory, name, **options)
