#!/usr/bin/env python3
"""Build the seed corpora of the libFuzzer harnesses from real images.

    python fuzz/make_seeds.py [OUT]        (default OUT: fuzz/corpus)
    python fuzz/make_seeds.py --should-fail [DIR]   (default DIR: tests/should_fail)

writes OUT/reader/*.bin (inputs of fuzz_reader, in the container format of
tests/should_fail/README.md) and OUT/writer/*.bin (operation scripts for
fuzz_writer_paths). Reader seeds come from the image Windows' cimfs.dll wrote
(the shared fixture) and from images this package writes: format 2 and 3,
nested directories, empty/small/large (page-aligned) files, alternate data
streams, hard links, symlink and mount-point reparse points, EAs, security
descriptors, more than 1024 files (two file tables), a fork (parent region
sets), and a PE-image stream with mappings (patched in by hand, since only
cimfs.dll writes those). --should-fail writes the hand-made damaged images
kept in tests/should_fail/ (fuzzer crash inputs are added there as they are).
Needs the cimfs package (pip install .) and the shared
fixtures (CIMFS_SHARED or ../shared next to the repository).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import struct
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import cimfs  # noqa: E402
from cimfs import FileAttributes, FileInfo  # noqa: E402

import _fuzz_container as fc  # noqa: E402

GUID = "8e2f6c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
GUID_CHILD = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"


def shared_dir() -> pathlib.Path:
    for c in (os.environ.get("CIMFS_SHARED", ""), str(ROOT.parent / "shared"), str(ROOT / "shared")):
        if c and (pathlib.Path(c) / "fixtures" / "windows-v3-hello" / "test.cim").exists():
            return pathlib.Path(c)
    sys.exit("make_seeds: the shared fixtures are missing; set CIMFS_SHARED")


def symlink(target: str, relative: bool = True) -> bytes:
    t = target.encode("utf-16-le")
    body = struct.pack("<HHHHI", 0, len(t), len(t), len(t), 1 if relative else 0) + t + t
    return struct.pack("<IHH", 0xA000000C, len(body), 0) + body


def mount_point(target: str) -> bytes:
    sub = ("\\??\\" + target).encode("utf-16-le") + b"\0\0"
    prn = target.encode("utf-16-le") + b"\0\0"
    body = struct.pack("<HHHH", 0, len(sub) - 2, len(sub), len(prn) - 2) + sub + prn
    return struct.pack("<IHH", 0xA0000003, len(body), 0) + body


def ea(*entries) -> bytes:
    out = b""
    for i, (name, value) in enumerate(entries):
        e = struct.pack("<IBBH", 0, 0, len(name), len(value)) + name + b"\0" + value
        if i + 1 < len(entries):
            e += b"\0" * (-len(e) % 4)
            e = struct.pack("<I", len(e)) + e[4:]
        out += e
    return out


def sd_owner_only() -> bytes:
    # revision 1, SE_SELF_RELATIVE|SE_DACL_PRESENT, owner S-1-5-18 at offset 20, no DACL
    sid = bytes([1, 1, 0, 0, 0, 0, 0, 5]) + struct.pack("<I", 18)
    return struct.pack("<BBHIIII", 1, 0, 0x8004, 20, 0, 0, 0) + sid


def build_rich(d: pathlib.Path, version: int) -> pathlib.Path:
    with cimfs.create(d, f"rich{version}.cim", format_version=version, region_set=GUID) as w:
        w.add_directory("Files")
        w.add_directory("Files\\Windows")
        w.add_directory("Files\\Windows\\System32")
        w.add_directory("Files\\empty dir")
        w.add_file("Files\\empty.txt")
        w.add_file("Files\\hello.txt", FileInfo(attributes=FileAttributes.ARCHIVE | FileAttributes.READONLY,
                                               creation_time=132000000000000000, last_write_time=132000000000000001,
                                               security_descriptor=sd_owner_only()), data=b"Hello world!")
        w.add_file("Files\\Windows\\System32\\big.dll", data=bytes(range(256)) * 40)  # 10240: page data
        w.add_file("Files\\ea.txt", FileInfo(extended_attributes=ea((b"USER.A", b"1"), (b"$KERNEL.PURGE.X", b"v" * 70))),
                   data=b"ea")
        w.add_stream("Files\\hello.txt:Zone.Identifier", data=b"[ZoneTransfer]\r\nZoneId=3\r\n")
        w.add_stream("Files\\hello.txt:empty", data=b"")
        w.add_stream("Files\\empty dir:dirstream", data=b"on a directory")
        w.add_link("Files\\hello.txt", "Files\\Windows\\hello-link.txt")
        w.add_link("Files\\hello.txt", "HELLO2.TXT")
        w.add_file("Files\\link", FileInfo(reparse_data=symlink("hello.txt")))
        w.add_directory("Files\\junction", FileInfo(attributes=FileAttributes.DIRECTORY,
                                                    reparse_data=mount_point("C:\\Windows")))
        w.add_file("Files\\\u00b5\u0131\u017f\u1f80 \u00e9", FileInfo(attributes=FileAttributes.HIDDEN), data=b"odd case")
        w.add_file("Files\\\U0001f600.txt", data=b"astral")
        w.add_directory("Hives")
        w.add_file("Hives\\System_Delta", FileInfo(attributes=FileAttributes.SYSTEM), data=b"\0" * 100)
    return d / f"rich{version}.cim"


def build_many(d: pathlib.Path) -> pathlib.Path:
    with cimfs.create(d, "many.cim", region_set=GUID) as w:
        w.add_directory("d")
        for i in range(1030):
            w.add_file(f"d\\{i:x}", data=b"x" if i % 3 == 0 else b"")
    return d / "many.cim"


def _retabled(d: pathlib.Path, name: str, make_entries) -> list:
    """Files of a one-file image whose file table directory is replaced by
    make_entries(meta, table_ro, count, entry_size) -> list of (table_ro, count, entry_size)
    (the new directory goes at the end of the metadata region; objectid files dropped)."""
    with cimfs.create(d, name, region_set=GUID) as w:
        w.add_file("a.txt", data=b"a")
    files = [bytearray(f) for f in fc.image_files(d / name)][:3]
    header, meta = files[0], files[1]
    fs_off = struct.unpack_from("<Q", header, 56)[0] & ((1 << 48) - 1)
    _, ftd_ro, _, _ = struct.unpack_from("<QQII", meta, fs_off)
    table_ro, count, entry = struct.unpack_from("<QHH", meta, ftd_ro & ((1 << 48) - 1))
    entries = make_entries(meta, table_ro, count, entry)
    meta += b"\0" * (-len(meta) % 8)
    new_ftd = len(meta)
    for e in entries:
        meta += struct.pack("<QHHI", *e, 0)
    struct.pack_into("<QI", meta, fs_off + 8, new_ftd, len(entries))
    return [bytes(f) for f in files]


def build_two_tables(d: pathlib.Path) -> list:
    """More than one file table without 1025 records: a second table (a copy of the
    root's record) after a short first one, so id 1025 exists and ids past the first
    table's count do not. Small inputs reach the multi-table code; the 1030-file
    image (many-files) is slow to fuzz and left out of the default corpus."""
    def entries(meta, table_ro, count, entry):
        meta += b"\0" * (-len(meta) % 8)
        copy = len(meta)
        meta += meta[table_ro & ((1 << 48) - 1):][:entry]
        return [(table_ro, count, entry), (copy, 1, entry)]
    return _retabled(d, "two.cim", entries)


def build_fork(d: pathlib.Path) -> pathlib.Path:
    with cimfs.create(d, "base.cim", region_set=GUID) as w:
        w.add_directory("a")
        w.add_file("a\\keep.txt", data=b"kept from the parent")
        w.add_file("a\\gone.txt", data=b"removed in the child")
    with cimfs.create(d, "child.cim", parent="base.cim", region_set=GUID_CHILD) as w:
        w.remove("a\\gone.txt")
        w.add_file("a\\new.txt", data=b"child data")
    return d / "child.cim"


# ---- a PE-image stream, patched into a written image ---------------------------------

def _region(files, ro):
    return files[1 + (ro >> 48)], ro & ((1 << 48) - 1)


def _lookup_record(files, version, name):
    """(file index, byte offset) of the record of root\\name, and its default stream."""
    header = files[0]
    meta, fs_off = _region(files, struct.unpack_from("<Q", header, 56)[0])
    _, ftd_ro, ntables, root = struct.unpack_from("<QQII", meta, fs_off)
    mi, ftd_off = _region(files, ftd_ro)
    table_ro, count, entry = struct.unpack_from("<QHH", files[1 + (ftd_ro >> 48)], ftd_off)
    tbl_index = 1 + (table_ro >> 48)
    tbl_off = table_ro & ((1 << 48) - 1)

    def record(fid):
        return tbl_off + (fid - 1) * entry

    rbuf = files[tbl_index]
    data_ro, lt = struct.unpack_from("<QQ", rbuf, record(root) + 40)
    lbuf, loff = _region(files, data_ro)
    length, n = struct.unpack_from("<II", lbuf, loff)
    for i in range(n):
        fid = struct.unpack_from("<I", lbuf, loff + 8 + 4 * i)[0]
        noff = struct.unpack_from("<I", lbuf, loff + 8 + 4 * n + 4 * i)[0]
        ln = struct.unpack_from("<H", lbuf, loff + noff)[0]
        if lbuf[loff + noff + 2:loff + noff + 2 + 2 * ln].decode("utf-16-le") == name:
            return tbl_index, record(fid)
    raise KeyError(name)


def build_pe(d: pathlib.Path) -> list:
    """Files of an image whose app.exe has a PE-image default stream: the data is
    stored 4 KiB-aligned with two mappings (offset 0 delta 0, offset 4096 delta 0)."""
    content = bytes((i * 7) & 0xFF for i in range(9000))
    with cimfs.create(d, "pe.cim", region_set=GUID) as w:
        w.add_file("app.exe", data=content)
    files = [bytearray(f) for f in fc.image_files(d / "pe.cim")]
    files = files[:1 + 2]  # header + regions; the objectid files would no longer match
    idx, rec = _lookup_record(files, 3, "app.exe")
    data_ro, lt = struct.unpack_from("<QQ", files[idx], rec + 40)
    meta = files[1]
    meta += b"\0" * (-len(meta) % 8)
    pe_off = len(meta)
    meta += struct.pack("<QQIHH", data_ro, len(content), len(content), 2, 0)
    meta += struct.pack("<IIII", 0, 0, 4096, 0)
    meta += b"\0" * (-len(meta) % 8)
    pe_ro = (0 << 48) | pe_off
    struct.pack_into("<QQ", files[idx], rec + 40, pe_ro, (2 << 48) | (24 + 16))
    return [bytes(f) for f in files]


def _simple(d: pathlib.Path) -> list:
    with cimfs.create(d, "simple.cim", region_set=GUID) as w:
        w.add_directory("dir")
        w.add_file("hello.txt", data=b"Hello world!")
        w.add_file("big.bin", data=bytes(range(256)) * 20)
    return [bytearray(f) for f in fc.image_files(d / "simple.cim")]


def should_fail_cases(d: pathlib.Path, fixture: pathlib.Path) -> dict:
    """Damaged images kept as regression cases in tests/should_fail/ (see its README)."""
    cases = {}
    # 1. a data stream claiming 2^47 bytes: stat/open/read must raise CorruptImageError,
    #    not size a 128 TiB buffer (it did: RuntimeError from the Python layer).
    files = _simple(d / "s1")
    idx, rec = _lookup_record(files, 3, "hello.txt")
    struct.pack_into("<Q", files[idx], rec + 48, 1 << 47)
    cases["stream-length-2-47"] = files
    # 2. a PE-image stream whose file length is 2^60 over a 9000-byte image.
    files = [bytearray(f) for f in build_pe(d / "s2")]
    idx, rec = _lookup_record(files, 3, "app.exe")
    pe_ro = struct.unpack_from("<Q", files[idx], rec + 40)[0]
    struct.pack_into("<Q", files[1 + (pe_ro >> 48)], (pe_ro & ((1 << 48) - 1)) + 8, 1 << 60)
    cases["pe-data-length-2-60"] = files
    # 3. the Windows image with its root listing itself as "hello.txt": a cycle.
    files = [bytearray(f) for f in fc.image_files(fixture / "test.cim")]
    root_table = 0x205B0  # the fixture's root link table (docs/cim-format.md section 5)
    struct.pack_into("<I", files[1], root_table + 8, 1)
    cases["root-lists-itself"] = files
    # 4. the Windows image with a root link table count of 0xFFFFFFFF.
    files = [bytearray(f) for f in fc.image_files(fixture / "test.cim")]
    struct.pack_into("<I", files[1], root_table + 4, 0xFFFFFFFF)
    cases["link-count-ffffffff"] = files
    # 5. 2000 file tables of which only the first holds records: verify() listed
    #    every missing id (2 million problems, seconds and hundreds of MB from 32 KB).
    (d / "s5").mkdir()
    cases["file-table-gaps"] = _retabled(d / "s5", "gaps.cim",
                                         lambda m, ro, n, e: [(ro, n, e)] + [(ro, 0, e)] * 1999)
    # 7. (found by fuzz_reader, as a timeout) a sparse PE-image stream of 2^47 bytes:
    #    verify() read it 4 KiB at a time, 2^35 reads of zeros.
    (d / "s7").mkdir()
    files = [bytearray(f) for f in build_pe(d / "s7")]
    idx, rec = _lookup_record(files, 3, "app.exe")
    struct.pack_into("<Q", files[idx], rec + 48, (1 << 47) | (2 << 48) | (1 << 56))
    cases["pe-sparse-2-47"] = files
    # 6. 2000 directory entries naming the same 1024 "records" (the bytes at the start
    #    of the metadata region): 2 million records from 32 KB.
    (d / "s6").mkdir()
    cases["file-tables-alias"] = _retabled(d / "s6", "alias.cim",
                                           lambda m, ro, n, e: [(ro, n, e)] + [(0x28, 1024, e)] * 1999)
    return {k: [bytes(f) for f in v] for k, v in cases.items()}


def writer_seeds() -> dict:
    """Operation scripts for fuzz_writer_paths (see its opcode switch)."""
    def path(*comps):
        out = bytes([len(comps) - 1])
        for c in comps:
            out += bytes([len(c)]) + bytes(c)
        return out
    a, b, c = [0], [2], [4]  # alphabet indexes: 'a', 'b', 'z'
    meta0 = bytes([0x00, 0, 0, 0])
    return {
        "files_v3": b"\x00" + b"\x01" + path(a) + meta0 + b"\x00" + path(a, b) + meta0 + b"\x05\x01"
        + b"\x02" + path(a, b) + bytes([2]) + bytes([1, 2]) + b"\x00" + b"\x09",
        "links_v2": b"\x01" + b"\x00" + path(a) + meta0 + b"\x03\x01" + b"\x03" + path(a) + path(c)
        + b"\x04" + path(a),
        "fork": b"\x00" + b"\x01" + path(a) + meta0 + b"\x08" + b"\x04" + path(a) + b"\x07" + path(b)
        + meta0 + b"\x10\x00",
        "blobs": b"\x00" + b"\x00" + path(b) + bytes([0xF4, 5, 0, 1, 3, 0]) + bytes([3]) + b"\x00\x00\x00\x00"
        + b"\x00\x01",
    }


def main() -> None:
    fixture = shared_dir() / "fixtures" / "windows-v3-hello"
    upcase = fc.upcase_from_fixture(fixture)
    if sys.argv[1:2] == ["--should-fail"]:
        out = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests" / "should_fail"
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            for sub in ("s1", "s2"):
                (pathlib.Path(tmp) / sub).mkdir()
            for name, files in should_fail_cases(pathlib.Path(tmp), fixture).items():
                blob = fc.pack(files, upcase)
                (out / f"{name}.bin").write_bytes(blob)
                print(f"{out.name}/{name}.bin: {len(blob)} bytes")
        return
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"
    (out / "reader").mkdir(parents=True, exist_ok=True)
    (out / "writer").mkdir(parents=True, exist_ok=True)
    seeds = {"windows-v3-hello": fc.image_files(fixture / "test.cim")}
    with tempfile.TemporaryDirectory() as tmp:
        t = pathlib.Path(tmp)
        for name, build in [("rich-v3", lambda p: build_rich(p, 3)), ("rich-v2", lambda p: build_rich(p, 2)),
                            ("many-files", build_many), ("fork", build_fork)]:
            sub = t / name
            sub.mkdir()
            header = build(sub)
            assert cimfs.open(header).verify() == [], name
            seeds[name] = fc.image_files(header)
        sub = t / "pe"
        sub.mkdir()
        seeds["pe-image"] = build_pe(sub)
        sub = t / "two"
        sub.mkdir()
        seeds["two-tables"] = build_two_tables(sub)
    for name, files in seeds.items():
        if name == "many-files" and not os.environ.get("CIMFS_SEEDS_LARGE"):
            continue  # 190 KB and slow per run; CIMFS_SEEDS_LARGE=1 includes it
        blob = fc.pack(files, upcase)
        assert fc.unpack(blob, upcase)[:len(files)] == [bytes(f) for f in files], name
        (out / "reader" / f"{name}.bin").write_bytes(blob)
        print(f"reader/{name}.bin: {len(files)} files, {len(blob)} bytes "
              f"(sha256 {hashlib.sha256(blob).hexdigest()[:12]})")
    for name, blob in writer_seeds().items():
        (out / "writer" / f"{name}.bin").write_bytes(blob)
        print(f"writer/{name}.bin: {len(blob)} bytes")


if __name__ == "__main__":
    main()
