"""FILETIME helpers: 100-nanosecond intervals since 1601-01-01 UTC."""

from __future__ import annotations

import datetime as _dt

__all__ = ["filetime_from_datetime", "datetime_from_filetime", "filetime_from_unix_ns", "unix_ns_from_filetime"]

_EPOCH = _dt.datetime(1601, 1, 1, tzinfo=_dt.timezone.utc)
#: FILETIME of the Unix epoch.
UNIX_EPOCH_FILETIME = 116444736000000000


def filetime_from_datetime(value: _dt.datetime) -> int:
    """FILETIME of an aware datetime (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def datetime_from_filetime(filetime: int) -> _dt.datetime:
    """An aware UTC datetime of a FILETIME (microsecond precision)."""
    return _EPOCH + _dt.timedelta(microseconds=filetime // 10)


def filetime_from_unix_ns(ns: int) -> int:
    """FILETIME of a POSIX time in nanoseconds (``os.stat().st_mtime_ns``)."""
    return max(0, ns // 100 + UNIX_EPOCH_FILETIME)


def unix_ns_from_filetime(filetime: int) -> int:
    """POSIX nanoseconds of a FILETIME."""
    return (filetime - UNIX_EPOCH_FILETIME) * 100
