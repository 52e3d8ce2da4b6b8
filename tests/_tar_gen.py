"""A byte-level tar writer for hostile-input tests (tests/test_hostile_tars.py).

:mod:`tarfile` refuses or normalises much of what a hostile archive holds
(non-UTF-8 names, bad PAX numbers, lying size fields), so this writes the
ustar/PAX/GNU blocks itself. Every name, link name and PAX value may be
``bytes`` (written as is) or ``str`` (UTF-8, ``surrogateescape``). It also
records the byte offset of every header and data boundary, for truncation
sweeps.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

BLOCK = 512
B = Union[bytes, str]

# A NULL-DACL self-relative security descriptor (what hcsshim writes for "none").
NULL_DACL_SD = b"\x01\x00\x04\x80" + b"\x00" * 16
SD_B64 = base64.b64encode(NULL_DACL_SD).decode()


def _b(x: B) -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8", "surrogateescape")


def _octal(n: int, width: int) -> bytes:
    """A NUL-terminated octal field; numbers too big for it use GNU base-256."""
    s = b"%o" % n
    if n >= 0 and len(s) <= width - 1:
        return s.rjust(width - 1, b"0") + b"\0"
    # base-256: high bit set in the first byte, two's complement big-endian
    v = n & ((1 << (8 * width)) - 1) if n < 0 else n
    raw = bytearray(v.to_bytes(width, "big"))
    raw[0] |= 0x80
    return bytes(raw)


def header(name: B, typeflag: bytes = b"0", size: int = 0, linkname: B = b"", mtime: int = 1_600_000_000,
           mode: int = 0o644, size_field: Optional[bytes] = None, mtime_field: Optional[bytes] = None,
           bad_checksum: bool = False) -> bytes:
    """One 512-byte ustar header. ``name`` longer than 100 bytes is cut (use PAX/GNU for long names)."""
    h = bytearray(BLOCK)
    nb = _b(name)[:100]
    h[0 : len(nb)] = nb
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = size_field if size_field is not None else _octal(size, 12)
    h[136:148] = mtime_field if mtime_field is not None else _octal(mtime, 12)
    h[156:157] = typeflag
    lb = _b(linkname)[:100]
    h[157 : 157 + len(lb)] = lb
    h[257:263] = b"ustar\x00"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    chk = sum(h)
    if bad_checksum:
        chk += 1
    h[148:156] = b"%06o\x00 " % chk
    return bytes(h)


def pax_record(key: B, value: B) -> bytes:
    body = b" " + _b(key) + b"=" + _b(value) + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n = len(str(n).encode()) + len(body)
    return str(n).encode() + body


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


@dataclass
class Entry:
    name: B
    typeflag: bytes = b"0"
    data: bytes = b""
    linkname: B = b""
    pax: Dict[B, B] = field(default_factory=dict)
    gnu_longname: bool = False  # write the name as a GNU 'L' entry instead of PAX
    size_field: Optional[bytes] = None  # a lying or malformed size field
    data_len: Optional[int] = None  # bytes of data actually written (default len(data))


class Tar:
    """Entries appended as raw blocks; ``bounds`` lists every header/data boundary offset."""

    def __init__(self) -> None:
        self.parts: List[bytes] = []
        self.bounds: List[int] = [0]
        self.size = 0
        self.names: List[str] = []  # every entry name added, as the reader decodes it

    def _put(self, b: bytes) -> None:
        self.parts.append(b)
        self.size += len(b)
        self.bounds.append(self.size)

    def raw(self, b: bytes) -> "Tar":
        self._put(b)
        return self

    def add(self, e: Union[Entry, B], **kw) -> "Tar":
        if not isinstance(e, Entry):
            e = Entry(e, **kw)
        name = _b(e.name)
        pax = dict(e.pax)
        self.names.append(name.decode("utf-8", "surrogateescape"))
        for k, v in pax.items():
            if _b(k) == b"path":
                self.names.append(_b(v).decode("utf-8", "surrogateescape"))
        if len(name) > 100 and not e.gnu_longname and b"path" not in pax and "path" not in pax:
            pax["path"] = name
        if len(_b(e.linkname)) > 100 and b"linkpath" not in pax and "linkpath" not in pax:
            pax["linkpath"] = e.linkname
        if e.gnu_longname and len(name) > 100:
            ln = name + b"\0"
            self._put(header(b"././@LongLink", b"L", len(ln)))
            self._put(_padded(ln))
        if pax:
            body = b"".join(pax_record(k, v) for k, v in pax.items())
            self._put(header(b"PaxHeaders/x", b"x", len(body)))
            self._put(_padded(body))
        self._put(header(name, e.typeflag, len(e.data), e.linkname, size_field=e.size_field))
        data = e.data if e.data_len is None else (e.data + b"\0" * e.data_len)[: e.data_len]
        if data:
            self.parts.append(data)
            self.size += len(data)
            self.bounds.append(self.size)
            pad = -len(data) % BLOCK
            if pad:
                self._put(b"\0" * pad)
        return self

    def file(self, name: B, data: bytes = b"", **pax) -> "Tar":
        return self.add(Entry(name, b"0", data, pax=pax))

    def dir(self, name: B, **pax) -> "Tar":
        return self.add(Entry(name, b"5", pax=pax))

    def link(self, name: B, target: B, **pax) -> "Tar":
        return self.add(Entry(name, b"1", linkname=target, pax=pax))

    def symlink(self, name: B, target: B, **pax) -> "Tar":
        return self.add(Entry(name, b"2", linkname=target, pax=pax))

    def bytes(self, end: bool = True) -> bytes:
        out = b"".join(self.parts)
        if end:
            out += b"\0" * (2 * BLOCK)
        return out


def small_layer() -> Tar:
    """A small valid layer using most entry kinds: dirs, files, a stream, a hard link,
    symlinks, a junction, PAX times/attributes/SD/EA, a GNU long name."""
    t = Tar()
    t.dir("Files/", **{"MSWINDOWS.fileattr": "16", "MSWINDOWS.rawsd": SD_B64, "mtime": "1600000000.5"})
    t.dir("Files/Windows/", **{"LIBARCHIVE.creationtime": "1500000000.25"})
    t.file("Files/Windows/a.txt", b"alpha" * 30, **{"MSWINDOWS.fileattr": "32",
                                                    "MSWINDOWS.xattr.$KERNEL.PURGE.X": "AQID"})
    t.file("Files/Windows/a.txt:Zone.Identifier", b"[ZoneTransfer]\r\nZoneId=3\r\n")
    t.file("Files/Windows/big.bin", bytes(range(256)) * 5, **{"atime": "1600000001", "ctime": "1600000002"})
    t.file("Files/Windows/empty.txt", b"")
    t.link("Files/Windows/hard.txt", "Files/Windows/a.txt")
    t.symlink("Files/Windows/rel.lnk", "a.txt")
    t.symlink("Files/Windows/junction", "C:\\Windows", **{"MSWINDOWS.mountpoint": "1",
                                                          "MSWINDOWS.fileattr": "1040"})
    t.add(Entry("Files/" + "L" * 120 + ".dat", b"0", b"long", gnu_longname=True))
    t.dir("Hives/")
    t.file("Hives/Sam_Delta", b"\x00regf" * 100)
    return t
