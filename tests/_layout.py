"""An independent byte-level reader of CimFS images, for the tests.

Written from the format notes (docs/cim-format.md) with :mod:`struct` and
:mod:`hashlib` only: it does not import cimfs, so the tests can hold the
engine's output against a second reading of the spec rather than against the
engine itself.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

MAGIC = b"cimfile0"
COMMON = struct.Struct("<8sIB B H II Q")  # magic, header_length, type, rsv u8, rsv u16, major, minor, rsv u64
REGION_SET = struct.Struct("<16sHHI")  # guid, count, rsv u16, rsv u32
FS_TAIL = struct.Struct("<QIHH")  # filesystem_offset, rsv u32, rsv u16, parent_count
REGION_TAIL = struct.Struct("<HBBI")  # index, region_type, rsv u8, rsv u32
OBJID_TAIL = struct.Struct("<HBBIII")  # index, region_type, rsv, rsv u32, table_offset, count
OBJID_ENTRY = struct.Struct("<Q24sQ")  # length, digest, offset
FS_OBJECT = struct.Struct("<QQII")  # upcase, file table directory, directory length, root id
FTD_ENTRY = struct.Struct("<QHHI")  # file table offset, count, entry size, rsv
STREAM = struct.Struct("<QQ")  # data, length_and_type
RECORD_V2 = struct.Struct("<HHI4Q2Q4QIHH")  # 96 bytes
RECORD_V3 = struct.Struct("<HHI4Q2Q4QIHHQ")  # 104 bytes

assert COMMON.size == 32 and REGION_SET.size == 24 and FS_TAIL.size == 16
assert REGION_TAIL.size == 8 and OBJID_TAIL.size == 16 and OBJID_ENTRY.size == 40
assert RECORD_V2.size == 96 and RECORD_V3.size == 104

HEADER_FILESYSTEM, HEADER_REGION, HEADER_OBJECTID = 0, 1, 2
REGION_METADATA, REGION_PAGE_DATA, REGION_SMALL_DATA = 0, 1, 2
STREAM_DATA, STREAM_LINK_TABLE, STREAM_PE_IMAGE = 0, 1, 2
FILES_PER_TABLE = 1024
NULL_DACL_SD = bytes([1, 0, 4, 0x80]) + bytes(16)


class LayoutError(AssertionError):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise LayoutError(what)


# ---- small pieces -------------------------------------------------------------

def guid_text(raw: bytes) -> str:
    """Binary GUID (Data1 u32, Data2 u16, Data3 u16 little-endian, Data4 bytes) as text."""
    return str(uuid.UUID(bytes_le=bytes(raw)))


def guid_bytes(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


def region_offset(ro: int) -> Tuple[int, int]:
    return ro >> 48, ro & ((1 << 48) - 1)


def object_digest(obj: bytes) -> bytes:
    """The 24-byte digest part of an object ID."""
    if len(obj) <= 24:
        return bytes(obj).ljust(24, b"\0")
    return hashlib.sha512(obj).digest()[:24]


@dataclass
class Common:
    magic: bytes
    header_length: int
    type: int
    version: Tuple[int, int]
    reserved64: int


def parse_common(b: bytes) -> Common:
    check(len(b) >= 32, "file shorter than the 32-byte common header")
    magic, hl, typ, _r8, _r16, major, minor, rsv = COMMON.unpack_from(b, 0)
    return Common(magic, hl, typ, (major, minor), rsv)


@dataclass
class FilesystemHeader:
    common: Common
    guid: str
    guid_raw: bytes
    region_count: int
    filesystem_offset: int
    parent_count: int
    parents: List[Tuple[str, int]]


def parse_filesystem_header(b: bytes) -> FilesystemHeader:
    c = parse_common(b)
    check(len(b) >= 72, "filesystem header shorter than 72 bytes")
    graw, count, _r1, _r2 = REGION_SET.unpack_from(b, 32)
    fso, _r3, _r4, parents = FS_TAIL.unpack_from(b, 56)
    ps = []
    for i in range(parents):
        pg, pc, _a, _b = REGION_SET.unpack_from(b, 72 + 24 * i)
        ps.append((guid_text(pg), pc))
    return FilesystemHeader(c, guid_text(graw), graw, count, fso, parents, ps)


@dataclass
class RegionHeader:
    common: Common
    index: int
    region_type: int


def parse_region_header(b: bytes) -> RegionHeader:
    c = parse_common(b)
    check(len(b) >= 40, "region file shorter than its 40-byte header")
    idx, rtype, _r, _r32 = REGION_TAIL.unpack_from(b, 32)
    return RegionHeader(c, idx, rtype)


@dataclass
class ObjectIdFile:
    common: Common
    index: int
    region_type: int
    table_offset: int
    entries: List[Tuple[int, bytes, int]]  # (length, digest, offset)


def parse_objectid(b: bytes) -> ObjectIdFile:
    c = parse_common(b)
    check(len(b) >= 48, "objectid file shorter than its 48-byte header")
    idx, rtype, _r, _r32, toff, count = OBJID_TAIL.unpack_from(b, 32)
    check(toff + count * 40 <= len(b), "objectid table runs past the end of the file")
    entries = [OBJID_ENTRY.unpack_from(b, toff + 40 * i) for i in range(count)]
    return ObjectIdFile(c, idx, rtype, toff, entries)


@dataclass
class LinkTable:
    length: int
    values: List[bytes]
    names: List[str]  # decoded with surrogatepass
    name_units: List[Tuple[int, ...]]  # the raw UTF-16 code units


def parse_link_table(b: bytes, off: int, value_size: int) -> LinkTable:
    length, count = struct.unpack_from("<II", b, off)
    check(length >= 8 + count * (value_size + 4), "link table shorter than its entries")
    check(off + length <= len(b), "link table runs past the end of its region")
    values = [bytes(b[off + 8 + value_size * i: off + 8 + value_size * (i + 1)]) for i in range(count)]
    offs = struct.unpack_from(f"<{count}I", b, off + 8 + value_size * count)
    names, units = [], []
    for o in offs:
        check(o + 2 <= length, "link table name offset outside the table")
        (n,) = struct.unpack_from("<H", b, off + o)
        check(o + 2 + 2 * n <= length, "link table name runs past the table")
        raw = bytes(b[off + o + 2: off + o + 2 + 2 * n])
        units.append(struct.unpack(f"<{n}H", raw))
        names.append(raw.decode("utf-16-le", "surrogatepass"))
    return LinkTable(length, values, names, units)


@dataclass
class Stream:
    data: int
    length: int
    type: int
    sparse: bool


def parse_stream(data: int, lt: int) -> Stream:
    return Stream(data, lt & ((1 << 48) - 1), (lt >> 48) & 0xFF, bool(lt >> 56 & 1))


@dataclass
class Record:
    file_id: int
    flags: int
    ea_length: int
    reparse_tag: int
    times: Tuple[int, int, int, int]  # creation, last write, change, last access
    default_stream: Stream
    security_descriptor: int
    extended_attributes: int
    reparse_data: int
    stream_table: int
    parent_file_id: int
    base_region_index: int
    links: Optional[int]
    raw: bytes


def parse_record(b: bytes, off: int, entry_size: int, file_id: int) -> Record:
    fmt = RECORD_V3 if entry_size == 104 else RECORD_V2
    check(entry_size in (96, 104), f"unknown file record size {entry_size}")
    v = fmt.unpack_from(b, off)
    flags, ea_len, tag, ct, wt, cht, at, sdata, slt, sd, ea, rp, st, parent, base, _rsv = v[:16]
    links = v[16] if entry_size == 104 else None
    return Record(file_id, flags, ea_len, tag, (ct, wt, cht, at), parse_stream(sdata, slt), sd, ea, rp, st,
                  parent, base, links, bytes(b[off: off + entry_size]))


def upcase_key(name_units, table: bytes) -> Tuple[int, ...]:
    return tuple(table[2 * u] | table[2 * u + 1] << 8 for u in name_units)


# ---- a whole image ------------------------------------------------------------

class Layout:
    """Every file of one image, parsed. ``path`` is the header (``*.cim``)."""

    def __init__(self, path) -> None:
        path = os.fspath(path)
        self.path = path
        self.dir = os.path.dirname(path) or "."
        with open(path, "rb") as f:
            self.header_bytes = f.read()
        self.header = parse_filesystem_header(self.header_bytes)
        self.version = self.header.common.version
        g = self.header.guid
        self.region_names = [f"region_{g}_{i}" for i in range(self.header.region_count)]
        self.objectid_names = [f"objectid_{g}_{i}" for i in range(self.header.region_count)]
        self.regions: List[bytes] = []
        self.region_headers: List[RegionHeader] = []
        self.objectids: List[ObjectIdFile] = []
        for rn, on in zip(self.region_names, self.objectid_names):
            with open(os.path.join(self.dir, rn), "rb") as f:
                data = f.read()
            self.regions.append(data)
            self.region_headers.append(parse_region_header(data))
            with open(os.path.join(self.dir, on), "rb") as f:
                self.objectids.append(parse_objectid(f.read()))
        self.fs = self.read(self.header.filesystem_offset, 24)
        self.upcase_ro, self.ftd_ro, self.ftd_len, self.root_id = FS_OBJECT.unpack(self.fs)
        self.upcase = self.read(self.upcase_ro, 131072)
        self.ftd = [FTD_ENTRY.unpack_from(self.read(self.ftd_ro, 16 * self.ftd_len), 16 * i)
                    for i in range(self.ftd_len)]
        self.records: Dict[int, Record] = {}
        self._index: Dict[int, Dict[Tuple[int, ...], int]] = {}
        fid = 1
        for ti, (tro, count, esize, _r) in enumerate(self.ftd):
            reg, off = region_offset(tro)
            check(count <= FILES_PER_TABLE, f"file table {ti} holds {count} > 1024 records")
            table = self.read(tro, count * esize)
            for k in range(count):
                self.records[fid] = parse_record(table, k * esize, esize, fid)
                fid += 1
            if ti + 1 < len(self.ftd):
                check(count == FILES_PER_TABLE, "a file table other than the last is not full")

    # -- addressing
    def region_of(self, ro: int) -> Tuple[bytes, int]:
        reg, off = region_offset(ro)
        check(reg < len(self.regions), f"RegionOffset {ro:#x} names region {reg} of {len(self.regions)}")
        return self.regions[reg], off

    def read(self, ro: int, n: int) -> bytes:
        data, off = self.region_of(ro)
        check(ro != 0, "read through a null RegionOffset")
        check(off >= 40 and off + n <= len(data), f"object at {ro:#x} (+{n}) outside its region")
        return data[off: off + n]

    def prefixed(self, ro: int) -> bytes:
        """A u16-length-prefixed object (security descriptors, reparse buffers)."""
        (n,) = struct.unpack("<H", self.read(ro, 2))
        return self.read(ro + 2, n)

    def link_table(self, ro: int, value_size: int = 4) -> LinkTable:
        data, off = self.region_of(ro)
        return parse_link_table(data, off, value_size)

    # -- the tree
    def children(self, fid: int) -> List[Tuple[str, int]]:
        r = self.records[fid]
        check(r.default_stream.type == STREAM_LINK_TABLE, f"file {fid} is not a directory")
        if r.default_stream.length == 0:
            return []
        t = self.link_table(r.default_stream.data, 4)
        check(t.length == r.default_stream.length, f"directory {fid}: stream length != link table length")
        return [(n, struct.unpack("<I", v)[0]) for n, v in zip(t.names, t.values)]

    def lookup(self, path: str) -> int:
        """FileID of a path, matching names case-insensitively through the upcase table."""
        fid = self.root_id
        for comp in [c for c in path.replace("/", "\\").split("\\") if c]:
            if fid not in self._index:
                self._index[fid] = {self._key(n): cid for n, cid in self.children(fid)}
            try:
                fid = self._index[fid][self._key(comp)]
            except KeyError:
                raise KeyError(path) from None
        return fid

    def record(self, path: str) -> Record:
        return self.records[self.lookup(path)]

    def content(self, rec: Record) -> bytes:
        s = rec.default_stream
        check(s.type == STREAM_DATA, f"file {rec.file_id} has no data stream")
        return self.read(s.data, s.length) if s.length else b""

    def streams(self, rec: Record) -> Dict[str, Stream]:
        if not rec.stream_table:
            return {}
        t = self.link_table(rec.stream_table, 16)
        return {n: parse_stream(*STREAM.unpack(v)) for n, v in zip(t.names, t.values)}

    def links_of(self, rec: Record) -> List[Tuple[str, int]]:
        check(rec.links is not None and rec.links != 0, f"file {rec.file_id} has no links table")
        t = self.link_table(rec.links, 4)
        return [(n, struct.unpack("<I", v)[0]) for n, v in zip(t.names, t.values)]

    def security_descriptor(self, rec: Record) -> bytes:
        return self.prefixed(rec.security_descriptor) if rec.security_descriptor else b""

    def extended_attributes(self, rec: Record) -> bytes:
        return self.read(rec.extended_attributes, rec.ea_length) if rec.extended_attributes else b""

    def reparse_data(self, rec: Record) -> bytes:
        return self.prefixed(rec.reparse_data) if rec.reparse_data else b""

    # -- the whole-image check
    def check_all(self) -> None:
        """Every structural rule of the spec that can be checked from the bytes."""
        h = self.header
        check(h.common.magic == MAGIC, "filesystem header magic")
        check(h.common.header_length == 72 + 24 * h.parent_count, "filesystem header length")
        check(h.common.type == HEADER_FILESYSTEM, "filesystem header type")
        check(h.common.version in ((3, 0), (2, 0)), f"version {h.common.version}")
        check(len(self.header_bytes) == h.common.header_length, "header file has trailing bytes")
        for i, (data, rh, oid) in enumerate(zip(self.regions, self.region_headers, self.objectids)):
            name = self.region_names[i]
            check(rh.common.magic == MAGIC and rh.common.header_length == 40, f"{name}: header")
            check(rh.common.type == HEADER_REGION, f"{name}: header type")
            check(rh.common.version == h.common.version, f"{name}: version differs from the image's")
            check(rh.region_type in (0, 1, 2), f"{name}: region type {rh.region_type}")
            align = 4096 if rh.region_type == REGION_PAGE_DATA else 8
            check(len(data) % align == 0, f"{name}: length {len(data)} not padded to {align}")
            check(oid.common.magic == MAGIC and oid.common.header_length == 48, f"objectid {i}: header")
            check(oid.common.type == HEADER_OBJECTID, f"objectid {i}: type")
            check(oid.index == i, f"objectid {i}: index {oid.index} != position in set")
            check(oid.region_type == rh.region_type, f"objectid {i}: region type differs from the region's")
            check(oid.table_offset == 48, f"objectid {i}: table offset")
            keys = [(ln, dg) for ln, dg, _ in oid.entries]
            check(keys == sorted(keys), f"objectid {i}: table not sorted by (length, digest)")
            check(len(set(keys)) == len(keys), f"objectid {i}: duplicate object IDs")
            for ln, dg, off in oid.entries:
                check(off % align == 0, f"{name}: object at {off:#x} not {align}-aligned")
                check(off >= 40 and off + ln <= len(data), f"{name}: object at {off:#x}+{ln} outside the file")
                check(object_digest(data[off: off + ln]) == dg, f"{name}: digest of the object at {off:#x}")
        check(self.records.get(self.root_id) is not None, "root file id has no record")
        check(len(self.records) == sum(e[1] for e in self.ftd), "record count")
        for e in self.ftd:
            check(e[2] == (104 if h.common.version[0] >= 3 else 96), f"file table entry size {e[2]}")
        # every record's pointers land inside a region; directories' tables are sorted
        linked: Dict[int, List[Tuple[str, int]]] = {fid: [] for fid in self.records}
        for fid, r in self.records.items():
            check(r.base_region_index == 0, f"file {fid}: base region index")
            if r.security_descriptor:
                self.security_descriptor(r)
            if r.extended_attributes:
                self.read(r.extended_attributes, r.ea_length)
            if r.reparse_data:
                rp = self.reparse_data(r)
                check(struct.unpack_from("<I", rp)[0] == r.reparse_tag, f"file {fid}: reparse tag")
            if r.default_stream.type == STREAM_LINK_TABLE:
                kids = self.children(fid)
                keys = [self._key(n) for n, _ in kids]
                check(keys == sorted(keys), f"directory {fid}: link table not in upcase order")
                check(len(set(keys)) == len(keys), f"directory {fid}: names equal after upcasing")
                for n, cid in kids:
                    check(cid in self.records, f"directory {fid}: child id {cid} has no record")
                    linked[cid].append((n, fid))
            elif r.default_stream.type == STREAM_DATA and r.default_stream.length:
                self.content(r)
            for sname, s in self.streams(r).items():
                if s.length:
                    self.read(s.data, s.length)
            if h.common.version[0] >= 3:
                ls = self.links_of(r)
                keys = [self._key(n) for n, _ in ls]
                check(keys == sorted(keys), f"file {fid}: links table not sorted")
        # every object the metadata refers to has an entry in its region's objectid table
        known = {(reg, o, ln) for reg, oid in enumerate(self.objectids) for ln, _d, o in oid.entries}
        for ro, n in self.referenced_objects():
            reg, off = region_offset(ro)
            check((reg, off, n) in known, f"object at {ro:#x} ({n} bytes) has no objectid entry")
        for fid, r in self.records.items():
            if fid == self.root_id:
                check(r.parent_file_id == self.root_id, "root's parent is not itself")
                if h.common.version[0] >= 3:
                    check(self.links_of(r) == [(".", 1)], "root links table")
                continue
            check(linked[fid], f"file {fid} is in no directory")
            check(r.parent_file_id in {p for _, p in linked[fid]}, f"file {fid}: parent id not a directory of it")
            if h.common.version[0] >= 3:
                check(sorted(self.links_of(r)) == sorted(linked[fid]),
                      f"file {fid}: links table {self.links_of(r)} != directory entries {linked[fid]}")

    def referenced_objects(self) -> List[Tuple[int, int]]:
        """(RegionOffset, length) of every object the metadata points at."""
        refs = [(self.header.filesystem_offset, 24), (self.upcase_ro, 131072), (self.ftd_ro, 16 * self.ftd_len)]
        refs += [(e[0], e[1] * e[2]) for e in self.ftd]
        for r in self.records.values():
            if r.security_descriptor:
                refs.append((r.security_descriptor, 2 + len(self.security_descriptor(r))))
            if r.extended_attributes:
                refs.append((r.extended_attributes, r.ea_length))
            if r.reparse_data:
                refs.append((r.reparse_data, 2 + len(self.reparse_data(r))))
            if r.default_stream.length:
                refs.append((r.default_stream.data, r.default_stream.length))
            if r.stream_table:
                refs.append((r.stream_table, self.link_table(r.stream_table, 16).length))
                refs += [(s.data, s.length) for s in self.streams(r).values() if s.length]
            if r.links:
                refs.append((r.links, self.link_table(r.links, 4).length))
        return refs

    def _key(self, name: str) -> Tuple[int, ...]:
        raw = name.encode("utf-16-le", "surrogatepass")
        return upcase_key(struct.unpack(f"<{len(raw) // 2}H", raw), self.upcase)


def sort_key(name: str, upcase: bytes) -> Tuple[int, ...]:
    """The link-table order of a name: its UTF-16 code units through the upcase table."""
    raw = name.encode("utf-16-le", "surrogatepass")
    return upcase_key(struct.unpack(f"<{len(raw) // 2}H", raw), upcase)


# ---- building test input: valid blobs ------------------------------------------

def sid(authority: int, *subs: int) -> bytes:
    """A binary SID: revision 1, sub-authority count, 48-bit big-endian authority, u32 subs."""
    return struct.pack("<BB", 1, len(subs)) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def security_descriptor(owner_rid: int = 18, group_rid: Optional[int] = None) -> bytes:
    """A self-relative SECURITY_DESCRIPTOR with owner S-1-5-<rid> (optional group
    S-1-5-32-<rid>) and a NULL DACL."""
    owner = sid(5, owner_rid)
    group = sid(5, 32, group_rid) if group_rid is not None else b""
    control = 0x8000 | 0x0004  # SE_SELF_RELATIVE | SE_DACL_PRESENT (no DACL: NULL DACL)
    owner_off = 20
    group_off = 20 + len(owner) if group else 0
    return struct.pack("<BBHIIII", 1, 0, control, owner_off, group_off, 0, 0) + owner + group


def ea_blob(entries) -> bytes:
    """A FILE_FULL_EA_INFORMATION chain from (name: bytes, value: bytes[, flags]) items;
    each entry but the last padded to 4 bytes."""
    parts = []
    entries = list(entries)
    for i, e in enumerate(entries):
        name, value = e[0], e[1]
        flags = e[2] if len(e) > 2 else 0
        body = struct.pack("<BBH", flags, len(name), len(value)) + name + b"\0" + value
        size = 4 + len(body)
        last = i == len(entries) - 1
        padded = size if last else (size + 3) // 4 * 4
        parts.append(struct.pack("<I", 0 if last else padded) + body + bytes(padded - size))
    return b"".join(parts)


def symlink_reparse(target: str, print_name: Optional[str] = None, relative: bool = True) -> bytes:
    """A REPARSE_DATA_BUFFER for a symbolic link (tag 0xA000000C)."""
    sub = target.encode("utf-16-le", "surrogatepass")
    prn = (target if print_name is None else print_name).encode("utf-16-le", "surrogatepass")
    buf = sub + b"\0\0" + prn + b"\0\0"
    body = struct.pack("<HHHHI", 0, len(sub), len(sub) + 2, len(prn), 1 if relative else 0) + buf
    return struct.pack("<IHH", 0xA000000C, len(body), 0) + body


def parse_symlink_reparse(b: bytes) -> Tuple[int, str, str, int]:
    tag, dlen, _r = struct.unpack_from("<IHH", b)
    so, sl, po, pl, flags = struct.unpack_from("<HHHHI", b, 8)
    base = 20
    sub = b[base + so: base + so + sl].decode("utf-16-le", "surrogatepass")
    prn = b[base + po: base + po + pl].decode("utf-16-le", "surrogatepass")
    return tag, sub, prn, flags
