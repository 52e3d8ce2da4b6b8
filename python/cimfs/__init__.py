"""cimfs: build, read and mount Windows CimFS images.

>>> import cimfs
>>> with cimfs.create("out", "layer.cim") as w:
...     w.add_directory("Files")
...     w.add_file("Files\\hello.txt", data=b"Hello world!")
>>> with cimfs.open("out/layer.cim") as image:
...     image.read_bytes("files\\HELLO.TXT")
b'Hello world!'
"""

from __future__ import annotations

import os
from typing import List, Union

from . import _core
from ._times import datetime_from_filetime, filetime_from_datetime, filetime_from_unix_ns, unix_ns_from_filetime
from ._types import FileAttributes, FileInfo, FileStat, ReparseTag
from .errors import (
    CimError,
    CorruptImageError,
    LinkError,
    MountError,
    OpError,
    PathError,
    UnsupportedError,
)
from .image import CimFile, Image, open
from .native import (
    BlockImage,
    Mount,
    MountFlags,
    create_block,
    default_backend,
    is_block_supported,
    is_merged_supported,
    is_supported,
    is_verified_supported,
    merge_block,
    mount,
    mount_merged,
    mount_verified,
    seal,
    unmount,
    verification_info,
)
from .writer import BACKENDS, Writer, create

__version__: str = _core.__version__

__all__ = [
    "__version__",
    "BACKENDS",
    "BlockImage",
    "Mount",
    "MountFlags",
    "CimError",
    "CimFile",
    "CorruptImageError",
    "FileAttributes",
    "FileInfo",
    "FileStat",
    "Image",
    "LinkError",
    "MountError",
    "OpError",
    "PathError",
    "ReparseTag",
    "UnsupportedError",
    "Writer",
    "child_images",
    "collect_garbage",
    "create",
    "create_block",
    "datetime_from_filetime",
    "default_backend",
    "destroy",
    "filetime_from_datetime",
    "filetime_from_unix_ns",
    "is_block_supported",
    "is_merged_supported",
    "is_supported",
    "is_verified_supported",
    "merge_block",
    "mount",
    "mount_merged",
    "mount_verified",
    "null_dacl_security_descriptor",
    "open",
    "region_files",
    "seal",
    "unix_ns_from_filetime",
    "unmount",
    "verification_info",
    "usage",
]

_Path = Union[str, "os.PathLike[str]"]


def destroy(path: _Path, *, force: bool = False) -> None:
    """Remove an image: its header file and its own region and objectid files
    (``DestroyCim``). Regions of parent images are left alone.

    Refuses with an :class:`OpError` (``EBUSY``) while another image in the same
    directory forks this one (its regions are shared), unless ``force=True``.
    """
    _core.destroy(os.fspath(path), force)


def usage(path: _Path, *, include_parents: bool = False) -> int:
    """Bytes an image occupies: its header plus its own region and objectid
    files (``GetCimUsage``). With ``include_parents=True``, the region and
    objectid files of every parent in its chain are added."""
    return _core.usage(os.fspath(path), include_parents)


def collect_garbage(directory: _Path) -> List[str]:
    """Remove what interrupted writers left in ``directory`` (``cimfs gc``):
    ``.cimfs-tmp-*`` files and region/objectid files no image header there
    refers to. Raises :class:`OpError` (``EBUSY``) while a writer works there.
    Returns the removed paths."""
    return _core.collect_garbage(os.fspath(directory))


def child_images(path: _Path) -> List[str]:
    """Images in the same directory that fork this one (directly or further down)."""
    return _core.child_images(os.fspath(path))


def region_files(path: _Path, own_only: bool = False) -> List[str]:
    """Region files an image reads (parents' first), as paths. With
    ``own_only=True``: the image's own region and objectid files."""
    return _core.region_files(os.fspath(path), own_only)


def null_dacl_security_descriptor() -> bytes:
    """The descriptor written for files added without one (hcsshim's NULL DACL)."""
    return _core.null_dacl_security_descriptor()
