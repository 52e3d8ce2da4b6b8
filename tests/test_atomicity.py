"""Interruptions: a killed, failing or interrupted writer leaves either no image
or a complete one, plus only temporary files that collect_garbage removes; a
second writer in a directory is refused; readers work while a writer writes."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import cimfs


def _snapshot(d):
    return {n: os.path.getsize(os.path.join(d, n)) for n in os.listdir(d)}


WRITER = textwrap.dedent(
    """
    import os, sys, cimfs
    d, name = sys.argv[1], sys.argv[2]
    chunk = os.urandom(1 << 20)
    with cimfs.create(d, name) as w:
        w.add_directory("Files")
        for i in range(int(sys.argv[3])):
            w.add_file(f"Files\\\\f{i}", size=4 << 20)
            for k in range(4):
                w.write(chunk[:-1] + bytes([i & 255]) if k == 0 else chunk)
            if i == 0:
                print("started", flush=True)
    print("committed", flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_kill_9_leaves_no_image_or_a_complete_one(tmp_path, delay):
    with cimfs.create(tmp_path, "base.cim") as w:
        w.add_file("keep", data=b"keep")
    before = _snapshot(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "new.cim", "40"], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"started"
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()
    names = set(os.listdir(tmp_path))
    if "new.cim" in names:  # it finished before the kill: the image must be whole
        with cimfs.open(tmp_path / "new.cim") as img:
            assert img.verify() == []
            assert len(img.listdir("Files")) == 40
    else:
        leftovers = names - set(before)
        assert all(n.startswith(".cimfs-") for n in leftovers), leftovers
        removed = cimfs.collect_garbage(tmp_path)
        assert {os.path.basename(r) for r in removed} == {n for n in leftovers if n.startswith(".cimfs-tmp-")}
        assert set(os.listdir(tmp_path)) == set(before)
    # the other image is untouched either way
    assert {n: s for n, s in _snapshot(tmp_path).items() if n in before} == before
    assert cimfs.open(tmp_path / "base.cim").read_bytes("keep") == b"keep"


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_full_disk_mid_write_leaves_directory_as_it_was(tmp_path):
    with cimfs.create(tmp_path, "base.cim") as w:
        w.add_file("keep", data=b"keep")
    before = _snapshot(tmp_path)
    script = textwrap.dedent(
        """
        import os, resource, signal, sys, cimfs
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))
        try:
            with cimfs.create(sys.argv[1], "big.cim") as w:
                w.add_file("big", size=64 << 20)
                for i in range(64):
                    w.write(os.urandom(1 << 20))
        except cimfs.CimError as e:
            print(type(e).__name__, e.errno, e)
            sys.exit(3)
        sys.exit(0)
        """
    )
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 3, r.stdout + r.stderr
    assert str(errno.EFBIG) in r.stdout
    assert _snapshot(tmp_path) == before


def test_keyboard_interrupt_mid_write_leaves_directory_as_it_was(tmp_path):
    with cimfs.create(tmp_path, "base.cim") as w:
        w.add_file("keep", data=b"keep")
    before = _snapshot(tmp_path)

    class Source:
        n = 0

        def readinto(self, b):
            self.n += 1
            if self.n == 5:
                raise KeyboardInterrupt
            b[:] = bytes(len(b))
            return len(b)

    with pytest.raises(KeyboardInterrupt):
        with cimfs.create(tmp_path, "new.cim") as w:
            w.add_file("a", data=os.urandom(100_000))
            w.add_file("b", size=50 << 20, source=Source())
    assert _snapshot(tmp_path) == before


def test_nothing_visible_under_the_name_until_commit(tmp_path):
    w = cimfs.create(tmp_path, "x.cim")
    w.add_file("a", data=os.urandom(200_000))
    names = os.listdir(tmp_path)
    assert "x.cim" not in names
    assert not any(n.startswith(("region_", "objectid_")) for n in names)
    w.commit()
    w.close()
    assert "x.cim" in os.listdir(tmp_path)
    assert not any(n.startswith(".cimfs-") for n in os.listdir(tmp_path))


def test_durable_commit(tmp_path):
    with cimfs.create(tmp_path, "d.cim", durable=True) as w:
        w.add_file("a", data=b"a" * 10_000)
    assert cimfs.open(tmp_path / "d.cim").read_bytes("a") == b"a" * 10_000


def test_second_writer_in_a_directory_is_refused(tmp_path):
    w = cimfs.create(tmp_path, "one.cim")
    try:
        with pytest.raises(cimfs.OpError) as e:
            cimfs.create(tmp_path, "two.cim")
        assert e.value.errno == errno.EBUSY
        assert "one writer per directory" in str(e.value)
        with pytest.raises(cimfs.OpError):
            cimfs.collect_garbage(tmp_path)
    finally:
        w.close()
    with cimfs.create(tmp_path, "two.cim") as w2:  # free again
        w2.add_file("b", data=b"b")
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".cim")) == ["two.cim"]


def test_readers_work_while_a_writer_writes_in_the_same_directory(tmp_path):
    with cimfs.create(tmp_path, "base.cim") as w:
        for i in range(50):
            w.add_file(f"f{i}", data=b"%d" % i * 1000)
    errors = []
    stop = threading.Event()

    def read_loop():
        try:
            with cimfs.open(tmp_path / "base.cim") as img:
                while not stop.is_set():
                    for i in range(50):
                        assert img.read_bytes(f"f{i}") == b"%d" % i * 1000
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    readers = [threading.Thread(target=read_loop) for _ in range(3)]
    for t in readers:
        t.start()
    with cimfs.create(tmp_path, "child.cim", parent="base.cim") as w:
        for i in range(20):
            w.add_file(f"g{i}", data=os.urandom(300_000))
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert cimfs.open(tmp_path / "child.cim").verify() == []


def test_one_image_shared_by_threads(tmp_path):
    blobs = {f"f{i}": os.urandom(5000 + i * 997) for i in range(40)}
    with cimfs.create(tmp_path, "s.cim") as w:
        for n, b in blobs.items():
            w.add_file(n, data=b)
    img = cimfs.open(tmp_path / "s.cim")
    results = []

    def work(k):
        for n in sorted(blobs)[k::4]:
            with img.open(n) as f:
                results.append(f.read() == blobs[n])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40 and all(results)


def test_parallel_writers_in_different_directories(tmp_path):
    errors = []

    def job(k):
        try:
            d = tmp_path / f"d{k}"
            d.mkdir()
            with cimfs.create(d, "l.cim") as w:
                for i in range(30):
                    w.add_file(f"f{i}", data=os.urandom(70_000))
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=job, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for k in range(4):
        assert cimfs.open(tmp_path / f"d{k}" / "l.cim").verify() == []


def test_cli_gc_removes_leftovers(tmp_path):
    with cimfs.create(tmp_path, "keep.cim") as w:
        w.add_file("a", data=b"a")
    (tmp_path / ".cimfs-tmp-region_dead").write_bytes(b"x")
    orphan = tmp_path / "region_11111111-2222-4333-8444-555555555555_0"
    orphan.write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "cimfs", "gc", str(tmp_path), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import json

    assert sorted(os.path.basename(p) for p in json.loads(r.stdout)["removed"]) == [
        ".cimfs-tmp-region_dead", orphan.name]
    assert cimfs.open(tmp_path / "keep.cim").verify() == []
    assert sorted(os.listdir(tmp_path))[0] == "keep.cim"
