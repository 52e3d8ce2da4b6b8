"""Writer errors: the right exception class and errno, a message of the form
``cim <op> <image>: <path>: <reason>``, and no files left behind when the
writer is used as a context manager. Then the semantics of remove / re-add."""

import errno
import os
import struct

import pytest

import cimfs
from cimfs import FileAttributes as A
from cimfs import FileInfo

import _layout as L
from conftest import assert_sound


@pytest.fixture
def outdir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "unrelated.txt").write_bytes(b"keep me")  # the writer must not touch other files
    return d


def fails(outdir, body, exc=cimfs.PathError, err=None):
    """Run body(writer) in a ``with`` block; it must raise ``exc`` (errno ``err``)
    and leave the directory exactly as it was. Returns the exception."""
    before = sorted(os.listdir(outdir))
    with pytest.raises(exc) as e:
        with cimfs.create(outdir, "t.cim") as w:
            body(w)
    assert sorted(os.listdir(outdir)) == before
    if err is not None:
        assert e.value.errno == err
    return e.value


def assert_message(e, op, outdir, path):
    assert e.op == op
    assert e.cim == os.path.join(str(outdir), "t.cim")
    assert e.path == path
    assert e.reason and e.reason in str(e)
    assert str(e) == f"cim {op} {e.cim}: {path}: {e.reason}"


def test_parent_missing(outdir):
    e = fails(outdir, lambda w: w.add_file("no\\such\\file", data=b"x"), err=errno.ENOENT)
    assert_message(e, "add", outdir, "no\\such\\file")
    assert "'no'" in e.reason


def test_parent_is_a_file(outdir):
    def body(w):
        w.add_file("f", data=b"x")
        w.add_file("f\\g", data=b"y")
    e = fails(outdir, body, err=errno.ENOTDIR)
    assert_message(e, "add", outdir, "f\\g")


def test_name_too_long(outdir):
    name = "n" * 256
    e = fails(outdir, lambda w: w.add_file(name, data=b"x"), err=errno.ENAMETOOLONG)
    assert_message(e, "add", outdir, name)
    assert "255" in e.reason
    # 255 units is fine, also when they are 127 surrogate pairs and one more unit
    with cimfs.create(outdir, "ok.cim") as w:
        w.add_file("\U0001F600" * 127 + "n", data=b"x")
    assert_sound(outdir / "ok.cim")


def test_astral_name_over_255_units(outdir):
    name = "\U0001F600" * 128  # 128 characters but 256 UTF-16 code units
    fails(outdir, lambda w: w.add_directory(name), err=errno.ENAMETOOLONG)


def test_path_too_long(outdir):
    parts = ["d" * 200] * 164  # 164 * 201 - 1 = 32963 units > 32767
    path = "\\".join(parts)

    def body(w):
        p = ""
        for part in parts[:-1]:
            p = p + "\\" + part if p else part
            w.add_directory(p)
        w.add_file(path, data=b"x")
    e = fails(outdir, body, err=errno.ENAMETOOLONG)
    assert "32767" in e.reason


@pytest.mark.parametrize("bad", ["a\\..\\b", "..", ".\\x\\.", "a\\\\b", "a:b", "a*b", "x\x01"])
def test_bad_components(outdir, bad):
    def body(w):
        w.add_directory("a")
        w.add_file(bad, data=b"x")
    e = fails(outdir, body, err=errno.EINVAL)
    assert e.op == "add" and e.path == bad


def test_write_past_declared_size(outdir):
    def body(w):
        w.add_file("f", size=3)
        w.write(b"ab")
        w.write(b"cd")
    e = fails(outdir, body, err=errno.EINVAL)
    assert_message(e, "write", outdir, "f")
    assert "past the declared size of 3" in e.reason


def test_data_and_size_disagree(outdir):
    with pytest.raises(ValueError):
        with cimfs.create(outdir, "t.cim") as w:
            w.add_file("f", size=5, data=b"1234")
    assert sorted(os.listdir(outdir)) == ["unrelated.txt"]


def test_close_short_at_commit(outdir):
    def body(w):
        w.add_directory("d")
        w.add_file("d\\short.bin", size=10)
        w.write(b"abc")
    e = fails(outdir, body, err=errno.EINVAL)
    assert_message(e, "write", outdir, "d\\short.bin")
    assert "3 of its declared 10" in e.reason


def test_close_short_at_next_operation(outdir):
    def body(w):
        w.add_file("short.bin", size=5000)
        w.write(b"x" * 4999)
        w.add_file("next", data=b"")
    e = fails(outdir, body, err=errno.EINVAL)
    assert e.path == "short.bin" and "4999 of its declared 5000" in e.reason


def test_short_source(outdir):
    import io
    e = fails(outdir, lambda w: w.add_file("s", size=100, source=io.BytesIO(b"only 13 bytes")), err=errno.EINVAL)
    assert e.path == "s" and "13 of 100" in e.reason


def test_short_stream_is_dropped_but_image_stays_usable(outdir):
    """A short stream fails; caught, the writer goes on and the file is absent."""
    with cimfs.create(outdir, "t.cim") as w:
        w.add_file("keep", data=b"kept")
        w.add_file("short", size=8)
        w.write(b"1234")
        with pytest.raises(cimfs.PathError) as e:
            w.close_stream()
        assert e.value.path == "short"
        w.add_file("after", data=b"after")
    assert_sound(outdir / "t.cim")
    with cimfs.open(outdir / "t.cim") as img:
        assert img.listdir() == ["after", "keep"]


def test_image_already_exists(outdir):
    with cimfs.create(outdir, "t.cim") as w:
        w.add_file("a", data=b"original")
    before = {n: (outdir / n).read_bytes() for n in os.listdir(outdir)}
    with pytest.raises(cimfs.CimError) as e:
        with cimfs.create(outdir, "t.cim") as w:
            w.add_file("a", data=b"replacement")
    assert e.value.errno == errno.EEXIST
    assert e.value.cim == str(outdir / "t.cim") and str(outdir / "t.cim") in str(e.value)
    assert {n: (outdir / n).read_bytes() for n in os.listdir(outdir)} == before
    with cimfs.open(outdir / "t.cim") as img:
        assert img.read_bytes("a") == b"original"


def test_missing_output_directory(tmp_path):
    with pytest.raises(cimfs.CimError) as e:
        cimfs.create(tmp_path / "nope", "t.cim")
    assert e.value.errno == errno.ENOENT
    assert "nope" in str(e.value)
    assert os.listdir(tmp_path) == []


BAD_SDS = {
    "empty": b"",
    "short": b"\x01\x00\x04\x80",
    "revision 2": bytes([2, 0, 4, 0x80]) + bytes(16),
    "absolute": bytes([1, 0, 4, 0x00]) + bytes(16),
    "offset outside": struct.pack("<BBHIIII", 1, 0, 0x8004, 400, 0, 0, 0),
}


@pytest.mark.parametrize("sd", list(BAD_SDS.values()), ids=list(BAD_SDS))
def test_bad_security_descriptor(outdir, sd):
    e = fails(outdir, lambda w: w.add_file("f", FileInfo(security_descriptor=sd), data=b"x"), err=errno.EINVAL)
    assert_message(e, "add", outdir, "f")
    assert "security descriptor" in e.reason


GOOD_EA = L.ea_blob([(b"ONE", b"1"), (b"TWO", b"22")])
BAD_EAS = {
    "truncated": GOOD_EA[:-3],
    "bad next offset": struct.pack("<I", 6) + GOOD_EA[4:],
    "empty name": struct.pack("<IBBH", 0, 0, 0, 1) + b"\0" + b"v",
    "name not NUL-terminated": struct.pack("<IBBH", 0, 0, 3, 1) + b"ABCv" + b"v",
    "trailing garbage": L.ea_blob([(b"A", b"b")]) + b"garbage!",
    "next past end": struct.pack("<I", 64) + GOOD_EA[4:],
    "too large": L.ea_blob([(b"A", b"v" * 65000), (b"B", b"v" * 1000)]),
}


@pytest.mark.parametrize("ea", list(BAD_EAS.values()), ids=list(BAD_EAS))
def test_malformed_extended_attributes(outdir, ea):
    e = fails(outdir, lambda w: w.add_file("f", FileInfo(extended_attributes=ea), data=b"x"), err=errno.EINVAL)
    assert_message(e, "add", outdir, "f")
    assert "EA" in e.reason


GOOD_REPARSE = L.symlink_reparse("target")
BAD_REPARSE = {
    "short": b"\x0c\x00\x00\xa0",
    "length mismatch": GOOD_REPARSE[:4] + struct.pack("<H", 3) + GOOD_REPARSE[6:],
    "truncated": GOOD_REPARSE[:-1],
    "third-party tag without GUID": struct.pack("<IHH", 0x00000001, 0, 0) + b"1234",
}


@pytest.mark.parametrize("rp", list(BAD_REPARSE.values()), ids=list(BAD_REPARSE))
def test_malformed_reparse_data(outdir, rp):
    e = fails(outdir, lambda w: w.add_file("f", FileInfo(reparse_data=rp)), err=errno.EINVAL)
    assert_message(e, "add", outdir, "f")
    assert "reparse" in e.reason


def test_valid_blobs_are_accepted(outdir):
    """The bad-blob cases above fail for their flaw, not for the shape of the test."""
    with cimfs.create(outdir, "t.cim") as w:
        w.add_file("f", FileInfo(security_descriptor=L.security_descriptor(18, 544), extended_attributes=GOOD_EA,
                                 reparse_data=GOOD_REPARSE))
    assert_sound(outdir / "t.cim")
    with cimfs.open(outdir / "t.cim") as img:
        assert img.extended_attributes("f") == GOOD_EA
        assert img.reparse_data("f") == GOOD_REPARSE
        assert L.parse_symlink_reparse(img.reparse_data("f"))[:2] == (0xA000000C, "target")


def test_hard_link_to_missing_target(outdir):
    e = fails(outdir, lambda w: w.add_link("missing", "new"), exc=cimfs.LinkError, err=errno.ENOENT)
    assert e.old == "missing" and e.new == "new"
    assert e.op == "link"
    assert str(e) == f"cim link {e.cim}: new -> missing: {e.reason}"


def test_hard_link_to_directory(outdir):
    def body(w):
        w.add_directory("d")
        w.add_link("d", "d2")
    e = fails(outdir, body, exc=cimfs.LinkError, err=errno.EISDIR)
    assert e.old == "d" and e.new == "d2"


def test_hard_link_into_missing_directory(outdir):
    def body(w):
        w.add_file("f", data=b"x")
        w.add_link("f", "nodir\\g")
    e = fails(outdir, body, exc=cimfs.LinkError, err=errno.ENOENT)
    assert e.new == "nodir\\g"


def test_remove_missing_path(outdir):
    e = fails(outdir, lambda w: w.remove("ghost"), err=errno.ENOENT)
    assert_message(e, "remove", outdir, "ghost")


def test_remove_root(outdir):
    fails(outdir, lambda w: w.remove(""), err=errno.EINVAL)


def test_file_over_directory_and_directory_over_file(outdir):
    def file_over_dir(w):
        w.add_directory("d")
        w.add_file("d", data=b"x")
    fails(outdir, file_over_dir, err=errno.EISDIR)

    def dir_over_file(w):
        w.add_file("f", data=b"x")
        w.add_directory("f")
    fails(outdir, dir_over_file, err=errno.EEXIST)


def test_directory_with_size(outdir):
    fails(outdir, lambda w: w.add_file("d", FileInfo(attributes=A.DIRECTORY), size=3), err=errno.EINVAL)


def test_user_exception_inside_with(outdir):
    class Boom(Exception):
        pass

    def body(w):
        w.add_file("a", data=b"x" * 100_000)  # large data already in a region file
        w.add_file("b", size=10)
        w.write(b"12345")
        raise Boom("user code failed")
    e = fails(outdir, body, exc=Boom)
    assert str(e) == "user code failed"


def test_write_without_open_stream_and_after_commit(outdir):
    w = cimfs.create(outdir, "t.cim")
    with pytest.raises(cimfs.CimError):
        w.write(b"x")
    w.add_file("a", data=b"x")
    w.commit()
    w.close()
    with pytest.raises(cimfs.CimError) as e:
        w.add_file("b", data=b"y")
    assert "committed" in str(e.value) or "closed" in str(e.value)
    assert_sound(outdir / "t.cim")


def test_close_without_commit_leaves_nothing(outdir):
    before = sorted(os.listdir(outdir))
    w = cimfs.create(outdir, "t.cim")
    w.add_file("a", data=b"x" * 50_000)
    w.add_file("b", data=b"small")
    assert sorted(os.listdir(outdir)) != before  # temporaries exist while writing...
    w.close()
    assert sorted(os.listdir(outdir)) == before  # ...and are gone


# ---- removal and re-adding ------------------------------------------------------------

def _build(outdir, body):
    with cimfs.create(outdir, "t.cim") as w:
        body(w)
    path = outdir / "t.cim"
    assert_sound(path)
    return cimfs.open(path)


def test_removing_a_directory_removes_its_subtree(outdir):
    def body(w):
        w.add_directory("d")
        w.add_directory("d\\e")
        w.add_file("d\\e\\f", data=b"f")
        w.add_file("d\\g", data=b"g" * 5000)
        w.add_file("keep", data=b"k")
        w.remove("d")
        w.add_directory("D")  # a new directory of the same name starts empty
    with _build(outdir, body) as img:
        assert img.listdir() == ["D", "keep"]
        assert img.listdir("d") == []
        assert not img.exists("d\\e\\f") and not img.exists("d\\g")
        assert img.info()["file_count"] == 3  # root, D, keep


def test_adding_an_existing_directory_updates_metadata_and_keeps_children(outdir):
    sd = L.security_descriptor(99)

    def body(w):
        w.add_directory("d", FileInfo(last_write_time=1))
        w.add_file("d\\child", data=b"c")
        w.add_directory("d", FileInfo(attributes=A.HIDDEN, last_write_time=2, security_descriptor=sd))
        w.add_directory("", FileInfo(last_write_time=3))  # the root too
    with _build(outdir, body) as img:
        st = img.stat("d")
        assert st.last_write_time == 2 and st.attributes == A.HIDDEN | A.DIRECTORY
        assert img.security_descriptor("d") == sd
        assert img.listdir("d") == ["child"]
        assert img.stat("").last_write_time == 3


def test_adding_an_existing_file_replaces_it(outdir):
    def body(w):
        w.add_file("f", FileInfo(attributes=A.READONLY), data=b"old" * 3000)
        w.add_stream("f:ads", data=b"old stream")
        w.add_file("f", FileInfo(attributes=A.ARCHIVE), data=b"new")
    with _build(outdir, body) as img:
        assert img.read_bytes("f") == b"new"
        st = img.stat("f")
        assert st.attributes == A.ARCHIVE and st.link_count == 1 and st.size == 3
        assert img.streams("f") == {}


def test_hard_links_survive_removal_of_one_name(outdir):
    def body(w):
        w.add_directory("d")
        w.add_file("d\\f", data=b"shared")
        w.add_link("d\\f", "g")
        w.add_link("d\\f", "h")
        w.remove("h")
        w.remove("d")  # takes d\f away, but the file still has the name g
    with _build(outdir, body) as img:
        assert img.listdir() == ["g"]
        assert img.read_bytes("g") == b"shared"
        assert img.stat("g").link_count == 1
        assert img.links("g") == ["g"]
        assert img.stat("g").parent_id == img.stat("").file_id


def test_link_replaces_a_file(outdir):
    def body(w):
        w.add_file("a", data=b"a")
        w.add_file("b", data=b"b")
        w.add_link("a", "b")
    with _build(outdir, body) as img:
        assert img.read_bytes("b") == b"a"
        assert img.stat("a").file_id == img.stat("b").file_id
        assert sorted(img.links("a")) == ["a", "b"]
