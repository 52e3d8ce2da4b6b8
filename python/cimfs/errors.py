"""The exceptions cimfs raises.

Every error is a :class:`CimError`, which is an :class:`OSError`: ``errno`` is
set where one fits (``ENOENT``, ``EEXIST``, ``ENOTDIR``, ``EISDIR``, ``EINVAL``,
``ENAMETOOLONG``, ...), and the message reads
``cim <op> <image>: <path>: <reason>``.
"""

from __future__ import annotations

import errno as _errno
from typing import Optional

__all__ = [
    "CimError",
    "PathError",
    "LinkError",
    "OpError",
    "MountError",
    "CorruptImageError",
    "UnsupportedError",
]


class CimError(OSError):
    """Base class of every cimfs error.

    Attributes: ``cim`` (the image path), ``op`` (the operation), ``reason``
    (the message without its prefix), ``errno`` and, for failures reported by
    Windows, ``winerror``.
    """

    def __init__(
        self,
        message: str,
        *,
        cim: str = "",
        op: str = "",
        reason: str = "",
        errno: Optional[int] = None,
        winerror: Optional[int] = None,
    ) -> None:
        if errno:
            super().__init__(errno, message)
        else:
            super().__init__(message)
        self.message = message
        self.cim = cim
        self.op = op
        self.reason = reason or message
        if winerror:
            self.winerror = winerror

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable across processes (multiprocessing pools)
        return (_rebuild, (type(self), self.message, self.__dict__.copy(), self.errno))


def _rebuild(cls, message, state, errno):
    obj = cls.__new__(cls)
    CimError.__init__(obj, message, errno=errno)
    obj.__dict__.update(state)
    return obj


class OpError(CimError):
    """An operation on an image failed (attributes ``cim``, ``op``)."""


class PathError(CimError):
    """An operation on a path inside an image failed (``cim``, ``op``, ``path``)."""

    path: str = ""


class LinkError(CimError):
    """Creating a link failed (``cim``, ``op``, ``old`` = existing path, ``new``)."""

    old: str = ""
    new: str = ""


class MountError(CimError):
    """Mounting or dismounting failed (``cim``, ``op``, ``volume``)."""

    volume: str = ""


class CorruptImageError(OpError):
    """The image's files are damaged or not a CIM image (``errno`` = EIO)."""


class UnsupportedError(CimError, NotImplementedError):
    """The operation exists only in the native backend (``cimfs.dll`` on Windows).

    Raised for block, merged and verified images, tombstones, merge links and
    mounting when the format is not public or there is no Windows to ask.
    """

    path: str = ""


_ERRNO = {
    "not_found": _errno.ENOENT,
    "exists": _errno.EEXIST,
    "not_a_directory": _errno.ENOTDIR,
    "is_a_directory": _errno.EISDIR,
    "invalid_argument": _errno.EINVAL,
    "name_too_long": _errno.ENAMETOOLONG,
    "corrupt_image": _errno.EIO,
    "unsupported": getattr(_errno, "ENOTSUP", _errno.EINVAL),
    "busy": _errno.EBUSY,
    "bad_state": _errno.EINVAL,
}


def _message(op: str, cim: str, subject: str, path: str, path2: str, reason: str) -> str:
    m = f"cim {op} {cim}"
    if subject == "link":
        m += f": {path} -> {path2}"
    elif subject == "path" or path:
        m += f": {path or chr(92)}"
    return f"{m}: {reason}"


def _from_core(code, subject, op, cim, path, path2, reason, sys_errno, winerror):
    """Build the exception for a core error (called by the extension module)."""
    e = _build(code, subject, op, cim, path, path2, reason, sys_errno, winerror)
    e.code = code  # the core's error kind, kept so that the error can be re-reported (at())
    return e


def _build(code, subject, op, cim, path, path2, reason, sys_errno, winerror):
    err = sys_errno or _ERRNO.get(code)
    msg = _message(op, cim, subject, path, path2, reason)
    kw = dict(cim=cim, op=op, reason=reason, errno=err, winerror=winerror)
    if code == "unsupported":
        e = UnsupportedError(msg, **kw)
        e.path = path
        return e
    if code == "corrupt_image":
        e = CorruptImageError(msg, **kw)
        if path:
            e.path = path
        return e
    if subject == "link":
        e = LinkError(msg, **kw)
        e.new, e.old = path, path2
        return e
    if subject == "mount":
        e = MountError(msg, **kw)
        e.volume = path
        return e
    if subject == "path" or path:
        e = PathError(msg, **kw)
        e.path = path
        return e
    return OpError(msg, **kw)


def path_error(code: str, op: str, cim: str, path: str, reason: str) -> PathError:
    """A PathError raised by the Python layer itself, formatted like the core's."""
    return _from_core(code, "path", op, cim, path, "", reason, 0, 0)


def at(e: CimError, op: str, path: str) -> CimError:
    """The same core error, reported for the Python-level operation ``op`` on
    ``path`` (the core only knows the file id it was asked about)."""
    return _from_core(getattr(e, "code", "invalid_argument"), "path", op, e.cim, path, "", e.reason,
                      e.errno or 0, getattr(e, "winerror", 0) or 0)
