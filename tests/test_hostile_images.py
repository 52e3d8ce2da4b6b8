"""Hand-made damage to real images: every kind gives a clear CimError naming the
image (CorruptImageError for damaged data), never a crash, a hang or a huge
allocation; a walk over a directory cycle terminates and verify() reports it.

Each case starts from a pristine copy of an image (one written by this package,
and the one Windows' cimfs.dll wrote), finds the structure to damage with the
small parser below (written from docs/cim-format.md, independent of the
engine), patches bytes and checks the outcome.
"""

from __future__ import annotations

import errno
import pathlib
import shutil
import struct

import pytest

import cimfs
from cimfs import CimError, CorruptImageError, FileInfo

MASK48 = (1 << 48) - 1
GUID = "3c1d5e7f-2a4b-4c6d-8e0f-1a2b3c4d5e6f"


# ---- a minimal independent parser --------------------------------------------------

class Layout:
    """Where things are in an image on disk (file paths and byte offsets)."""

    def __init__(self, header: pathlib.Path) -> None:
        self.header = header
        h = header.read_bytes()
        self.version = struct.unpack_from("<I", h, 16)[0]
        guid = __import__("uuid").UUID(bytes_le=h[32:48])
        count = struct.unpack_from("<H", h, 48)[0]
        self.regions = [header.parent / f"region_{guid}_{i}" for i in range(count)]
        self.objectids = [header.parent / f"objectid_{guid}_{i}" for i in range(count)]
        self.fs_ro = struct.unpack_from("<Q", h, 56)[0]
        fs = self.read(self.fs_ro, 24)
        self.upcase_ro, self.ftd_ro, self.ntables, self.root = struct.unpack("<QQII", fs)
        self.tables = [struct.unpack("<QHHI", self.read(self.ftd_ro + 16 * t, 16))[:3] for t in range(self.ntables)]

    def locate(self, ro: int):
        return self.regions[ro >> 48], ro & MASK48

    def read(self, ro: int, n: int) -> bytes:
        path, off = self.locate(ro)
        return path.read_bytes()[off:off + n]

    def patch(self, ro: int, data: bytes) -> None:
        path, off = self.locate(ro)
        b = bytearray(path.read_bytes())
        assert off + len(data) <= len(b)
        b[off:off + len(data)] = data
        path.write_bytes(bytes(b))

    def record_ro(self, fid: int) -> int:
        table_ro, count, entry = self.tables[(fid - 1) // 1024]
        assert (fid - 1) % 1024 < count
        return table_ro + ((fid - 1) % 1024) * entry

    def stream_of(self, fid: int):
        """(RegionOffset of the default Stream field, data ro, length, type)."""
        at = self.record_ro(fid) + 40
        data, lt = struct.unpack("<QQ", self.read(at, 16))
        return at, data, lt & MASK48, (lt >> 48) & 0xFF

    def link_table(self, ro: int):
        length, count = struct.unpack("<II", self.read(ro, 8))
        raw = self.read(ro, length)
        out = []
        for i in range(count):
            fid = struct.unpack_from("<I", raw, 8 + 4 * i)[0]
            noff = struct.unpack_from("<I", raw, 8 + 4 * count + 4 * i)[0]
            n = struct.unpack_from("<H", raw, noff)[0]
            out.append((raw[noff + 2:noff + 2 + 2 * n].decode("utf-16-le"), fid, i))
        return length, count, out

    def lookup(self, path: str) -> int:
        fid = self.root
        for comp in [c for c in path.split("\\") if c]:
            _, data, _, typ = self.stream_of(fid)
            assert typ == 1
            names = {n.upper(): f for n, f, _ in self.link_table(data)[2]}
            fid = names[comp.upper()]
        return fid


# ---- the images -------------------------------------------------------------------

def _package_image(d: pathlib.Path) -> pathlib.Path:
    with cimfs.create(d, "pkg.cim", region_set=GUID) as w:
        w.add_directory("dir")
        w.add_directory("dir\\sub")
        w.add_file("dir\\small.txt", data=b"small file")
        w.add_file("dir\\sub\\big.bin", data=bytes(range(256)) * 32)
        w.add_file("hello.txt", FileInfo(extended_attributes=b""), data=b"Hello world!")
        w.add_stream("hello.txt:ads", data=b"alternate")
    return d / "pkg.cim"


@pytest.fixture(params=["package", "windows"])
def image(request, tmp_path, fixture_dir) -> Layout:
    """A fresh, writable copy of an image; tests damage it."""
    d = tmp_path / "img"
    d.mkdir()
    if request.param == "package":
        header = _package_image(d)
    else:
        for f in fixture_dir.iterdir():
            shutil.copyfile(f, d / f.name)
        header = d / "test.cim"
    return Layout(header)


def some_file(lay: Layout) -> str:
    return "dir\\small.txt" if lay.header.name == "pkg.cim" else "hello.txt"


def patch_header(lay: Layout, offset: int, data: bytes) -> None:
    b = bytearray(lay.header.read_bytes())
    b[offset:offset + len(data)] = data
    lay.header.write_bytes(bytes(b))


def open_fails(lay: Layout, exc=CorruptImageError, match: str = "") -> CimError:
    with pytest.raises(exc) as ei:
        cimfs.open(lay.header)
    return named(ei.value, lay, match)


def named(e: CimError, lay: Layout, match: str = "") -> CimError:
    assert isinstance(e, CimError)
    assert e.cim == str(lay.header), e
    assert str(lay.header) in str(e)
    assert match.lower() in str(e).lower(), str(e)
    if isinstance(e, CorruptImageError):
        assert e.errno == errno.EIO
    return e


def exercise(lay: Layout) -> list:
    """Do everything a reader can; return the CimErrors raised (all must name the image)."""
    errors = []

    def attempt(f):
        try:
            return f()
        except CimError as e:
            errors.append(named(e, lay))
            return None

    img = attempt(lambda: cimfs.open(lay.header))
    if img is None:
        return errors
    with img:
        walked = attempt(lambda: list(img.walk())) or []
        for top, _dirs, files in walked:
            for name in files:
                p = f"{top}\\{name}" if top else name
                attempt(lambda: img.stat(p))
                attempt(lambda: img.read_bytes(p))
                attempt(lambda: img.extended_attributes(p))
                attempt(lambda: img.security_descriptor(p))
                attempt(lambda: img.reparse_data(p))
                for s in attempt(lambda: img.streams(p)) or {}:
                    attempt(lambda: img.read_bytes(f"{p}:{s}"))
        attempt(img.verify)
    return errors


# ---- the pristine images are sound (so every damage below is what trips the reader)

def test_pristine_copy_is_sound(image):
    with cimfs.open(image.header) as img:
        assert img.verify() == []
        f = some_file(image)
        fid = image.lookup(f)
        _, data, length, typ = image.stream_of(fid)
        assert typ == 0 and image.read(data, length) == img.read_bytes(f)
    assert exercise(image) == []


# ---- header ------------------------------------------------------------------------

def test_bad_magic(image):
    patch_header(image, 0, b"cimfilX0")
    open_fails(image, match="bad magic")


def test_unsupported_version(image):
    patch_header(image, 16, struct.pack("<II", 9, 9))
    open_fails(image, match="version 9.9")


def test_short_header(image):
    image.header.write_bytes(image.header.read_bytes()[:71])
    open_fails(image, match="shorter")


def test_region_count_65535(image):
    patch_header(image, 48, struct.pack("<H", 0xFFFF))
    e = open_fails(image, exc=CimError, match="missing")
    assert e.errno == errno.ENOENT


def test_parent_count_huge(image):
    patch_header(image, 70, struct.pack("<H", 0xFFFF))
    open_fails(image, match="parent region sets")


def test_filesystem_offset_out_of_range(image):
    patch_header(image, 56, struct.pack("<Q", (0 << 48) | (1 << 40)))
    open_fails(image, match="outside the region file")


def test_filesystem_offset_in_a_missing_region(image):
    patch_header(image, 56, struct.pack("<Q", (7 << 48) | 0x28))
    open_fails(image, match="region 7")


# ---- filesystem object, upcase table, file tables -------------------------------------

def test_upcase_table_offset_past_eof(image):
    size = image.regions[0].stat().st_size
    image.patch(image.fs_ro, struct.pack("<Q", size + 8))
    open_fails(image, match="outside the region file")


def test_upcase_table_overlapping_eof(image):
    size = image.regions[0].stat().st_size
    image.patch(image.fs_ro, struct.pack("<Q", size - 131072 + 8))
    open_fails(image, match="outside the region file")


def test_file_table_directory_length_huge(image):
    image.patch(image.fs_ro + 16, struct.pack("<I", 0xFFFFFFFF))
    open_fails(image, match="outside the region file")


def test_file_table_count_over_1024(image):
    image.patch(image.ftd_ro + 8, struct.pack("<H", 1025))
    open_fails(image, match="more than 1024")


def test_file_table_entry_size_zero(image):
    image.patch(image.ftd_ro + 10, struct.pack("<H", 0))
    open_fails(image, match="0-byte records")


def test_root_id_out_of_range(image):
    image.patch(image.fs_ro + 20, struct.pack("<I", 0xFFFFFFFF))
    open_fails(image, match="root file id")


# ---- link tables -----------------------------------------------------------------------

def root_table(lay: Layout) -> int:
    _, data, _, typ = lay.stream_of(lay.root)
    assert typ == 1
    return data


def listing_fails(lay: Layout, match: str) -> None:
    with cimfs.open(lay.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.listdir()
        named(ei.value, lay, match)
        problems = img.verify()
        assert any(match in p for p in problems), problems
    assert exercise(lay)  # the walk fails cleanly, too


def test_link_table_count_0xffffffff(image):
    image.patch(root_table(image) + 4, struct.pack("<I", 0xFFFFFFFF))
    listing_fails(image, "does not fit its length")


def test_link_table_length_0xffffffff(image):
    image.patch(root_table(image), struct.pack("<I", 0xFFFFFFFF))
    listing_fails(image, "link table length")


def test_link_table_length_past_eof(image):
    ro = root_table(image)
    size = image.regions[ro >> 48].stat().st_size
    # longer than the directory stream claims, and longer than the region file
    image.patch(ro, struct.pack("<I", size))
    listing_fails(image, "link table length")


def test_link_table_name_offset_past_table(image):
    ro = root_table(image)
    length, count, entries = image.link_table(ro)
    image.patch(ro + 8 + 4 * count, struct.pack("<I", length + 100))
    listing_fails(image, "outside the table")


def test_link_table_name_length_past_table(image):
    ro = root_table(image)
    length, count, entries = image.link_table(ro)
    noff = struct.unpack("<I", image.read(ro + 8 + 4 * count, 4))[0]
    image.patch(ro + noff, struct.pack("<H", 0xFFFF))
    listing_fails(image, "runs past the table")


def test_directory_cycle(image):
    """A directory listing the root again: walk terminates, verify reports the cycle."""
    ro = root_table(image)
    if image.header.name == "pkg.cim":
        d = image.lookup("dir\\sub")
    else:
        # the fixture has no subdirectory: turn the root's only entry into the root
        d = image.root
    if d != image.root:
        # sub's table is empty (length 0): point the directory at the root's own table
        at, _, _, _ = image.stream_of(d)
        _, rdata, rlen, _ = image.stream_of(image.root)
        image.patch(at, struct.pack("<QQ", rdata, rlen | (1 << 48)))
    else:
        image.patch(ro + 8, struct.pack("<I", image.root))  # entry 0 -> the root itself
    with cimfs.open(image.header) as img:
        walked = list(img.walk())
        assert 1 <= len(walked) <= 8
        problems = img.verify()
        assert any("reached twice" in p for p in problems), problems
    exercise(image)


# ---- streams ----------------------------------------------------------------------------

def test_stream_length_2_47(image):
    f = some_file(image)
    fid = image.lookup(f)
    at, data, _, _ = image.stream_of(fid)
    image.patch(at + 8, struct.pack("<Q", (1 << 47)))
    with cimfs.open(image.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.read_bytes(f)
        named(ei.value, image, "outside the region file")
        with pytest.raises(CorruptImageError):
            img.open(f).read(10)
        assert any("outside the region file" in p for p in img.verify())


def test_stream_data_offset_in_missing_region(image):
    f = some_file(image)
    at, data, length, _ = image.stream_of(image.lookup(f))
    image.patch(at, struct.pack("<Q", (40 << 48) | (data & MASK48)))
    with cimfs.open(image.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.read_bytes(f)
        named(ei.value, image, "region 40")
        assert img.verify()


def test_unknown_stream_type(image):
    f = some_file(image)
    at, data, length, _ = image.stream_of(image.lookup(f))
    image.patch(at + 8, struct.pack("<Q", length | (7 << 48)))
    with cimfs.open(image.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.read_bytes(f)
        named(ei.value, image, "unknown type")


def _make_pe(image: Layout, mappings, data_length=None, image_length=None):
    """Turn the file's default stream into a PE image whose data is the file's own
    bytes; the PeImage object goes at the end of the metadata region."""
    f = some_file(image)
    at, data, length, _ = image.stream_of(image.lookup(f))
    meta = image.regions[0]
    b = bytearray(meta.read_bytes())
    b += b"\0" * (-len(b) % 8)
    pe_off = len(b)
    b += struct.pack("<QQIHH", data, length if data_length is None else data_length,
                     length if image_length is None else image_length, len(mappings), 0)
    for fo, delta in mappings:
        b += struct.pack("<II", fo, delta)
    meta.write_bytes(bytes(b))
    image.patch(at, struct.pack("<QQ", pe_off, (2 << 48) | (24 + 8 * len(mappings))))
    return f


def test_pe_image_sound_mapping_reads_back(image):
    f = some_file(image)
    with cimfs.open(image.header) as img:
        expect = img.read_bytes(f)
    _make_pe(image, [(0, 0)])
    with cimfs.open(image.header) as img:
        assert img.stat(f).size == len(expect)
        assert img.read_bytes(f) == expect


@pytest.mark.parametrize("mappings,what", [
    ([(0, 0x7FFFFFFF)], "delta far past the image"),
    ([(0, 0), (4, 0xFFFFFFF0)], "second mapping past the image"),
    ([(0, 0xFFFFFFFF)], "delta at u32 max"),
])
def test_pe_image_mappings_out_of_range(image, mappings, what):
    f = _make_pe(image, mappings)
    with cimfs.open(image.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.read_bytes(f)
        named(ei.value, image, "PE image")
        assert any("PE image" in p for p in img.verify()), what


def test_pe_image_mapping_count_past_region(image):
    f = _make_pe(image, [(0, 0)])
    at, pe, _, _ = image.stream_of(image.lookup(f))
    image.patch(pe + 20, struct.pack("<H", 0xFFFF))
    with cimfs.open(image.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.read_bytes(f)
        named(ei.value, image, "outside the region file")
        assert img.verify()


def test_pe_image_data_length_huge(image):
    """A PE file length far beyond its stored image must not make the reader (or the
    Python layer allocating a result buffer) try to produce 2^60 bytes."""
    f = _make_pe(image, [(0, 0)], data_length=1 << 60)
    with cimfs.open(image.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.read_bytes(f)
        named(ei.value, image)
        assert img.verify()


# ---- region files ------------------------------------------------------------------------

def test_truncated_metadata_region(image):
    meta = image.regions[0]
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])
    open_fails(image, match="outside the region file")


def test_region_file_without_header(image):
    image.regions[0].write_bytes(b"cimfile0")
    open_fails(image, match="no region header")


def test_truncated_data_region(image):
    f = some_file(image)
    _, data, length, _ = image.stream_of(image.lookup(f))
    region = image.regions[data >> 48]
    assert region != image.regions[0]
    region.write_bytes(region.read_bytes()[: (data & MASK48) + length // 2])
    with cimfs.open(image.header) as img:
        with pytest.raises(CorruptImageError) as ei:
            img.read_bytes(f)
        named(ei.value, image, "outside the region file")
        assert any("outside the region file" in p for p in img.verify())


def test_missing_region_file(image):
    image.regions[-1].unlink()
    e = open_fails(image, exc=CimError, match="missing")
    assert e.errno == errno.ENOENT
    assert str(image.regions[-1]) in str(e)


def test_missing_objectid_file_is_reported_by_verify(image):
    image.objectids[0].unlink()
    with cimfs.open(image.header) as img:
        assert img.read_bytes(some_file(image))  # not needed for reading
        assert any("missing objectid file" in p for p in img.verify())


def test_sparse_pe_stream_of_2_47_bytes_verifies_quickly(image):
    """A sparse PE-image stream has no stored bytes: verify() must not read 2^47
    zeros (it did, 4 KiB at a time; found by fuzz_reader)."""
    f = _make_pe(image, [(0, 0)])
    at, pe, _, _ = image.stream_of(image.lookup(f))
    image.patch(at + 8, struct.pack("<Q", (1 << 47) | (2 << 48) | (1 << 56)))
    with cimfs.open(image.header) as img:
        assert img.stat(f).size == 1 << 47
        with img.open(f) as fh:
            assert fh.read(16) == bytes(16)
        img.verify()  # returns (the test would time out otherwise)


def test_file_table_directory_of_empty_tables(image):
    """2000 tables, all but the first empty: verify() reports each short table once,
    not each of the 2 million ids that do not exist."""
    ftd = image.regions[0].stat().st_size
    ftd += -ftd % 8
    table = struct.unpack("<QHHI", image.read(image.ftd_ro, 16))
    entries = struct.pack("<QHHI", *table) + struct.pack("<QHHI", table[0], 0, table[2], 0) * 1999
    meta = image.regions[0]
    meta.write_bytes(meta.read_bytes() + bytes(ftd - meta.stat().st_size) + entries)
    image.patch(image.fs_ro + 8, struct.pack("<QI", ftd, 2000))
    with cimfs.open(image.header) as img:
        assert img.listdir()
        problems = img.verify()
        assert 1999 <= len(problems) <= 2100
        assert sum("is not the last" in p for p in problems) == 1999


def test_overlapping_file_tables(image):
    table = struct.unpack("<QHHI", image.read(image.ftd_ro, 16))
    meta = image.regions[0]
    ftd = meta.stat().st_size
    ftd += -ftd % 8
    meta.write_bytes(meta.read_bytes() + bytes(ftd - meta.stat().st_size) + struct.pack("<QHHI", *table) * 2)
    image.patch(image.fs_ro + 8, struct.pack("<QI", ftd, 2))
    open_fails(image, match="file tables overlap")


def test_stream_without_data_but_with_a_length_is_corrupt(tmp_path):
    """A non-sparse stream of length > 0 whose data offset is 0 is damage, not zeros."""
    import struct

    import cimfs

    with cimfs.create(tmp_path, "z.cim") as w:
        w.add_file("f", data=b"0123456789" * 100)
    img = cimfs.open(tmp_path / "z.cim")
    fid = img._core.lookup("f")
    rec = img._core.stat(fid)
    assert rec[3] == 1000
    img.close()
    # find the file record by its stream length (1000) next to its data RegionOffset, zero the offset
    region0 = sorted(tmp_path.glob("region_*_0"))[0]
    raw = bytearray(region0.read_bytes())
    needle = struct.pack("<Q", 1000)  # length_and_type of a data stream of 1000 bytes
    i = raw.find(needle)
    while i >= 0 and struct.unpack_from("<Q", raw, i - 8)[0] == 0:
        i = raw.find(needle, i + 1)
    assert i > 8
    struct.pack_into("<Q", raw, i - 8, 0)
    region0.write_bytes(bytes(raw))
    with cimfs.open(tmp_path / "z.cim") as img2:
        with pytest.raises(CorruptImageError):
            img2.read_bytes("f")
