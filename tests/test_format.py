"""Byte layouts of what the writer produces, read back with the independent
struct parser in tests/_layout.py (not with cimfs), against docs/cim-format.md."""

import hashlib
import os
import struct

import pytest

import cimfs
from cimfs import FileAttributes, FileInfo

import _layout as L
from conftest import assert_sound

GUID = "0123abcd-4567-89ef-0123-456789abcdef"
GUID_BYTES = bytes.fromhex("cdab2301 6745 ef89 0123456789abcdef".replace(" ", ""))

SMALL = b"small data object: 40 bytes long......!!"
LARGE = bytes(range(256)) * 40 + b"tail"  # 10244 bytes: page-aligned region


def _write(tmp_path, fmt=3, name="t.cim", **kw):
    with cimfs.create(tmp_path, name, region_set=GUID, format_version=fmt) as w:
        w.add_directory("dir")
        w.add_file("dir\\small.txt", data=SMALL)
        w.add_file("large.bin", data=LARGE)
        w.add_file("tiny", data=b"tiny")
        w.add_file("empty", data=b"")
    path = tmp_path / name
    assert_sound(path)
    return path


@pytest.fixture(params=[3, 2], ids=["v3", "v2"])
def image(request, tmp_path):
    return _write(tmp_path, fmt=request.param), request.param


def test_guid_text_and_bytes_agree_with_the_spec_example():
    raw = bytes.fromhex("9faef22c568521449f2fd9ca60534d62")
    assert L.guid_text(raw) == "2cf2ae9f-8556-4421-9f2f-d9ca60534d62"
    assert L.guid_bytes(GUID) == GUID_BYTES


def test_filesystem_header(image):
    path, fmt = image
    b = path.read_bytes()
    assert len(b) == 72
    assert b[0:8] == b"cimfile0"
    assert struct.unpack_from("<I", b, 8)[0] == 72
    assert b[12] == 0  # type: filesystem header
    assert struct.unpack_from("<II", b, 16) == (fmt, 0)
    assert b[24:32] == bytes(8)  # reserved: writers write 0
    assert b[32:48] == GUID_BYTES  # region set GUID in binary layout
    count = struct.unpack_from("<H", b, 48)[0]
    assert count == 3  # metadata, small data, page-aligned data
    regions = sorted(n for n in os.listdir(path.parent) if n.startswith("region_"))
    assert regions == [f"region_{GUID}_{i}" for i in range(count)]
    objectids = sorted(n for n in os.listdir(path.parent) if n.startswith("objectid_"))
    assert objectids == [f"objectid_{GUID}_{i}" for i in range(count)]
    assert b[50:56] == bytes(6)
    fso = struct.unpack_from("<Q", b, 56)[0]
    assert fso >> 48 == 0  # the filesystem object lives in region 0, the metadata region
    meta = (path.parent / f"region_{GUID}_0").read_bytes()
    # It is the last object of the metadata region (24 bytes, then at most padding).
    off = fso & ((1 << 48) - 1)
    assert off % 8 == 0 and len(meta) - 8 < off + 24 <= len(meta)
    assert b[64:70] == bytes(6)
    assert struct.unpack_from("<H", b, 70)[0] == 0  # parent count
    lay = L.Layout(path)
    assert lay.header.guid == GUID and lay.header.region_count == count


def test_region_headers(image):
    path, fmt = image
    types = {}
    for i in range(3):
        b = (path.parent / f"region_{GUID}_{i}").read_bytes()
        assert b[0:8] == b"cimfile0"
        assert struct.unpack_from("<IB", b, 8) == (40, 1)
        assert struct.unpack_from("<II", b, 16) == (fmt, 0)
        index, rtype = struct.unpack_from("<HB", b, 32)
        types[i] = rtype
        assert index == 0  # index within its type: one region of each type
        assert b[35:40] == bytes(5)
    assert types[0] == 0  # the metadata region comes first, as in Windows' images
    assert sorted(types.values()) == [0, 1, 2]
    lay = L.Layout(path)
    small = lay.region_headers.index(next(h for h in lay.region_headers if h.region_type == 2))
    page = lay.region_headers.index(next(h for h in lay.region_headers if h.region_type == 1))
    rec = lay.record("dir\\small.txt")
    assert L.region_offset(rec.default_stream.data)[0] == small
    rec = lay.record("large.bin")
    assert L.region_offset(rec.default_stream.data)[0] == page


def test_objectid_files(image):
    path, fmt = image
    lay = L.Layout(path)
    for i, oid in enumerate(lay.objectids):
        raw = (path.parent / f"objectid_{GUID}_{i}").read_bytes()
        assert raw[:8] == b"cimfile0" and struct.unpack_from("<IB", raw, 8) == (48, 2)
        assert struct.unpack_from("<II", raw, 16) == (fmt, 0)
        assert oid.index == i  # position in the set
        assert oid.region_type == lay.region_headers[i].region_type
        assert struct.unpack_from("<II", raw, 40) == (48, len(oid.entries))
        assert len(raw) == 48 + 40 * len(oid.entries)
        keys = [(ln, dg) for ln, dg, _ in oid.entries]
        assert keys == sorted(keys)
        region = lay.regions[i]
        for ln, dg, off in oid.entries:
            obj = region[off: off + ln]
            assert len(obj) == ln
            if ln <= 24:
                assert dg == obj + bytes(24 - ln)
            else:
                assert dg == hashlib.sha512(obj).digest()[:24]


def test_objectid_digest_of_short_and_long_data(tmp_path):
    path = _write(tmp_path)
    lay = L.Layout(path)
    small_idx = [h.region_type for h in lay.region_headers].index(2)
    entries = {ln: (dg, off) for ln, dg, off in lay.objectids[small_idx].entries}
    dg, off = entries[4]
    assert dg == b"tiny" + bytes(20)
    assert lay.regions[small_idx][off: off + 4] == b"tiny"
    dg, off = entries[len(SMALL)]
    assert dg == hashlib.sha512(SMALL).digest()[:24]
    assert lay.regions[small_idx][off: off + len(SMALL)] == SMALL
    page_idx = [h.region_type for h in lay.region_headers].index(1)
    [(ln, dg, off)] = lay.objectids[page_idx].entries
    assert (ln, dg) == (len(LARGE), hashlib.sha512(LARGE).digest()[:24])
    assert lay.regions[page_idx][off: off + ln] == LARGE


def test_alignment_and_padding(tmp_path):
    with cimfs.create(tmp_path, "t.cim", region_set=GUID) as w:
        # odd sizes everywhere, so that unaligned placement would show
        for i in range(1, 12):
            w.add_file(f"s{i}", data=bytes([i]) * (i * 7 + 1))
            w.add_file(f"p{i}", data=bytes([i]) * (4096 + i * 333))
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    for data, h, oid in zip(lay.regions, lay.region_headers, lay.objectids):
        align = 4096 if h.region_type == 1 else 8
        assert len(data) % align == 0
        offs = sorted(off for _, _, off in oid.entries)
        assert offs and all(o % align == 0 for o in offs)
        assert offs[0] == (40 if align == 8 else 4096)  # objects start right after the header
        # objects are packed: each starts at the aligned end of the previous one
        by_off = sorted((off, ln) for ln, _, off in oid.entries)
        for (o1, l1), (o2, _l2) in zip(by_off, by_off[1:]):
            assert o2 == (o1 + l1 + align - 1) // align * align
        last_off, last_len = by_off[-1]
        assert len(data) == (last_off + last_len + align - 1) // align * align


def test_file_record_sizes(image):
    path, fmt = image
    lay = L.Layout(path)
    size = 104 if fmt == 3 else 96
    assert [e[2] for e in lay.ftd] == [size]
    table_ro, count = lay.ftd[0][0], lay.ftd[0][1]
    assert count == 6  # root, dir, dir\small.txt, large.bin, tiny, empty
    reg, off = L.region_offset(table_ro)
    ids = {ln: o for ln, _, o in lay.objectids[reg].entries}
    assert ids.get(count * size) == off  # the file table is one object of count*size bytes
    for r in lay.records.values():
        assert len(r.raw) == size
        if fmt == 3:
            assert r.links != 0
        else:
            assert r.links is None


def test_two_file_tables_for_1500_files(tmp_path):
    with cimfs.create(tmp_path, "t.cim", region_set=GUID) as w:
        for i in range(1500):
            w.add_file(f"f{i:04d}", data=struct.pack("<I", i))
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    assert lay.ftd_len == 2
    assert [(e[1], e[2]) for e in lay.ftd] == [(1024, 104), (477, 104)]  # 1500 files + root
    assert len(lay.records) == 1501
    # FileID n is entry (n-1) % 1024 of table (n-1) // 1024
    for name in ("f0000", "f1022", "f1023", "f1499"):
        fid = lay.lookup(name)
        t, k = divmod(fid - 1, 1024)
        table = lay.read(lay.ftd[t][0], lay.ftd[t][1] * 104)
        rec = L.parse_record(table, k * 104, 104, fid)
        assert lay.content(rec) == struct.pack("<I", int(name[1:]))
    assert any(fid > 1024 for fid in (lay.lookup(f"f{i:04d}") for i in range(1500)))
    with cimfs.open(path) as img:
        assert img.read_bytes("f1499") == struct.pack("<I", 1499)
        assert len(img.listdir()) == 1500


def test_link_tables_sorted_through_the_upcase_table(tmp_path, fixture_dir):
    # Raw code-unit order and upcased order differ for these: 'a' (0x61 -> 0x41)
    # sorts before 'B' and '_' only after upcasing; U+00B5 and U+0131 map to
    # themselves in Windows' table (not to U+039C / 'I' as str.upper() would).
    names = ["_x", "B", "a", "ab", "A1", "\u00b5", "\u0131", "\u03bc1", "z", "\U0001F600", "\ue000"]
    with cimfs.create(tmp_path, "t.cim", region_set=GUID) as w:
        w.add_directory("d")
        for n in names:
            w.add_file("d\\" + n, data=n.encode("utf-8"))
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    fixture_upcase = (fixture_dir / "region_2cf2ae9f-8556-4421-9f2f-d9ca60534d62_0").read_bytes()[
        0x5B0: 0x5B0 + 131072]
    assert lay.upcase == fixture_upcase
    stored = [n for n, _ in lay.children(lay.lookup("d"))]
    expected = sorted(names, key=lambda n: L.sort_key(n, fixture_upcase))
    assert stored == expected
    assert stored.index("a") < stored.index("B") < stored.index("_x")
    # U+1F600 is D83D DE00 in UTF-16: code-unit order (the spec's working
    # assumption) puts it before U+E000; code-point order would not.
    assert stored.index("\U0001F600") < stored.index("\ue000")


def test_root_links_table(image):
    path, fmt = image
    lay = L.Layout(path)
    root = lay.records[lay.root_id]
    assert lay.root_id == 1 and root.parent_file_id == 1
    if fmt == 3:
        assert lay.links_of(root) == [(".", 1)]
        t = lay.link_table(root.links)
        raw = lay.read(root.links, t.length)
        assert raw == struct.pack("<IIII", 20, 1, 1, 16) + struct.pack("<H", 1) + ".".encode("utf-16-le")
        assert lay.links_of(lay.record("dir\\small.txt")) == [("small.txt", lay.lookup("dir"))]


def test_null_dacl_written_when_no_sd_is_given(tmp_path):
    with cimfs.create(tmp_path, "t.cim", region_set=GUID) as w:
        w.add_file("a", data=b"x")
        w.add_directory("d")
        w.add_file("b", FileInfo(security_descriptor=L.security_descriptor(18)), data=b"y")
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    null = bytes([0x01, 0x00, 0x04, 0x80]) + bytes(16)
    assert cimfs.null_dacl_security_descriptor() == null
    for name in ("a", "d"):
        rec = lay.record(name)
        assert lay.read(rec.security_descriptor, 22) == struct.pack("<H", 20) + null
    assert lay.security_descriptor(lay.record("b")) == L.security_descriptor(18)
    # one NULL-DACL object serves both files
    assert lay.record("a").security_descriptor == lay.record("d").security_descriptor
    assert lay.records[lay.root_id].security_descriptor == 0  # the root has none, as in Windows' images
    with cimfs.open(path) as img:
        assert img.security_descriptor("a") == null


def test_flags_and_times_in_the_record(tmp_path):
    info = FileInfo(attributes=FileAttributes.READONLY | FileAttributes.HIDDEN | FileAttributes.SYSTEM
                    | FileAttributes.ARCHIVE | FileAttributes.NOT_CONTENT_INDEXED,
                    creation_time=1, last_write_time=2, change_time=3, last_access_time=4)
    with cimfs.create(tmp_path, "t.cim", region_set=GUID) as w:
        w.add_file("f", info, data=b"data")
    path = tmp_path / "t.cim"
    assert_sound(path)
    rec = L.Layout(path).record("f")
    assert rec.flags == 0x1 | 0x2 | 0x4 | 0x8
    assert rec.times == (1, 2, 3, 4)
    assert struct.unpack_from("<4Q", rec.raw, 8) == (1, 2, 3, 4)
    assert rec.default_stream.type == 0 and rec.default_stream.length == 4


def test_format_2_image_is_readable(tmp_path):
    sd = L.security_descriptor(544)
    ea = L.ea_blob([(b"NAME", b"value")])
    with cimfs.create(tmp_path, "v2.cim", region_set=GUID, format_version=2) as w:
        w.add_directory("Files")
        w.add_file("Files\\a.txt", FileInfo(attributes=FileAttributes.ARCHIVE, last_write_time=77,
                                            security_descriptor=sd, extended_attributes=ea), data=b"v2 data")
        w.add_file("Files\\big", data=LARGE)
        w.add_link("Files\\a.txt", "Files\\b.txt")
    path = tmp_path / "v2.cim"
    assert_sound(path)
    lay = L.Layout(path)
    assert lay.version == (2, 0)
    assert all(len(r.raw) == 96 for r in lay.records.values())
    assert all(r.links is None for r in lay.records.values())
    with cimfs.open(path) as img:
        assert img.version == (2, 0)
        assert img.listdir("files") == ["a.txt", "b.txt", "big"]
        assert img.read_bytes("FILES\\A.TXT") == b"v2 data"
        assert img.read_bytes("Files\\b.txt") == b"v2 data"
        assert img.read_bytes("Files\\big") == LARGE
        st = img.stat("Files\\a.txt")
        assert st.attributes & FileAttributes.ARCHIVE and st.last_write_time == 77 and st.size == 7
        assert img.security_descriptor("Files\\a.txt") == sd
        assert img.extended_attributes("Files\\a.txt") == ea


@pytest.mark.parametrize("corrupt, problem", [
    (lambda f: f(f"objectid_{GUID}_0", 48 + 8, b"\xff"), "digest"),                  # first entry's digest
    (lambda f: f(f"objectid_{GUID}_0", 48, struct.pack("<Q", 1 << 40)), "sorted"),   # first entry's length
    (lambda f: f(f"region_{GUID}_0", 34, b"\x02"), "objectid 0: region type"),      # region type
    (lambda f: f("t.cim", 48, b"\x09"), "region"),                                   # region count
])
def test_layout_checker_detects_damage(tmp_path, corrupt, problem):
    """The independent checker behind assert_sound() is not vacuous."""
    path = _write(tmp_path)

    def patch(name, off, data):
        p = tmp_path / name
        os.chmod(p, 0o644)
        b = bytearray(p.read_bytes())
        b[off: off + len(data)] = data
        p.write_bytes(bytes(b))

    corrupt(patch)
    with pytest.raises((L.LayoutError, FileNotFoundError)) as e:
        L.Layout(path).check_all()
    if isinstance(e.value, L.LayoutError):
        assert problem in str(e.value)


def test_reserved_header_bytes_are_zero_whatever_ran_before(tmp_path, fixture_image):
    """Reserved fields of every header the writer produces are 0, also after other
    native calls (errors, reads) have left garbage on the stack: a region header
    built in an uninitialized buffer once carried stack bytes at 35..39."""
    for i in range(5):
        with cimfs.open(fixture_image) as img:
            assert img.verify() == []
            img.security_descriptor("hello.txt")
        (tmp_path / f"bad{i}").mkdir()
        with pytest.raises(cimfs.PathError):
            with cimfs.create(tmp_path / f"bad{i}", "x.cim") as w:
                w.add_file("no\\parent", data=b"x")
        d = tmp_path / f"ok{i}"
        d.mkdir()
        with cimfs.create(d, "t.cim") as w:
            w.add_file("s", data=b"small")
            w.add_file("p", data=b"p" * 5000)
        for n in sorted(os.listdir(d)):
            b = (d / n).read_bytes()
            if n.startswith("region_"):
                assert b[35:40] == bytes(5), (i, n, b[32:40])
            elif n.startswith("objectid_"):
                assert b[35:40] == bytes(5), (i, n, b[32:40])
            assert b[13:16] == bytes(3) and b[24:32] == bytes(8), (i, n)
