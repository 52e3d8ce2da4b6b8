"""Malformed layer tars: each gives a clear CimError naming the entry and leaves no image files."""

import base64
import io
import os
import tarfile

import pytest

import cimfs
from cimfs import layer
from cimfs._sample import write_sample_layer
from test_layer_import import TarBuilder


def run_bad(tmp_path, data, *, match, entry=None, record=None):
    src = tmp_path / "bad.tar"
    src.write_bytes(data)
    out = tmp_path / "out" / "sub"
    with pytest.raises(cimfs.CimError, match=match) as ei:
        layer.import_tar(src, out / "layer.cim")
    e = ei.value
    assert isinstance(e, layer.LayerError)
    assert str(src) in str(e)
    if entry is not None:
        assert e.entry == entry and f"entry '{entry}'" in str(e)
    if record is not None:
        assert e.record == record and record in str(e)
    # nothing left behind: not the image, not its regions, not the directories import created
    assert not (tmp_path / "out").exists()
    return e


def sample_bytes(tmp_path):
    p = tmp_path / "good.tar"
    write_sample_layer(p)
    return p.read_bytes()


def test_truncated_inside_data(tmp_path):
    data = sample_bytes(tmp_path)
    run_bad(tmp_path, data[: len(data) // 2 + 100], match="truncated")


def test_truncated_inside_header(tmp_path):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/a", b"x" * 600).bytes()
    # cut 100 bytes into the second header block of the file entry region
    off = b.index(b"Files/a") + 100
    run_bad(tmp_path, b[:off], match="truncated")


def test_missing_end_of_archive(tmp_path):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/a", b"x" * 512).bytes()
    stripped = b.rstrip(b"\0")
    stripped += b"\0" * (-len(stripped) % 512)
    run_bad(tmp_path, stripped, match="end-of-archive")


def test_not_a_tar(tmp_path):
    run_bad(tmp_path, b"hello, this is not a tar archive" * 40, match="checksum")


def test_empty_input(tmp_path):
    run_bad(tmp_path, b"", match="empty")


def test_corrupt_gzip(tmp_path):
    import gzip

    data = bytearray(gzip.compress(sample_bytes(tmp_path)))
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    run_bad(tmp_path, bytes(data), match="cim import")


@pytest.mark.parametrize("name", ["../evil.txt", "Files/../../evil.txt", "/etc/passwd", "C:/Windows/x",
                                  "Files\\..\\..\\x"])
def test_path_escaping(tmp_path, name):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add(name, b"x").bytes()
    run_bad(tmp_path, b, match="escape|absolute", entry=name)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_hard_link_target_escaping(tmp_path):
    b = TarBuilder().add("Files/a", b"x").add("Files/b", kind=tarfile.LNKTYPE, linkname="../../etc/passwd").bytes()
    run_bad(tmp_path, b, match="escape", entry="Files/b")


@pytest.mark.parametrize("kind,what", [(tarfile.FIFOTYPE, "FIFO"), (tarfile.CHRTYPE, "character device"),
                                       (b"Z", "unknown entry type")])
def test_unsupported_entry_types(tmp_path, kind, what):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/odd", kind=kind).bytes()
    run_bad(tmp_path, b, match=what, entry="Files/odd")


def test_stream_before_its_file(tmp_path):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/a.txt:Zone.Identifier", b"z") \
        .add("Files/a.txt", b"a").bytes()
    run_bad(tmp_path, b, match="before its file", entry="Files/a.txt:Zone.Identifier")


def test_link_to_missing_target(tmp_path):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE) \
        .add("Files/b", kind=tarfile.LNKTYPE, linkname="Files/missing").bytes()
    run_bad(tmp_path, b, match="Files/missing", entry="Files/b")


def test_names_differing_only_in_case(tmp_path):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/Readme.txt", b"1") \
        .add("Files/README.TXT", b"2").bytes()
    run_bad(tmp_path, b, match="case", entry="Files/README.TXT")


def test_sddl_record_is_refused_by_name(tmp_path):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE) \
        .add("Files/a", b"1", MSWINDOWS__sd="O:BAG:SYD:(A;;FA;;;BA)").bytes()
    run_bad(tmp_path, b, match="SDDL", entry="Files/a", record="MSWINDOWS.sd")


def test_bad_base64_sd(tmp_path):
    b = TarBuilder().add("Files/a", b"1", MSWINDOWS__rawsd="!!!notbase64").bytes()
    run_bad(tmp_path, b, match="base64", entry="Files/a", record="MSWINDOWS.rawsd")


def test_bad_fileattr(tmp_path):
    b = TarBuilder().add("Files/a", b"1", MSWINDOWS__fileattr="lots").bytes()
    run_bad(tmp_path, b, match="number", entry="Files/a", record="MSWINDOWS.fileattr")


def test_ea_name_too_long(tmp_path):
    b = TarBuilder().add("Files/a", b"1", **{"MSWINDOWS.xattr." + "N" * 300: base64.b64encode(b"v").decode()}).bytes()
    run_bad(tmp_path, b, match="254", entry="Files/a")


def test_file_over_directory(tmp_path):
    b = TarBuilder().add("Files/d/", kind=tarfile.DIRTYPE).add("Files/d", b"1").bytes()
    run_bad(tmp_path, b, match="directory", entry="Files/d")


def test_stdin_errors_name_stdin(tmp_path, monkeypatch):
    import sys

    class FakeStdin:
        buffer = io.BytesIO(b"garbage" * 100)

    monkeypatch.setattr(sys, "stdin", FakeStdin)
    with pytest.raises(cimfs.CimError, match="<stdin>"):
        layer.import_tar("-", tmp_path / "o" / "x.cim")
    assert not (tmp_path / "o").exists()


def test_failure_keeps_an_existing_directory_clean(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    b = TarBuilder().add("../x", b"1").bytes()
    (tmp_path / "bad.tar").write_bytes(b)
    with pytest.raises(cimfs.CimError):
        layer.import_tar(tmp_path / "bad.tar", tmp_path / "x.cim")
    assert sorted(os.listdir(tmp_path)) == ["bad.tar", "keep.txt"]
