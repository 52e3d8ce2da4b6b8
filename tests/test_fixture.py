"""The image Windows' cimfs.dll wrote (fixtures/windows-v3-hello): read through
the public API and compared with the raw bytes at the offsets the spec gives;
then written again from the same input and compared byte for byte."""

import os
import shutil
import struct

import pytest

import cimfs
from cimfs import FileAttributes, FileInfo

import _layout as L
from conftest import assert_sound

GUID = "2cf2ae9f-8556-4421-9f2f-d9ca60534d62"
REGION0 = f"region_{GUID}_0"
SD_AT, EA_AT, EA_LEN = 0x28, 0xD0, 1246
UPCASE_AT = 0x5B0


@pytest.fixture(scope="module")
def raw(fixture_dir):
    return {n: (fixture_dir / n).read_bytes() for n in os.listdir(fixture_dir)}


@pytest.fixture(scope="module")
def fixture_sd(raw):
    (n,) = struct.unpack_from("<H", raw[REGION0], SD_AT)
    return raw[REGION0][SD_AT + 2: SD_AT + 2 + n]


@pytest.fixture(scope="module")
def fixture_ea(raw):
    return raw[REGION0][EA_AT: EA_AT + EA_LEN]


@pytest.fixture(scope="module")
def hello_record(fixture_image):
    """hello.txt's file record, parsed by the independent struct reader."""
    lay = L.Layout(fixture_image)
    return lay.record("hello.txt")


def test_fixture_is_sound(fixture_image):
    with cimfs.open(fixture_image) as img:
        assert img.verify() == []
    L.Layout(fixture_image).check_all()


def test_fixture_listing_and_content(fixture_image):
    with cimfs.open(fixture_image) as img:
        assert img.version == (3, 0)
        assert img.listdir() == ["hello.txt"]
        assert img.listdir("") == img.listdir("\\")
        assert img.read_bytes("hello.txt") == b"Hello world!"
        assert img.read_bytes("HeLLo.TxT") == b"Hello world!"  # lookups are case-insensitive
        assert img.exists("hello.txt") and not img.exists("hello.txt2")
        with img.open("hello.txt") as f:
            f.seek(6)
            assert f.read(5) == b"world"
        info = img.info()
        assert info["region_sets"] == [(GUID, 2)]
        assert info["file_count"] == 2 and info["root_id"] == 1
        assert img.links("hello.txt") == ["hello.txt"]
        assert img.streams("hello.txt") == {}
        assert img.reparse_data("hello.txt") == b""


def test_fixture_stat_matches_raw_record(fixture_image, hello_record):
    rec = hello_record
    # The spec's record layout, read straight from the bytes: flags at 0, times at 8.
    assert struct.unpack_from("<H", rec.raw, 0)[0] == 0x8  # archive flag
    times = struct.unpack_from("<4Q", rec.raw, 8)
    assert all(t > 130_000_000_000_000_000 for t in times)  # real dates (2022), not zeros
    with cimfs.open(fixture_image) as img:
        st = img.stat("hello.txt")
    assert st.attributes == FileAttributes.ARCHIVE == 0x20
    assert (st.creation_time, st.last_write_time, st.change_time, st.last_access_time) == times
    assert st.size == 12 and not st.is_directory and st.is_file
    assert st.link_count == 1 and st.ea_length == EA_LEN and st.reparse_tag == 0
    assert st.parent_id == 1 and st.file_id == 2
    assert st.last_write_datetime.year == 2022


def test_fixture_sd_and_ea_equal_raw_bytes(fixture_image, fixture_sd, fixture_ea, hello_record):
    assert len(fixture_sd) == 160 and fixture_sd[:4] == bytes([1, 0, 0x04, 0xA0])
    assert hello_record.security_descriptor == SD_AT and hello_record.extended_attributes == EA_AT
    with cimfs.open(fixture_image) as img:
        assert img.security_descriptor("hello.txt") == fixture_sd
        ea = img.extended_attributes("hello.txt")
    assert ea == fixture_ea
    # one FILE_FULL_EA_INFORMATION entry: next 0, flags, name "$KERNEL.SEC.ENDPOINTDLP"
    nxt, flags, nlen, vlen = struct.unpack_from("<IBBH", ea)
    assert nxt == 0 and 8 + nlen + 1 + vlen == EA_LEN
    assert ea[8: 8 + nlen] == b"$KERNEL.SEC.ENDPOINTDLP" and ea[8 + nlen] == 0


def test_fixture_root(fixture_image):
    with cimfs.open(fixture_image) as img:
        st = img.stat("")
        assert st.is_directory and st.attributes & FileAttributes.DIRECTORY
        assert (st.creation_time, st.last_write_time, st.change_time, st.last_access_time) == (0, 0, 0, 0)
        assert img.security_descriptor("") == b""
        assert img.extended_attributes("") == b""
        assert img.links("") == [""]


def test_upcase_table_equals_windows(raw):
    table = cimfs._core.upcase_table()
    assert len(table) == 131072
    assert table == raw[REGION0][UPCASE_AT: UPCASE_AT + 131072]
    up = lambda c: struct.unpack_from("<H", table, 2 * c)[0]  # noqa: E731
    # the spec's examples of where Windows differs from str.upper()
    assert up(ord("a")) == ord("A") and up(0xB5) == 0xB5 and up(0x131) == 0x131
    assert up(0x17F) == 0x17F and up(0x1C5) == 0x1C5 and up(0x1F80) == 0x1F88


def _rewrite(tmp_path, fixture_image, fixture_sd, fixture_ea, hello_record):
    ct, wt, cht, at = hello_record.times
    info = FileInfo(attributes=FileAttributes.ARCHIVE, creation_time=ct, last_write_time=wt, change_time=cht,
                    last_access_time=at, security_descriptor=fixture_sd, extended_attributes=fixture_ea)
    with cimfs.create(tmp_path, "test.cim", region_set=GUID, format_version=3) as w:
        w.add_file("hello.txt", info, data=b"Hello world!")
    return tmp_path / "test.cim"


def test_writer_reproduces_windows_bytes(tmp_path, raw, fixture_image, fixture_sd, fixture_ea, hello_record):
    out = _rewrite(tmp_path, fixture_image, fixture_sd, fixture_ea, hello_record)
    assert_sound(out)
    assert sorted(os.listdir(tmp_path)) == sorted(raw)
    for name in (f"region_{GUID}_0", f"region_{GUID}_1", f"objectid_{GUID}_0", f"objectid_{GUID}_1"):
        mine = (tmp_path / name).read_bytes()
        assert len(mine) == len(raw[name]), name
        if mine != raw[name]:
            first = next(i for i, (a, b) in enumerate(zip(mine, raw[name])) if a != b)
            pytest.fail(f"{name} differs from Windows' first at byte {first:#x}")
    mine, theirs = out.read_bytes(), raw["test.cim"]
    assert len(mine) == len(theirs) == 72
    # Everything but the reserved fields Windows fills with stray values (spec section 2).
    assert mine[:24] == theirs[:24]
    assert mine[32:64] == theirs[32:64]
    assert mine[70:] == theirs[70:]
    assert mine[24:32] == bytes(8) and mine[64:70] == bytes(6)
    assert theirs[24:32] != bytes(8)  # the comparison above does skip something real


def test_fixture_copy_reads_the_same(tmp_path, fixture_dir):
    """The image is position-independent: a copy elsewhere reads the same."""
    dst = tmp_path / "copy"
    shutil.copytree(fixture_dir, dst)
    with cimfs.open(dst / "test.cim") as img:
        assert img.read_bytes("hello.txt") == b"Hello world!"
        assert img.verify() == []
