#!/usr/bin/env python3
"""Write the seed corpus of the layer-import fuzzer (fuzz/fuzz_layer_import.cpp).

    python fuzz/make_layer_seeds.py [OUT]      (default OUT: fuzz/corpus/layer)

Each seed OUT/<name>.bin is a small Windows-container-layer tar as hcsshim and
Windows' exporters write them (Python tarfile, PAX format unless noted):
directories and files with MSWINDOWS.fileattr / MSWINDOWS.rawsd /
MSWINDOWS.xattr.* / LIBARCHIVE.creationtime records, symlinks and mount
points, hard links, "file:stream" alternate data streams, whiteouts (.wh.x and
the opaque .wh..wh..opq) of paths of the fuzzer's fixed parent image, GNU long
names and link names, ustar prefixes, global PAX headers and PAX overrides of
path/linkpath/size. The archives are cut after their two end-of-archive
blocks (tarfile pads to 10 KiB), so most are a few KB. The last byte of an
input (padding the importer does not read) picks the fuzzer's setting: 0 (the
usual) forks the fuzzer's parent image in format 3 and reads through a read
function; a few seeds are also written as "<name>-noparent-v2.bin" (last byte
3: no parent, format 2) and "<name>-compare.bin" (last byte 12: read in
whole buffers, and again in small pieces; both must end alike).
Needs only the standard library (and tests/_tar_gen.py for hand-made blocks).
"""

from __future__ import annotations

import base64
import io
import pathlib
import struct
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import _tar_gen as tg  # noqa: E402

MTIME = 1_600_000_000

# Self-relative security descriptors: a NULL DACL, and owner/group SYSTEM with a
# DACL granting Everyone read (what real layers carry, in miniature).
SD_NULL_DACL = b"\x01\x00\x04\x80" + b"\x00" * 16


def _sd_system() -> bytes:
    system = bytes([1, 1, 0, 0, 0, 0, 0, 5]) + struct.pack("<I", 18)
    everyone = bytes([1, 1, 0, 0, 0, 0, 0, 1]) + struct.pack("<I", 0)
    ace = struct.pack("<BBHI", 0, 0, 8 + len(everyone), 0x120089) + everyone
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(ace), 1, 0) + ace
    off_owner = 20
    off_group = off_owner + len(system)
    off_dacl = off_group + len(system)
    return struct.pack("<BBHIIII", 1, 0, 0x8004, off_owner, off_group, 0, off_dacl) + system + system + acl


SD_SYSTEM = _sd_system()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def dir_pax(attrs: int = 0x10, sd: bytes = SD_SYSTEM, **extra: str) -> dict:
    d = {"MSWINDOWS.fileattr": str(attrs), "MSWINDOWS.rawsd": b64(sd),
         "LIBARCHIVE.creationtime": "1500000000.1234567"}
    d.update(extra)
    return d


def file_pax(attrs: int = 0x20, sd: bytes = SD_SYSTEM, **extra: str) -> dict:
    d = {"MSWINDOWS.fileattr": str(attrs), "MSWINDOWS.rawsd": b64(sd),
         "LIBARCHIVE.creationtime": "1500000000"}
    d.update(extra)
    return d


class Layer:
    """A tarfile-written archive in memory."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=fmt)

    def _info(self, name: str, kind: bytes, pax: dict | None, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mtime = MTIME
        ti.linkname = linkname
        ti.size = size
        ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        if pax:
            ti.pax_headers = dict(pax)
        return ti

    def dir(self, name: str, pax: dict | None = None) -> "Layer":
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, pax))
        return self

    def file(self, name: str, data: bytes = b"", pax: dict | None = None) -> "Layer":
        self.tar.addfile(self._info(name, tarfile.REGTYPE, pax, size=len(data)), io.BytesIO(data))
        return self

    def link(self, name: str, target: str, pax: dict | None = None) -> "Layer":
        self.tar.addfile(self._info(name, tarfile.LNKTYPE, pax, linkname=target))
        return self

    def symlink(self, name: str, target: str, pax: dict | None = None) -> "Layer":
        self.tar.addfile(self._info(name, tarfile.SYMTYPE, pax, linkname=target))
        return self

    def bytes(self) -> bytes:
        self.tar.close()
        return trim(self.buf.getvalue())


def trim(data: bytes) -> bytes:
    """Cut the record padding after the two end-of-archive blocks."""
    end = len(data)
    while end >= 512 and not any(data[end - 512:end]):
        end -= 512
    return data[:end] + b"\0" * 1024


def symlink_reparse(target: str) -> bytes:
    t = target.encode("utf-16-le")
    body = struct.pack("<HHHHI", 0, len(t), len(t), len(t), 1) + t + t
    return struct.pack("<IHH", 0xA000000C, len(body), 0) + body


def seeds() -> dict:
    out = {}

    # The shape of a real base-layer diff: Files/ and Hives/, attributes, SDs,
    # creation times, an EA, a stream, a hard link, a symlink and a junction.
    out["windows-layer"] = (
        Layer()
        .dir("Files", dir_pax())
        .dir("Files/Windows", dir_pax(0x10))
        .file("Files/Windows/a.txt", b"alpha\r\n" * 8,
              file_pax(0x20, **{"MSWINDOWS.xattr.$KERNEL.PURGE.ESBCACHE": b64(b"\x01\x02\x03\x04" * 4)}))
        .file("Files/Windows/a.txt:Zone.Identifier", b"[ZoneTransfer]\r\nZoneId=3\r\n")
        .link("Files/Windows/hard.txt", "Files/Windows/a.txt")
        .symlink("Files/Windows/rel.lnk", "a.txt", file_pax(0x420))
        .symlink("Files/Windows/junction", "C:\\Windows", dir_pax(0x410, **{"MSWINDOWS.mountpoint": "1"}))
        .dir("Hives", dir_pax())
        .file("Hives/Sam_Delta", b"regf" + bytes(60), file_pax(0x20))
        .bytes()
    )

    # Whiteouts of the parent's files and directories, an opaque directory, a
    # whiteout of something this layer added, and one of nothing at all.
    out["whiteouts"] = (
        Layer()
        .dir("Files", dir_pax())
        .file("Files/Windows/.wh.a.txt", b"", file_pax())
        .file("Files/.wh.Empty")
        .file("Files/Windows/System32/.wh..wh..opq")
        .file("Files/Windows/System32/new.dll", b"MZ" + bytes(30), file_pax())
        .file("Files/Windows/.wh.no-such-file")
        .file("Files/mine.txt", b"mine")
        .file("Files/.wh.mine.txt")
        .file(".wh.top.txt")
        .bytes()
    )

    # Streams: on a parent file the layer does not touch, on a new file, with
    # an explicit :$DATA, on a directory, and an empty one.
    out["streams"] = (
        Layer()
        .file("Files/Windows/b.txt:extra", b"stream of a parent file")
        .file("Files/Windows/new.txt", b"new", file_pax())
        .file("Files/Windows/new.txt:one:$DATA", b"1" * 40)
        .file("Files/Windows/new.txt:two", b"")
        .dir("Files/Dir", dir_pax())
        .file("Files/Dir:dirstream", b"on a directory")
        .bytes()
    )

    # GNU format: long names (L) and long link names (K), base-256 numbers.
    long_dir = "Files/" + "d" * 90 + "/" + "e" * 40
    gnu = Layer(tarfile.GNU_FORMAT)
    gnu.dir("Files").dir(long_dir)
    gnu.file(long_dir + "/" + "f" * 120 + ".dat", b"long name")
    gnu.link("Files/short-link", long_dir + "/" + "f" * 120 + ".dat")
    gnu.link("Files/" + "g" * 110 + "-link", long_dir + "/" + "f" * 120 + ".dat")
    gnu.symlink("Files/sym", "x" * 130)
    ti = tarfile.TarInfo("Files/old.txt")
    ti.mtime = -1_000_000_000  # before 1970: base-256 in GNU format
    ti.size = 3
    gnu.tar.addfile(ti, io.BytesIO(b"old"))
    out["gnu-longnames"] = gnu.bytes()

    # ustar: a path split into prefix and name, no PAX at all.
    us = Layer(tarfile.USTAR_FORMAT)
    deep = "Files/" + "/".join(["component%02d" % i for i in range(9)])
    us.dir("Files").dir(deep)
    us.file(deep + "/leaf-file-with-a-name.txt", b"ustar prefix")
    us.symlink("Files/abs", "/Files/Windows")
    out["ustar-prefix"] = us.bytes()

    # A global header and PAX overrides of path, linkpath, size, times.
    t = tg.Tar()
    body = tg.pax_record("MSWINDOWS.rawsd", b64(SD_NULL_DACL)) + tg.pax_record("mtime", "1600000000.75")
    t.raw(tg.header("pax_global_header", b"g", len(body)))
    t.raw(tg._padded(body))
    t.dir("Files/", **{"MSWINDOWS.fileattr": "0x10"})
    t.add(tg.Entry("Files/ignored-name", b"0", b"data via pax path",
                   pax={"path": "Files/real-name.txt", "atime": "1600000001.5", "ctime": "-5"}))
    t.add(tg.Entry("Files/sized", b"0", b"0123456789", pax={"size": "10"}))
    t.add(tg.Entry("Files/lnk", b"1", linkname="wrong", pax={"linkpath": "Files/real-name.txt"}))
    t.add(tg.Entry("Files/pre1601", b"0", b"", pax={"mtime": "-12000000000", "LIBARCHIVE.creationtime": "0.0000001"}))
    out["pax-overrides"] = t.bytes()

    # Several EAs (alignment of the chain), attribute spellings int() accepts.
    eas = {f"MSWINDOWS.xattr.EA{i}": b64(bytes(range(i * 7 % 50))) for i in range(1, 6)}
    out["eas-attrs"] = (
        Layer()
        .dir("Files", dir_pax(0x10))
        .file("Files/eas.bin", b"x", file_pax(0x21, **eas))
        .file("Files/hex", b"", {"MSWINDOWS.fileattr": "0x0000_0020"})
        .file("Files/octal", b"", {"MSWINDOWS.fileattr": "0o40"})
        .file("Files/sparse", b"", {"MSWINDOWS.fileattr": "0x220"})
        .file("Files/hidden-system", b"", {"MSWINDOWS.fileattr": "6", "MSWINDOWS.rawsd": b64(SD_NULL_DACL)})
        .bytes()
    )

    # Implicit parents, a directory added twice, a file replaced, case-insensitive
    # names (Windows upcase rules), non-ASCII names and the root itself.
    out["implicit-and-case"] = (
        Layer()
        .dir("./", dir_pax())
        .file("Files/a/b/c/deep.txt", b"deep", file_pax())
        .dir("Files/a/b", dir_pax(0x12))
        .dir("Files/a/b/", dir_pax(0x10))
        .file("Files/replace.txt", b"one")
        .file("Files/replace.txt", b"two two")
        .file("Files/Ünïcødé/straße.txt", b"utf-8", file_pax())
        .file("Files/ǅ", b"dz")
        .file("Files/µ", b"micro")
        .bytes()
    )

    # Symlink forms: relative, absolute drive, UNC, \\?\ and a raw CIMFS.reparse blob.
    out["symlinks"] = (
        Layer()
        .dir("Files", dir_pax())
        .symlink("Files/rel", "../Files/x", file_pax(0x420))
        .symlink("Files/drive", "D:/data/file.txt", file_pax(0x420))
        .symlink("Files/unc", "\\\\server\\share\\dir", dir_pax(0x410))
        .symlink("Files/nt", "\\\\?\\C:\\Windows", dir_pax(0x410, **{"MSWINDOWS.mountpoint": "1"}))
        .symlink("Files/raw", "ignored", {"CIMFS.reparse": b64(symlink_reparse("raw\\target"))})
        .bytes()
    )

    # Data crossing the importer's 32 KiB buffer, between small entries.
    big = bytes((i * 131 + (i >> 9)) & 0xff for i in range(34000))
    out["buffer-crossing"] = (
        Layer()
        .file("Files/small1", b"s" * 100)
        .file("Files/big.bin", big, file_pax())
        .file("Files/big.bin:ads", big[:700])
        .file("Files/small2", b"t" * 513)
        .bytes()
    )

    # The small layer of the hostile-tar tests (hand-made blocks).
    out["small-layer"] = tg.small_layer().bytes()
    return out


# Seeds also written for the fuzzer's other setting (no parent, format 2).
NO_PARENT_TOO = ("windows-layer", "symlinks", "gnu-longnames", "whiteouts")
# ... and imported both with whole reads and with reads in small pieces.
COMPARE_TOO = ("windows-layer", "buffer-crossing", "pax-overrides", "whiteouts", "small-layer")


def main() -> None:
    out_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus" / "layer"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        assert data.endswith(b"\0" * 1024), name
        files = {f"{name}.bin": data}
        if name in NO_PARENT_TOO:
            files[f"{name}-noparent-v2.bin"] = data[:-1] + b"\x03"
        if name in COMPARE_TOO:
            files[f"{name}-compare.bin"] = data[:-1] + b"\x0c"
        for fname, content in files.items():
            (out_dir / fname).write_bytes(content)
            print(f"{out_dir / fname}: {len(content)} bytes")


if __name__ == "__main__":
    main()
