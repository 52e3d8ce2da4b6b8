"""Generated Windows container layer tars: the README's sample and the benchmark inputs.

Everything is deterministic (seeded), so the same call writes the same bytes.
Entries carry the PAX records Windows exporters write (``MSWINDOWS.fileattr``,
``MSWINDOWS.rawsd``, ``LIBARCHIVE.creationtime``, ``mtime``/``atime``/``ctime``,
``MSWINDOWS.xattr.*``, ``MSWINDOWS.mountpoint``).
"""

from __future__ import annotations

import base64
import io
import math
import os
import random
import struct
import tarfile
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

from ._winfmt import pax_from_filetime

__all__ = ["security_descriptor", "sid_bytes", "write_sample_layer", "write_bench_layer", "LayerTarWriter"]

# FILE_ATTRIBUTE_* values used below.
READONLY, HIDDEN, SYSTEM, DIRECTORY, ARCHIVE, REPARSE_POINT = 0x1, 0x2, 0x4, 0x10, 0x20, 0x400

TRUSTED_INSTALLER = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS = "S-1-5-32-544"
USERS = "S-1-5-32-545"
ALL_APP_PACKAGES = "S-1-15-2-1"


def sid_bytes(text: str) -> bytes:
    """Binary SID of ``S-1-<authority>-<sub>...``."""
    parts = text.split("-")
    if len(parts) < 3 or parts[0] != "S":
        raise ValueError(f"not a SID: {text}")
    subs = [int(p) for p in parts[3:]]
    return struct.pack("<BB", int(parts[1]), len(subs)) + int(parts[2]).to_bytes(6, "big") + struct.pack(
        f"<{len(subs)}I", *subs)


def security_descriptor(owner: str, group: str, aces: Sequence[Tuple[int, int, int, str]],
                        protected: bool = False) -> bytes:
    """A self-relative SECURITY_DESCRIPTOR with a DACL of ``(type, flags, mask, sid)`` ACEs."""
    ace_blobs = []
    for ace_type, ace_flags, mask, sid in aces:
        s = sid_bytes(sid)
        ace_blobs.append(struct.pack("<BBHI", ace_type, ace_flags, 8 + len(s), mask) + s)
    acl_body = b"".join(ace_blobs)
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(acl_body), len(ace_blobs), 0) + acl_body
    o, g = sid_bytes(owner), sid_bytes(group)
    control = 0x8000 | 0x0004 | 0x0400 | (0x1000 if protected else 0)  # SELF_RELATIVE|DACL_PRESENT|DACL_AUTO_INHERITED
    off_owner = 20
    off_group = off_owner + len(o)
    off_dacl = off_group + len(g)
    return struct.pack("<BBHIIII", 1, 0, control, off_owner, off_group, 0, off_dacl) + o + g + acl


_FULL, _READ_EXEC = 0x1F01FF, 0x1200A9
SD_SYSTEM_FILE = security_descriptor(TRUSTED_INSTALLER, TRUSTED_INSTALLER, [
    (0, 0, _FULL, TRUSTED_INSTALLER), (0, 0, _READ_EXEC, ADMINISTRATORS), (0, 0, _READ_EXEC, SYSTEM_SID),
    (0, 0, _READ_EXEC, USERS), (0, 0, _READ_EXEC, ALL_APP_PACKAGES)], protected=True)
SD_SYSTEM_DIR = security_descriptor(TRUSTED_INSTALLER, TRUSTED_INSTALLER, [
    (0, 0x2, _FULL, TRUSTED_INSTALLER), (0, 0x3, _FULL, SYSTEM_SID), (0, 0x3, _FULL, ADMINISTRATORS),
    (0, 0x3, _READ_EXEC, USERS)])
SD_USER = security_descriptor(ADMINISTRATORS, SYSTEM_SID, [
    (0, 0x10, _FULL, SYSTEM_SID), (0, 0x10, _FULL, ADMINISTRATORS), (0, 0x10, _READ_EXEC, USERS)])

# 2021-06-05 08:00:00 UTC and later, as FILETIMEs.
_T0 = 132673536000000000


class LayerTarWriter:
    """Writes Windows-layer-shaped entries into a PAX tar (a thin layer over tarfile)."""

    def __init__(self, out: Union[str, "os.PathLike[str]", BinaryIO], compression: str = "none") -> None:
        self._closers = []
        if isinstance(out, (str, os.PathLike)):
            fobj: BinaryIO = io.open(os.fspath(out), "wb")
            self._closers.append(fobj.close)
        else:
            fobj = out
        if compression == "gzip":
            import gzip

            gz = gzip.GzipFile(fileobj=fobj, mode="wb", compresslevel=1, mtime=0)
            self._closers.insert(0, gz.close)
            fobj = gz  # type: ignore[assignment]
        elif compression == "zstd":
            import zstandard

            z = zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(fobj, closefd=False)
            self._closers.insert(0, z.close)
            fobj = z  # type: ignore[assignment]
        elif compression != "none":
            raise ValueError(f"compression must be none, gzip or zstd, not {compression!r}")
        self.tar = tarfile.open(fileobj=fobj, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20)

    def close(self) -> None:
        self.tar.close()
        for c in self._closers:
            c()

    def __enter__(self) -> "LayerTarWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _pax(attrs: Optional[int], sd: Optional[bytes], times: Tuple[int, int, int, int],
             eas: Sequence[Tuple[str, bytes]] = (), extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        c, w, ch, a = times
        pax: Dict[str, str] = {}
        if attrs is not None:
            pax["MSWINDOWS.fileattr"] = str(attrs)
        if sd is not None:
            pax["MSWINDOWS.rawsd"] = base64.b64encode(sd).decode()
        pax["mtime"] = pax_from_filetime(w)
        pax["atime"] = pax_from_filetime(a)
        pax["ctime"] = pax_from_filetime(ch)
        pax["LIBARCHIVE.creationtime"] = pax_from_filetime(c)
        for name, value in eas:
            pax["MSWINDOWS.xattr." + name] = base64.b64encode(value).decode()
        if extra:
            pax.update(extra)
        return pax

    def _info(self, name: str, kind: bytes, pax: Dict[str, str], size: int = 0, linkname: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.size = size
        ti.linkname = linkname
        ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        ti.mtime = 0
        ti.pax_headers = pax
        return ti

    def directory(self, name: str, attrs: Optional[int] = DIRECTORY, sd: Optional[bytes] = SD_SYSTEM_DIR,
                  times: Tuple[int, int, int, int] = (_T0, _T0, _T0, _T0), **kw) -> None:
        self.tar.addfile(self._info(name.rstrip("/") + "/", tarfile.DIRTYPE, self._pax(attrs, sd, times, **kw)))

    def file(self, name: str, data: Union[bytes, memoryview], attrs: Optional[int] = ARCHIVE,
             sd: Optional[bytes] = SD_SYSTEM_FILE, times: Tuple[int, int, int, int] = (_T0, _T0, _T0, _T0),
             **kw) -> None:
        view = memoryview(data)
        self.tar.addfile(self._info(name, tarfile.REGTYPE, self._pax(attrs, sd, times, **kw), size=view.nbytes),
                         io.BytesIO(view) if view.nbytes else None)

    def stream(self, name: str, data: bytes, times: Tuple[int, int, int, int] = (_T0, _T0, _T0, _T0)) -> None:
        """An alternate data stream entry ``file:stream`` (follows its file)."""
        self.tar.addfile(self._info(name, tarfile.REGTYPE, self._pax(None, None, times), size=len(data)),
                         io.BytesIO(data))

    def hardlink(self, name: str, target: str, **kw) -> None:
        self.tar.addfile(self._info(name, tarfile.LNKTYPE, self._pax(kw.pop("attrs", ARCHIVE),
                                                                      kw.pop("sd", SD_SYSTEM_FILE),
                                                                      kw.pop("times", (_T0,) * 4), **kw),
                                    linkname=target))

    def symlink(self, name: str, target: str, attrs: int = REPARSE_POINT | ARCHIVE, sd: Optional[bytes] = SD_USER,
                mount_point: bool = False, times: Tuple[int, int, int, int] = (_T0, _T0, _T0, _T0), **kw) -> None:
        extra = {"MSWINDOWS.mountpoint": "1"} if mount_point else None
        self.tar.addfile(self._info(name, tarfile.SYMTYPE, self._pax(attrs, sd, times, extra=extra, **kw),
                                    linkname=target))


def _pe_like(rng: random.Random, size: int) -> bytes:
    head = b"MZ\x90\x00" + b"\x00" * 56 + struct.pack("<I", 0x80) + b"\x00" * 64 + b"PE\x00\x00"
    return (head + rng.randbytes(max(0, size - len(head))))[:size]


def write_sample_layer(out: Union[str, "os.PathLike[str]", BinaryIO], compression: str = "none") -> None:
    """A small but real-shaped Windows layer: ``Files/Windows/System32/...``,
    registry hive deltas under ``Hives/``, security descriptors on every entry,
    an extended attribute, an alternate data stream, a hard link, a relative
    symlink, a directory symlink and a junction."""
    rng = random.Random(20210605)
    t = [(_T0 + i * 10_000_000 + 1234567,) * 4 for i in range(64)]
    with LayerTarWriter(out, compression) as w:
        w.directory("Files", attrs=DIRECTORY)
        w.directory("Files/Windows")
        w.directory("Files/Windows/System32")
        w.file("Files/Windows/System32/kernel32.dll", _pe_like(rng, 180_224), times=t[1],
               eas=[("$KERNEL.PURGE.ESBCACHE", bytes(rng.randbytes(58)))])
        w.file("Files/Windows/System32/notepad.exe", _pe_like(rng, 201_216), times=t[2])
        w.directory("Files/Windows/System32/en-US")
        w.file("Files/Windows/System32/en-US/notepad.exe.mui", rng.randbytes(12_288), times=t[3])
        w.directory("Files/Windows/System32/drivers")
        w.directory("Files/Windows/System32/drivers/etc")
        hosts = (b"# Copyright (c) 1993-2009 Microsoft Corp.\r\n#\r\n"
                 b"# This is a sample HOSTS file used by Microsoft TCP/IP for Windows.\r\n"
                 b"#\r\n# localhost name resolution is handled within DNS itself.\r\n"
                 b"#\t127.0.0.1       localhost\r\n#\t::1             localhost\r\n")
        w.file("Files/Windows/System32/drivers/etc/hosts", hosts, times=t[4])
        w.symlink("Files/Windows/System32/drivers/etc/hosts.lnk", "hosts", times=t[5])
        w.directory("Files/Windows/System32/config", attrs=DIRECTORY | HIDDEN | SYSTEM)
        w.file("Files/Windows/System32/config/SYSTEM", b"regf" + bytes(8188), attrs=ARCHIVE | SYSTEM, times=t[6])
        w.hardlink("Files/Windows/notepad.exe", "Files/Windows/System32/notepad.exe", times=t[2])
        w.file("Files/Windows/win.ini", b"; for 16-bit app support\r\n[fonts]\r\n[extensions]\r\n",
               attrs=ARCHIVE | READONLY, times=t[7])
        w.directory("Files/Users", sd=SD_USER)
        w.directory("Files/Users/Public", sd=SD_USER)
        w.directory("Files/Users/Public/Downloads", sd=SD_USER)
        w.file("Files/Users/Public/Downloads/setup.exe", _pe_like(rng, 40_960), sd=SD_USER, times=t[8])
        w.stream("Files/Users/Public/Downloads/setup.exe:Zone.Identifier",
                 b"[ZoneTransfer]\r\nZoneId=3\r\nHostUrl=https://example.com/setup.exe\r\n", times=t[8])
        w.directory("Files/ProgramData", attrs=DIRECTORY | HIDDEN, sd=SD_USER)
        w.symlink("Files/Users/All Users", "C:\\ProgramData", attrs=DIRECTORY | HIDDEN | SYSTEM | REPARSE_POINT,
                  times=t[9])
        w.symlink("Files/Documents and Settings", "C:\\Users", mount_point=True,
                  attrs=DIRECTORY | HIDDEN | SYSTEM | REPARSE_POINT, times=t[10])
        w.directory("Hives", attrs=DIRECTORY, sd=None)
        for hive in ("DefaultUser_Delta", "Sam_Delta", "Security_Delta", "Software_Delta", "System_Delta"):
            w.file(f"Hives/{hive}", b"regf" + bytes(4092) + rng.randbytes(4096), attrs=ARCHIVE, sd=None, times=t[11])


def bench_sizes(total_bytes: int, count: int, seed: int = 1) -> List[int]:
    """``count`` file sizes of a real-world shape (log-normal, median ~12 KiB,
    a tail of multi-megabyte files) scaled to add up to about ``total_bytes``."""
    rng = random.Random(seed)
    raw = [min(int(rng.lognormvariate(math.log(12_000), 2.0)), 256 << 20) for _ in range(count)]
    scale = total_bytes / max(1, sum(raw))
    return [max(0, int(s * scale)) for s in raw]


def write_bench_layer(out: Union[str, "os.PathLike[str]"], count: int, total_bytes: int,
                      compression: str = "none", seed: int = 1, files_per_dir: int = 200) -> Dict[str, int]:
    """A layer of ``count`` files under ``Files/Windows/...`` directories whose data add up to
    about ``total_bytes``; every entry has attributes, a security descriptor and four times.
    Contents are slices of one random pool at varied offsets (no two files alike)."""
    rng = random.Random(seed)
    sizes = bench_sizes(total_bytes, count, seed) if total_bytes else [0] * count
    if total_bytes and total_bytes < count * 64:
        sizes = [rng.randint(0, 2 * total_bytes // count) for _ in range(count)]
    pool_len = max(sizes) + (1 << 20) if sizes else 1 << 20
    pool = memoryview(rng.randbytes(pool_len))
    dirs = 0
    with LayerTarWriter(out, compression) as w:
        w.directory("Files")
        w.directory("Files/Windows")
        w.directory("Files/Windows/WinSxS")
        for i, size in enumerate(sizes):
            if i % files_per_dir == 0:
                d = f"Files/Windows/WinSxS/amd64_component-{i // files_per_dir:05d}_31bf3856ad364e35"
                w.directory(d)
                dirs += 1
            off = rng.randrange(0, pool_len - size) if size < pool_len else 0
            t = _T0 + i * 10_000_000 + 1_234_567
            w.file(f"{d}/file{i:06d}.dll", pool[off:off + size], times=(t, t, t, t))
    return {"files": count, "directories": dirs + 3, "bytes": sum(sizes)}
