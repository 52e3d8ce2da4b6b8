"""Windows on-disk structures the layer tools build and parse: FILE_FULL_EA_INFORMATION
chains, REPARSE_DATA_BUFFERs for symlinks and mount points, and PAX time strings.

Layouts follow the public Win32/NT documentation (ntifs.h, MS-FSCC 2.1.2.4/2.4.15)
and spec section 7 of docs/cim-format.md.
"""

from __future__ import annotations

import struct
from typing import List, NamedTuple, Optional, Tuple, Union

from . import _core

from ._times import UNIX_EPOCH_FILETIME

__all__ = [
    "encode_eas",
    "decode_eas",
    "ReparsePoint",
    "encode_reparse_point",
    "decode_reparse_point",
    "pax_from_filetime",
    "REPARSE_TAG_SYMLINK",
    "REPARSE_TAG_MOUNT_POINT",
]

REPARSE_TAG_MOUNT_POINT = 0xA0000003
REPARSE_TAG_SYMLINK = 0xA000000C
SYMLINK_FLAG_RELATIVE = 1

_EA_HEAD = struct.Struct("<IBBH")


def encode_eas(eas: List[Tuple[Union[str, bytes], bytes]], flags: int = 0) -> bytes:
    """A FILE_FULL_EA_INFORMATION chain for ``[(name, value), ...]`` in the given order.

    Each entry: NextEntryOffset u32 (to the next entry, which starts 4-byte
    aligned; 0 on the last), Flags u8, EaNameLength u8, EaValueLength u16,
    name (ASCII, no NUL counted), NUL, value. Names are kept exactly as given
    (NTFS upper-cases them when it stores them, so Windows exporters emit
    upper-case names already). Raises ValueError on names or values that do
    not fit. (Built by the C++ core, which the layer importer uses too.)
    """
    return _core.encode_eas(
        [(n.encode("utf-8", "surrogateescape") if isinstance(n, str) else bytes(n), bytes(v)) for n, v in eas], flags)


def decode_eas(blob: bytes) -> List[Tuple[str, bytes, int]]:
    """``[(name, value, flags), ...]`` of a FILE_FULL_EA_INFORMATION chain.
    Raises ValueError when the chain is malformed."""
    out = []
    pos = 0
    n = len(blob)
    while pos < n:
        if pos + _EA_HEAD.size > n:
            raise ValueError(f"EA entry at offset {pos} is truncated")
        nxt, flags, nlen, vlen = _EA_HEAD.unpack_from(blob, pos)
        start = pos + _EA_HEAD.size
        end = start + nlen + 1 + vlen
        if end > n:
            raise ValueError(f"EA entry at offset {pos} runs past the end of the blob")
        name = blob[start : start + nlen].decode("ascii", "replace")
        value = bytes(blob[start + nlen + 1 : end])
        out.append((name, value, flags))
        if nxt == 0:
            break
        if nxt < end - pos:
            raise ValueError(f"EA entry at offset {pos} has a bad next-entry offset {nxt}")
        pos += nxt
    return out


class ReparsePoint(NamedTuple):
    tag: int
    target: str  # the print name (what a user sees), e.g. "..\\x" or "C:\\Users"
    substitute: str  # the NT form, e.g. "\\??\\C:\\Users"
    relative: bool
    is_mount_point: bool


def encode_reparse_point(target: str, mount_point: bool = False) -> bytes:
    """REPARSE_DATA_BUFFER of a symlink (tag 0xA000000C, with a flags word:
    1 = relative) or a mount point/junction (0xA0000003, no flags word).

    ``target`` is a Windows path (forward slashes are turned into backslashes).
    The path buffer holds the substitute name (NT form ``\\??\\C:\\...`` for
    absolute targets) then the print name, each NUL-terminated; the lengths do
    not count the NULs. (Built by the C++ core, which the layer importer uses too.)
    """
    return _core.encode_reparse_point(target, mount_point)


def decode_reparse_point(buf: bytes) -> Optional[ReparsePoint]:
    """Parse a symlink or mount-point REPARSE_DATA_BUFFER; None for other tags.
    Raises ValueError when the buffer is malformed."""
    if len(buf) < 8:
        raise ValueError(f"reparse buffer of {len(buf)} bytes is shorter than its 8-byte header")
    tag, dlen, _ = struct.unpack_from("<IHH", buf, 0)
    if tag not in (REPARSE_TAG_SYMLINK, REPARSE_TAG_MOUNT_POINT):
        return None
    if 8 + dlen > len(buf):
        raise ValueError("reparse buffer is shorter than its ReparseDataLength")
    so, sl, po, pl = struct.unpack_from("<HHHH", buf, 8)
    if tag == REPARSE_TAG_SYMLINK:
        if dlen < 12:
            raise ValueError("symlink reparse buffer too short")
        (flags,) = struct.unpack_from("<I", buf, 16)
        base = 20
    else:
        flags = 0
        base = 16
    end = 8 + dlen
    if base + so + sl > end or base + po + pl > end:
        raise ValueError("reparse buffer names run past its end")
    sub = bytes(buf[base + so : base + so + sl]).decode("utf-16-le", "replace")
    prn = bytes(buf[base + po : base + po + pl]).decode("utf-16-le", "replace")
    if not prn:
        prn = sub[4:] if sub.startswith("\\??\\") else sub
        if prn.startswith("UNC\\"):
            prn = "\\\\" + prn[4:]
    return ReparsePoint(tag, prn, sub, bool(flags & SYMLINK_FLAG_RELATIVE), tag == REPARSE_TAG_MOUNT_POINT)


def pax_from_filetime(ft: int) -> str:
    """PAX time record text of a FILETIME, exact (7 fractional digits)."""
    ticks = ft - UNIX_EPOCH_FILETIME
    sign = "-" if ticks < 0 else ""
    a = abs(ticks)
    return f"{sign}{a // 10_000_000}.{a % 10_000_000:07d}"
