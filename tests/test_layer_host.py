"""create_from_directory (host tree → image) and extract (image → host tree, never outside DEST)."""

import os
import stat

import pytest

import cimfs
from cimfs import layer
from cimfs._sample import write_sample_layer
from test_layer_import import EPOCH_FT, snapshot


@pytest.fixture
def sample_cim(tmp_path):
    src = tmp_path / "s.tar"
    write_sample_layer(src)
    layer.import_tar(src, tmp_path / "img" / "s.cim")
    return tmp_path / "img" / "s.cim"


def test_create_from_directory(tmp_path):
    top = tmp_path / "tree"
    (top / "dir" / "sub").mkdir(parents=True)
    (top / "dir" / "a.txt").write_bytes(b"alpha")
    (top / "ro.txt").write_bytes(b"ro")
    os.chmod(top / "ro.txt", 0o444)
    os.link(top / "dir" / "a.txt", top / "hard.txt")
    os.symlink("dir/a.txt", top / "rel-link")
    os.symlink("dir", top / "dir-link")
    os.mkfifo(top / "fifo")
    os.utime(top / "dir" / "a.txt", ns=(1_600_000_000_123_456_700, 1_500_000_000_987_654_300))
    s = layer.create_from_directory(top, tmp_path / "o" / "t.cim")
    assert (s.files, s.links, s.symlinks) == (2, 1, 2)
    assert s.skipped == [str(top / "fifo")]
    with cimfs.open(tmp_path / "o" / "t.cim") as img:
        assert img.verify() == []
        a = img.stat("dir\\a.txt")
        assert a.attributes == 0x20
        assert a.last_write_time == EPOCH_FT + 15_000_000_009_876_543
        assert a.last_access_time == EPOCH_FT + 16_000_000_001_234_567
        assert img.read_bytes("dir\\a.txt") == b"alpha"
        assert img.stat("ro.txt").attributes == 0x21
        assert img.stat("hard.txt").file_id == a.file_id
        assert img.stat("dir\\sub").is_directory
        rl = layer.decode_reparse_point(img.reparse_data("rel-link"))
        assert rl.target == "dir\\a.txt" and rl.relative and not img.stat("rel-link").is_directory
        assert img.stat("dir-link").is_directory and img.stat("dir-link").is_reparse_point


def test_create_rejects_windows_illegal_names(tmp_path):
    top = tmp_path / "tree"
    top.mkdir()
    (top / "a:b").write_bytes(b"x")
    with pytest.raises(cimfs.CimError, match="a:b"):
        layer.create_from_directory(top, tmp_path / "o" / "t.cim")
    assert not (tmp_path / "o").exists()


def test_extract_then_create_round_trip(tmp_path, sample_cim):
    dest = tmp_path / "dest"
    s = layer.extract(sample_cim, dest)
    assert s.files == 12 and s.links == 1 and s.symlinks == 3
    assert s.skipped == ["Files\\Users\\Public\\Downloads\\setup.exe:Zone.Identifier"]
    k = dest / "Files" / "Windows" / "System32" / "kernel32.dll"
    with cimfs.open(sample_cim) as img:
        assert k.read_bytes() == img.read_bytes("Files\\Windows\\System32\\kernel32.dll")
        st = img.stat("Files\\Windows\\System32\\kernel32.dll")
        assert os.stat(k).st_mtime_ns == (st.last_write_time - EPOCH_FT) * 100
        d = img.stat("Files\\Windows\\System32")
        assert os.stat(dest / "Files" / "Windows" / "System32").st_mtime_ns == (d.last_write_time - EPOCH_FT) * 100
    assert os.path.samefile(dest / "Files/Windows/notepad.exe", dest / "Files/Windows/System32/notepad.exe")
    assert os.readlink(dest / "Files/Windows/System32/drivers/etc/hosts.lnk") == "hosts"
    assert not os.stat(dest / "Files/Windows/win.ini").st_mode & stat.S_IWUSR
    # only some paths
    d2 = tmp_path / "d2"
    layer.extract(sample_cim, d2, ["Files/Windows/System32/drivers"])
    assert sorted(os.listdir(d2 / "Files/Windows/System32")) == ["drivers"]
    with pytest.raises(cimfs.CimError, match="no such"):
        layer.extract(sample_cim, d2, ["Files/nope"])


def test_extract_does_not_follow_planted_symlinks(tmp_path, sample_cim):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "Files")  # a link where a directory of the image goes
    with pytest.raises(cimfs.CimError, match="symlink or file is in the way"):
        layer.extract(sample_cim, dest)
    assert os.listdir(outside) == []
    # a planted symlink where a file goes is refused, and with overwrite
    # replaced, never written through
    dest2 = tmp_path / "dest2"
    (dest2 / "Hives").mkdir(parents=True)
    victim = outside / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, dest2 / "Hives" / "Sam_Delta")
    with pytest.raises(cimfs.CimError, match="already exists"):
        layer.extract(sample_cim, dest2)
    assert victim.read_bytes() == b"keep"
    layer.extract(sample_cim, dest2, overwrite=True)
    assert victim.read_bytes() == b"keep"
    assert not os.path.islink(dest2 / "Hives" / "Sam_Delta")


def test_extract_image_symlinks_are_not_followed(tmp_path):
    """An image whose symlink points outside, then a file 'through' it: nothing lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    with cimfs.create(tmp_path, "evil.cim") as w:
        w.add_file("esc", cimfs.FileInfo(attributes=0x10 | 0x400,
                                         reparse_data=layer.encode_reparse_point("../outside")))
        w.add_file("esc\\pwn.txt", data=b"pwned")  # children under a directory reparse point
    dest = tmp_path / "dest"
    s = layer.extract(tmp_path / "evil.cim", dest)
    assert s.skipped == ["esc\\pwn.txt"]
    assert os.readlink(dest / "esc") == "../outside"
    assert os.listdir(outside) == []


def test_create_extract_create_same_tree(tmp_path, sample_cim):
    dest = tmp_path / "dest"
    layer.extract(sample_cim, dest)
    layer.create_from_directory(dest, tmp_path / "again" / "a.cim")
    with cimfs.open(tmp_path / "again" / "a.cim") as img:
        names = {p for p in snapshot(tmp_path / "again" / "a.cim") if not p.startswith("<")}
    orig = {p for p in snapshot(sample_cim) if not p.startswith("<")}
    assert names == orig
