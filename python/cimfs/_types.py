"""Metadata types: what a caller says about a file, and what a reader reports."""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import Optional

from ._times import datetime_from_filetime

__all__ = ["FileAttributes", "FileInfo", "FileStat", "ReparseTag"]


class FileAttributes(enum.IntFlag):
    """Win32 ``FILE_ATTRIBUTE_*`` bits. CimFS stores READONLY, HIDDEN, SYSTEM,
    ARCHIVE and SPARSE_FILE; DIRECTORY and REPARSE_POINT follow from the file's
    kind; other bits are not represented in the format and are dropped."""

    READONLY = 0x1
    HIDDEN = 0x2
    SYSTEM = 0x4
    DIRECTORY = 0x10
    ARCHIVE = 0x20
    NORMAL = 0x80
    TEMPORARY = 0x100
    SPARSE_FILE = 0x200
    REPARSE_POINT = 0x400
    COMPRESSED = 0x800
    OFFLINE = 0x1000
    NOT_CONTENT_INDEXED = 0x2000
    ENCRYPTED = 0x4000


class ReparseTag(enum.IntEnum):
    MOUNT_POINT = 0xA0000003
    SYMLINK = 0xA000000C


class _TimesMixin:
    creation_time: int
    last_write_time: int
    change_time: int
    last_access_time: int

    @property
    def creation_datetime(self) -> _dt.datetime:
        return datetime_from_filetime(self.creation_time)

    @property
    def last_write_datetime(self) -> _dt.datetime:
        return datetime_from_filetime(self.last_write_time)

    @property
    def change_datetime(self) -> _dt.datetime:
        return datetime_from_filetime(self.change_time)

    @property
    def last_access_datetime(self) -> _dt.datetime:
        return datetime_from_filetime(self.last_access_time)


@dataclass
class FileInfo(_TimesMixin):
    """Metadata of a file or directory being added (``CIMFS_FILE_METADATA``).

    Times are FILETIME integers (see :func:`cimfs.filetime_from_datetime`).
    ``security_descriptor=None`` writes the NULL-DACL descriptor hcsshim uses.
    """

    attributes: int = 0
    creation_time: int = 0
    last_write_time: int = 0
    change_time: int = 0
    last_access_time: int = 0
    security_descriptor: Optional[bytes] = None
    extended_attributes: bytes = b""
    reparse_data: bytes = b""

    @property
    def is_directory(self) -> bool:
        return bool(self.attributes & FileAttributes.DIRECTORY)


@dataclass(frozen=True)
class FileStat(_TimesMixin):
    """What :meth:`cimfs.Image.stat` reports about a file."""

    file_id: int
    parent_id: int
    attributes: int
    size: int
    creation_time: int
    last_write_time: int
    change_time: int
    last_access_time: int
    reparse_tag: int
    link_count: int
    ea_length: int
    is_directory: bool
    sparse: bool = False
    pe_image: bool = False
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_reparse_point(self) -> bool:
        return bool(self.attributes & FileAttributes.REPARSE_POINT)

    @property
    def is_symlink(self) -> bool:
        return self.reparse_tag == ReparseTag.SYMLINK

    @property
    def is_file(self) -> bool:
        return not self.is_directory
