"""The native backend (cimfs.dll). Off Windows every native call must say that
it needs Windows; on Windows with CimFS the tests below cross-check the two
backends through cimfs.sys. Those run in the wheel workflow on Windows."""

import errno
import os
import sys

import pytest

import cimfs
from cimfs import FileAttributes, FileInfo, native

ON_WINDOWS = sys.platform == "win32"
CAPS = native.capabilities()
needs_cimfs = pytest.mark.skipif(not CAPS.supported, reason=f"cimfs.dll not usable here: {CAPS.reason}")
needs_block = pytest.mark.skipif(not CAPS.block, reason=f"block CIMs not supported here: {CAPS.reason}")


# ---- everywhere -------------------------------------------------------------------

def test_capabilities_shape():
    assert isinstance(CAPS.supported, bool)
    if not ON_WINDOWS:
        assert (CAPS.supported, CAPS.block, CAPS.merged, CAPS.verified) == (False, False, False, False)
        assert CAPS.reason == "not Windows"
        assert cimfs.default_backend() == "portable"
        assert not cimfs.is_supported()
        assert not cimfs.is_block_supported()
        assert not cimfs.is_merged_supported()
        assert not cimfs.is_verified_supported()


def test_auto_backend_is_portable_when_region_set_is_fixed(tmp_path):
    with cimfs.create(tmp_path, "a.cim", region_set="12345678-1234-4234-8234-123456789abc") as w:
        assert w.backend == "portable"


def test_unknown_backend(tmp_path):
    with pytest.raises(ValueError):
        cimfs.create(tmp_path, "a.cim", backend="fast")
    assert os.listdir(tmp_path) == []


off_windows = pytest.mark.skipif(CAPS.supported, reason="checks the errors raised where cimfs.dll is missing")

NATIVE_CALLS = {
    "mount": lambda p: cimfs.mount(p / "x.cim"),
    "unmount": lambda p: cimfs.unmount("\\\\?\\Volume{11111111-2222-4333-8444-555555555555}\\"),
    "create native": lambda p: cimfs.create(p, "n.cim", backend="native"),
    "create_block": lambda p: cimfs.create_block(p / "blk", "a.cim"),
    "merge_block": lambda p: cimfs.merge_block(
        cimfs.BlockImage(str(p / "m"), "m"), [cimfs.BlockImage(str(p / "a"), "a"), cimfs.BlockImage(str(p / "b"), "b")]
    ),
    "mount_merged": lambda p: cimfs.mount_merged(cimfs.BlockImage(str(p / "m"), "m"), [cimfs.BlockImage(str(p / "a"), "a")]),
    "mount_verified": lambda p: cimfs.mount_verified(cimfs.BlockImage(str(p / "v"), "v"), b"\0" * 32),
    "seal": lambda p: cimfs.seal(p / "blk"),
    "verification_info": lambda p: cimfs.verification_info(p / "blk"),
}


@off_windows
@pytest.mark.parametrize("call", sorted(NATIVE_CALLS))
def test_native_calls_say_they_need_windows(tmp_path, call):
    with pytest.raises(cimfs.UnsupportedError) as e:
        NATIVE_CALLS[call](tmp_path)
    err = e.value
    assert isinstance(err, cimfs.CimError) and isinstance(err, NotImplementedError) and isinstance(err, OSError)
    assert err.errno == errno.ENOTSUP
    assert "Windows" in str(err) and "build" in str(err)
    assert os.listdir(tmp_path) == []


def test_portable_tombstones_and_merge_links_are_native_only(tmp_path):
    with cimfs.create(tmp_path, "a.cim", backend="portable") as w:
        w.add_file("f", data=b"1")
        with pytest.raises(cimfs.UnsupportedError, match="native backend"):
            w.add_tombstone("f")
        with pytest.raises(cimfs.UnsupportedError, match="native backend"):
            w.add_merge_link("f", "g")


def test_mount_object_is_a_context_manager():
    calls = []

    class FakeCore:
        @staticmethod
        def dismount(v):
            calls.append(v)

    m = native.Mount("\\\\?\\Volume{11111111-2222-4333-8444-555555555555}\\", "x.cim")
    real = native._core
    native._core = FakeCore
    try:
        with m as vol:
            assert vol == m.volume
        m.unmount()  # idempotent
    finally:
        native._core = real
    assert calls == [m.volume]


# ---- Windows with cimfs.dll ------------------------------------------------------------

def _sample_tree(w):
    w.add_directory("Files", FileInfo(attributes=FileAttributes.DIRECTORY, last_write_time=132_000_000_000_000_000))
    w.add_file("Files\\hello.txt", FileInfo(attributes=FileAttributes.ARCHIVE), data=b"Hello world!")
    w.add_file("Files\\big.bin", data=bytes(range(256)) * 40_000)
    w.add_stream("Files\\hello.txt:Zone.Identifier", data=b"[ZoneTransfer]\r\nZoneId=3\r\n")
    w.add_link("Files\\hello.txt", "Files\\hello2.txt")


def _tree(img):
    out = {}
    for dirpath, dirs, files in img.walk():
        for name in files:
            p = dirpath + "\\" + name if dirpath else name
            st = img.stat(p)
            out[p] = (img.read_bytes(p), img.streams(p), st.attributes, st.link_count)
        for name in dirs:
            p = dirpath + "\\" + name if dirpath else name
            out[p] = ("dir", img.stat(p).last_write_time)
    return out


@needs_cimfs
def test_portable_image_mounts_and_reads_through_the_volume(tmp_path):
    with cimfs.create(tmp_path, "p.cim", backend="portable") as w:
        _sample_tree(w)
    with cimfs.mount(tmp_path / "p.cim") as volume:
        assert volume.startswith("\\\\?\\Volume{") and volume.endswith("\\")
        with open(volume + "Files\\hello.txt", "rb") as f:
            assert f.read() == b"Hello world!"
        with open(volume + "Files\\big.bin", "rb") as f:
            assert f.read() == bytes(range(256)) * 40_000
        with open(volume + "Files\\hello.txt:Zone.Identifier", "rb") as f:
            assert f.read() == b"[ZoneTransfer]\r\nZoneId=3\r\n"
        assert sorted(os.listdir(volume + "Files")) == ["big.bin", "hello.txt", "hello2.txt"]


@needs_cimfs
def test_native_image_reads_identically_through_the_portable_reader(tmp_path):
    with cimfs.create(tmp_path, "n.cim", backend="native") as w:
        _sample_tree(w)
    with cimfs.create(tmp_path, "p.cim", backend="portable") as w:
        _sample_tree(w)
    with cimfs.open(tmp_path / "n.cim") as n, cimfs.open(tmp_path / "p.cim") as p:
        assert n.verify() == []
        assert _tree(n) == _tree(p)


@needs_cimfs
def test_mount_with_fixed_volume_and_unmount_by_path(tmp_path):
    with cimfs.create(tmp_path, "p.cim", backend="portable") as w:
        _sample_tree(w)
    guid = "0badc0de-1234-4321-8888-123456789abc"
    m = cimfs.mount(tmp_path / "p.cim", volume=guid)
    try:
        assert guid in m.volume.lower()
    finally:
        cimfs.unmount(m.volume)


@needs_block
def test_block_image_round_trip(tmp_path):
    with cimfs.create_block(tmp_path / "layer.bcim", "layer.cim") as w:
        _sample_tree(w)
    with cimfs.mount(str(tmp_path / "layer.bcim") + "\\layer.cim", flags=cimfs.MountFlags.SINGLE_FILE) as volume:
        with open(volume + "Files\\hello.txt", "rb") as f:
            assert f.read() == b"Hello world!"


def test_cimfs_backend_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CIMFS_BACKEND", "bogus")
    with pytest.raises(ValueError, match="CIMFS_BACKEND"):
        cimfs.create(tmp_path, "a.cim")
    monkeypatch.setenv("CIMFS_BACKEND", "native")
    assert cimfs.default_backend() == "native"
    if not CAPS.supported:
        with pytest.raises(cimfs.UnsupportedError):
            cimfs.create(tmp_path, "a.cim")
    monkeypatch.setenv("CIMFS_BACKEND", "portable")
    with cimfs.create(tmp_path, "b.cim") as w:
        assert w.backend == "portable"


def test_create_in_missing_directory_says_so(tmp_path):
    with pytest.raises(cimfs.OpError) as e:
        cimfs.create(tmp_path / "nope", "a.cim")
    assert e.value.errno == errno.ENOENT
    assert "does not exist" in str(e.value) and "lock" not in str(e.value)
