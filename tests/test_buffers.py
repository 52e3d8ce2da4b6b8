"""Buffers in and out: what Writer.write accepts, that it releases the GIL,
and that the file object Image.open returns is a proper io.RawIOBase."""

import array
import io
import mmap
import os
import shutil
import sys
import threading
import time

import pytest

import cimfs

from conftest import assert_sound

DATA = bytes(range(256)) * 20 + b"end"  # 5123 bytes: page-aligned region


def _image_with(tmp_path, write):
    with cimfs.create(tmp_path, "t.cim") as w:
        write(w)
    path = tmp_path / "t.cim"
    assert_sound(path)
    return cimfs.open(path)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "memoryview-slice", "array-int32", "mmap"])
def test_write_accepts_buffers(tmp_path, kind):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    f = open(src, "rb")
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        expect = DATA
        if kind == "bytes":
            buf = DATA
        elif kind == "bytearray":
            buf = bytearray(DATA)
        elif kind == "memoryview":
            buf = memoryview(DATA)
        elif kind == "memoryview-slice":
            buf = memoryview(DATA)[100:3000]
            expect = DATA[100:3000]
        elif kind == "array-int32":
            buf = array.array("i", range(1000))
            expect = buf.tobytes()
        else:
            buf = m
        out = tmp_path / "out"
        out.mkdir()

        def write(w):
            w.add_file("via-data", data=buf)
            w.add_file("via-write", size=len(expect))
            assert w.write(buf) == len(expect)
            w.add_stream("via-data:ads", data=buf)
        with _image_with(out, write) as img:
            assert img.read_bytes("via-data") == expect
            assert img.read_bytes("via-write") == expect
            assert img.read_bytes("via-data:ads") == expect
    finally:
        m.close()
        f.close()


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64", "complex128"])
def test_write_accepts_numpy_arrays(tmp_path, dtype):
    np = pytest.importorskip("numpy")
    arr = (np.arange(3 * 1777) * 7).astype(dtype).reshape(3, 1777)  # 2-D, C-contiguous
    assert arr.flags.c_contiguous and arr.nbytes == arr.size * arr.itemsize

    def write(w):
        w.add_file("a", data=arr)
        w.add_file("b", size=arr.nbytes)
        for row in arr:
            w.write(row)
    with _image_with(tmp_path, write) as img:
        assert img.stat("a").size == arr.nbytes
        assert img.read_bytes("a") == arr.tobytes() == img.read_bytes("b")
        back = np.frombuffer(img.read_bytes("a"), dtype=dtype).reshape(arr.shape)
        assert (back == arr).all()


def test_non_contiguous_buffers_are_rejected(tmp_path):
    np = pytest.importorskip("numpy")
    arr = np.arange(10_000, dtype=np.int32)
    for bad in (arr[::2], arr.reshape(100, 100).T, arr.reshape(100, 100)[:, :50]):
        assert not bad.flags.c_contiguous
        before = sorted(os.listdir(tmp_path))
        with pytest.raises((BufferError, TypeError, ValueError)):
            with cimfs.create(tmp_path, "t.cim") as w:
                w.add_file("f", data=bad)
        assert sorted(os.listdir(tmp_path)) == before
    # a rejected write() does not poison the writer: the stream can still be filled
    with cimfs.create(tmp_path, "ok.cim") as w:
        w.add_file("f", size=arr[::2].nbytes)
        with pytest.raises((BufferError, TypeError, ValueError)):
            w.write(arr[::2])
        w.write(np.ascontiguousarray(arr[::2]))
    assert_sound(tmp_path / "ok.cim")
    with cimfs.open(tmp_path / "ok.cim") as img:
        assert img.read_bytes("f") == arr[::2].tobytes()


def test_write_rejects_non_buffers(tmp_path):
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("f", size=3)
        for bad in ("abc", 123, None, [1, 2, 3]):
            with pytest.raises(TypeError):
                w.write(bad)
        w.write(b"abc")
    assert_sound(tmp_path / "t.cim")


def test_write_releases_the_gil(tmp_path):
    """While one thread is inside a single 200 MB write(), another Python thread
    keeps running. The switch interval is raised so that, were the GIL held,
    the counting thread could not run at all during the call."""
    size = 200 * 1024 * 1024
    buf = bytearray(size)
    buf[::4096] = b"\x01" * (size // 4096)
    counter = [0]
    during = {}
    done = threading.Event()
    old = sys.getswitchinterval()
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("big", size=size)

        def writer():
            try:
                before = counter[0]
                w.write(buf)
                during["count"] = counter[0] - before
            finally:
                done.set()

        sys.setswitchinterval(30.0)
        try:
            t = threading.Thread(target=writer)
            t.start()
            while not done.is_set():
                counter[0] += 1
                if counter[0] % 1000 == 0:
                    time.sleep(0)  # the only place this thread lets the GIL go
            t.join()
        finally:
            sys.setswitchinterval(old)
    assert "count" in during, "the write failed"
    # With the GIL held for the whole call this would be 0.
    assert during["count"] > 10_000, during
    with cimfs.open(tmp_path / "t.cim") as img:
        assert img.stat("big").size == size
        with img.open("big") as f:
            f.seek(4096 * 1000)
            assert f.read(2) == b"\x01\x00"


# ---- reading: CimFile ---------------------------------------------------------

@pytest.fixture
def img(tmp_path):
    big = os.urandom(300_000)

    def write(w):
        w.add_file("small", data=b"0123456789")
        w.add_file("big", data=big)
        w.add_file("empty", data=b"")
        w.add_stream("small:ads", data=b"stream bytes")
    image = _image_with(tmp_path, write)
    image.big = big
    yield image
    image.close()


def test_cimfile_is_raw_io(img):
    with img.open("small") as f:
        assert isinstance(f, io.RawIOBase)
        assert f.readable() and f.seekable() and not f.writable()
        assert f.size == 10
        buf = bytearray(4)
        assert f.readinto(buf) == 4 and buf == b"0123"
        assert f.tell() == 4
        assert f.seek(2, io.SEEK_CUR) == 6
        assert f.read(2) == b"67"
        assert f.seek(-3, io.SEEK_END) == 7
        assert f.read(-1) == b"789"
        assert f.read(5) == b"" and f.readinto(buf) == 0  # at EOF
        assert f.seek(0) == 0 and f.read() == b"0123456789"
        assert f.seek(100) == 100 and f.read() == b""  # past the end: empty, not an error
        with pytest.raises(ValueError):
            f.seek(-1)
        with pytest.raises(ValueError):
            f.seek(0, 7)
    assert f.closed
    with pytest.raises(ValueError):
        f.read()


def test_cimfile_readinto_multibyte_buffers(img):
    with img.open("big") as f:
        a = array.array("I", bytes(400))
        assert f.readinto(a) == 400
        assert a.tobytes() == img.big[:400]
        mv = memoryview(bytearray(1000))[10:20]
        assert f.readinto(mv) == 10 and bytes(mv) == img.big[400:410]


def test_cimfile_with_buffered_reader_and_copyfileobj(img, tmp_path):
    with io.BufferedReader(img.open("big"), buffer_size=8192) as br:
        assert br.read(5) == img.big[:5]
        assert br.peek(1)[:1] == img.big[5:6]
        br.seek(150_000)
        assert br.read(10) == img.big[150_000:150_010]
        br.seek(0)
        out = io.BytesIO()
        shutil.copyfileobj(br, out, 7777)
        assert out.getvalue() == img.big
    dst = tmp_path / "copy.bin"
    with img.open("big") as src, open(dst, "wb") as f:
        shutil.copyfileobj(src, f)
    assert dst.read_bytes() == img.big
    with io.TextIOWrapper(io.BufferedReader(img.open("small:ads")), encoding="ascii") as t:
        assert t.read() == "stream bytes"
    with img.open("empty") as f:
        assert f.read() == b"" and f.size == 0


def test_cimfile_reads_from_several_threads(img):
    """An Image may be shared between threads; each CimFile keeps its own position."""
    errors = []

    def reader(k):
        try:
            with img.open("big") as f:
                for i in range(50):
                    off = (k * 7919 + i * 4099) % (len(img.big) - 100)
                    f.seek(off)
                    assert f.read(100) == img.big[off: off + 100]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
