"""Reading images: :func:`cimfs.open` and the :class:`Image` it returns."""

from __future__ import annotations

import errno as _errno
import io
import os
from typing import Dict, Iterator, List, Optional, Tuple, Union

from . import _core
from ._types import FileStat
from .errors import CimError, PathError, at

__all__ = ["Image", "CimFile", "open"]

PathLike = Union[str, "os.PathLike[str]"]


def _split_stream(path: str) -> Tuple[str, Optional[str]]:
    """'dir\\file:stream[:$DATA]' -> ('dir\\file', 'stream')."""
    sep = max(path.rfind("\\"), path.rfind("/"))
    colon = path.find(":", sep + 1)
    if colon < 0:
        return path, None
    stream = path[colon + 1 :]
    if stream.upper().endswith(":$DATA"):
        stream = stream[: -len(":$DATA")]
    return path[:colon], stream


def _join(parent: str, name: str) -> str:
    return name if not parent else parent + "\\" + name


class CimFile(io.RawIOBase):
    """A read-only binary file over one stream of an image (default or alternate)."""

    def __init__(self, image: "Image", handle, name: str) -> None:
        super().__init__()
        self._image = image
        self._core = image._core
        self._handle = handle
        self._pos = 0
        self.name = name
        self.mode = "rb"

    @property
    def size(self) -> int:
        return self._handle.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._checkClosed()
        with memoryview(buffer) as view:
            n = self._core.readinto(self._handle, self._pos, view.cast("B"))
        self._pos += n
        return n

    def readall(self) -> bytes:
        self._checkClosed()
        data = self._core.read(self._handle, self._pos, max(0, self._handle.size - self._pos))
        self._pos += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        self._checkClosed()
        if size is None or size < 0:
            return self.readall()
        data = self._core.read(self._handle, self._pos, size)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._handle.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def tell(self) -> int:
        self._checkClosed()
        return self._pos


class Image:
    """An open CimFS image (format 2.0 or 3.0), read with the portable reader.

    Paths are relative to the image root, backslash separated (forward slashes
    are accepted) and case-insensitive. An Image may be shared between threads.
    """

    def __init__(self, path: PathLike) -> None:
        self._core = _core.Image(os.fspath(path))
        self.path = os.fspath(path)
        info = self._core.info()
        self.version: Tuple[int, int] = info["version"]

    # -- context manager ---------------------------------------------------
    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the image's mappings (files stay readable until closed)."""
        self._core = _ClosedImage(self.path)

    def __repr__(self) -> str:
        return f"<cimfs.Image {self.path!r} v{self.version[0]}.{self.version[1]}>"

    # -- lookups -------------------------------------------------------------
    def _id(self, path: str, op: str) -> int:
        try:
            return self._core.lookup(path)
        except PathError as e:
            raise at(e, op, e.path or path) from None

    def info(self) -> dict:
        """Version, region sets (parents first) and region files, file count."""
        return self._core.info()

    def exists(self, path: str) -> bool:
        try:
            self._core.lookup(_split_stream(path)[0])
            return True
        except PathError:
            return False

    def stat(self, path: str = "") -> FileStat:
        """Metadata of a file or directory (no stream part)."""
        return FileStat(*self._core.stat(self._id(path, "stat")))

    def is_dir(self, path: str) -> bool:
        try:
            return self.stat(path).is_directory
        except PathError:
            return False

    def listdir(self, path: str = "") -> List[str]:
        """Names in a directory, in the image's stored (sorted) order."""
        return [name for name, _ in self._core.listdir(self._id(path, "listdir"))]

    def scandir(self, path: str = "") -> List[Tuple[str, FileStat]]:
        """(name, stat) pairs of a directory, in stored order."""
        core = self._core
        return [(name, FileStat(*core.stat(fid))) for name, fid in core.listdir(self._id(path, "listdir"))]

    def walk(self, top: str = "", topdown: bool = True) -> Iterator[Tuple[str, List[str], List[str]]]:
        """Like :func:`os.walk`: yields ``(dirpath, dirnames, filenames)``.

        ``dirpath`` is backslash separated, ``""`` for the root. With
        ``topdown=True`` the caller may prune ``dirnames`` in place. A damaged
        image whose directories loop is walked once per directory.
        """
        seen = set()
        core = self._core

        def listing(fid: int):
            dirs: List[Tuple[str, int]] = []
            files: List[str] = []
            for name, cid in core.listdir(fid):
                if core.stat(cid)[11]:
                    dirs.append((name, cid))
                else:
                    files.append(name)
            return dirs, files

        # An explicit stack, not recursion: a valid image may nest thousands deep.
        root = (top.replace("/", "\\").strip("\\"), self._id(top, "walk"))
        if topdown:
            stack = [root]
            while stack:
                path, fid = stack.pop()
                if fid in seen:
                    continue
                seen.add(fid)
                dirs, files = listing(fid)
                names = [d[0] for d in dirs]
                yield path, names, files
                ids = dict(dirs)
                stack.extend((_join(path, n), ids[n]) for n in reversed(names) if n in ids)
        else:
            pending: List[Tuple[str, int, bool]] = [(root[0], root[1], False)]
            results = {}
            while pending:
                path, fid, expanded = pending.pop()
                if expanded:
                    dirs, files = results.pop(fid)
                    yield path, [d[0] for d in dirs], files
                    continue
                if fid in seen:
                    continue
                seen.add(fid)
                results[fid] = listing(fid)
                pending.append((path, fid, True))
                pending.extend((_join(path, n), c, False) for n, c in reversed(results[fid][0]))

    def links(self, path: str) -> List[str]:
        """Every path of a file (its hard links), from the format 3 links table."""
        fid = self._id(path, "links")
        out = []
        for name, parent in self._core.links(fid):
            out.append(_join(self._path_of(parent), name) if name != "." else "")
        return out

    def _path_of(self, fid: int) -> str:
        parts = []
        guard = 0
        root = self._core.info()["root_id"]
        while fid != root and guard < 4096:
            stat = self._core.stat(fid)
            parent = stat[1]
            names = [n for n, p in self._core.links(fid) if p == parent]
            parts.append(names[0] if names else "?")
            fid = parent
            guard += 1
        return "\\".join(reversed(parts))

    # -- metadata blobs ---------------------------------------------------------
    def security_descriptor(self, path: str) -> bytes:
        """The self-relative security descriptor (b"" when the file has none)."""
        return self._core.security_descriptor(self._id(path, "stat"))

    def extended_attributes(self, path: str) -> bytes:
        """The FILE_FULL_EA_INFORMATION blob (b"" when none)."""
        return self._core.extended_attributes(self._id(path, "stat"))

    def reparse_data(self, path: str) -> bytes:
        """The REPARSE_DATA_BUFFER (b"" when the file is no reparse point)."""
        return self._core.reparse_data(self._id(path, "stat"))

    def streams(self, path: str) -> Dict[str, int]:
        """Alternate data streams of a file: ``{name: size}`` in stored order."""
        return dict(self._core.streams(self._id(path, "streams")))

    # -- contents -----------------------------------------------------------------
    def open(self, path: str) -> CimFile:
        """A read-only binary file over ``path`` or ``path:stream``."""
        file, stream = _split_stream(path)
        fid = self._id(file, "open")
        try:
            handle = self._core.open_stream(fid, stream)
        except PathError:
            raise
        except CimError as e:  # reported by file id: add the path
            if not getattr(e, "path", ""):
                raise at(e, "open", path) from None
            raise
        return CimFile(self, handle, path)

    def read_bytes(self, path: str) -> bytes:
        """The whole content of ``path`` or ``path:stream``."""
        with self.open(path) as f:
            return f.readall()

    def verify(self) -> List[str]:
        """Structural check of the whole image: problems found (empty: sound)."""
        return self._core.verify()


class _ClosedImage:
    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name):
        from .errors import OpError

        raise OpError(f"cim {name} {self._path}: the image is closed", cim=self._path, op=name, errno=_errno.EBADF)


def open(path: PathLike) -> Image:  # noqa: A001 - mirrors builtins.open on purpose
    """Open the image whose header file is ``path`` (``*.cim``)."""
    return Image(path)
