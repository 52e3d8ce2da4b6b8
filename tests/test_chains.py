"""Layer chains: forks see the parent's tree, change only their own view, share
the parent's objects, and destroy/usage respect shared regions (issue 4)."""

import errno
import hashlib
import os
import random

import pytest

import cimfs
from cimfs import FileAttributes, FileInfo

DIR = FileAttributes.DIRECTORY


def digest_files(d):
    return {n: hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest() for n in sorted(os.listdir(d))}


def tree_of(image_path):
    """Everything visible through the reader: path -> (kind, content/attrs, streams, times)."""
    out = {}
    with cimfs.open(image_path) as img:
        assert img.verify() == []
        for dirpath, dirs, files in img.walk():
            for name in dirs:
                p = dirpath + "\\" + name if dirpath else name
                st = img.stat(p)
                out[p.upper()] = ("dir", st.attributes, st.last_write_time)
            for name in files:
                p = dirpath + "\\" + name if dirpath else name
                st = img.stat(p)
                out[p.upper()] = ("file", img.read_bytes(p), img.streams(p), st.last_write_time)
    return out


def apply(model, w, ops):
    """Apply ops to the writer and to the independent model (dict keyed by upper path)."""
    for op in ops:
        kind = op[0]
        if kind == "dir":
            _, path, t = op
            w.add_directory(path, FileInfo(attributes=DIR, last_write_time=t))
            model[path.upper()] = ("dir", DIR, t)
        elif kind == "file":
            _, path, data, t = op
            w.add_file(path, FileInfo(last_write_time=t), data=data)
            model[path.upper()] = ("file", data, {}, t)
        elif kind == "stream":
            _, path, name, data = op
            w.add_stream(f"{path}:{name}", data=data)
            k, content, streams, t = model[path.upper()]
            model[path.upper()] = (k, content, {**streams, name: len(data)}, t)
        elif kind == "rm":
            _, path = op
            w.remove(path)
            up = path.upper()
            for k in [k for k in model if k == up or k.startswith(up + "\\")]:
                del model[k]
        elif kind == "link":
            _, existing, new = op
            w.add_link(existing, new)
            model[new.upper()] = model[existing.upper()]
    return model


def normalize(model):
    out = {}
    for k, v in model.items():
        if v[0] == "dir":
            out[k] = ("dir", int(FileAttributes.DIRECTORY), v[2])
        else:
            out[k] = ("file", v[1], dict(v[2]), v[3])
    return out


def test_chain_overlay_matches_model(tmp_path):
    rng = random.Random(7)
    big = rng.randbytes(300_000)
    layers = [
        [("dir", "Files", 1), ("dir", "Files\\Windows", 2), ("dir", "Files\\Windows\\System32", 3),
         ("file", "Files\\Windows\\System32\\kernel32.dll", big, 4),
         ("file", "Files\\Windows\\win.ini", b"[fonts]\r\n", 5),
         ("dir", "Files\\Temp", 6), ("file", "Files\\Temp\\a.tmp", b"tmp", 7),
         ("stream", "Files\\Windows\\win.ini", "Zone.Identifier", b"[ZoneTransfer]\r\nZoneId=3")],
        # modify a file, add one, delete a whole directory
        [("file", "Files\\Windows\\win.ini", b"[fonts]\r\n[extensions]\r\n", 8),
         ("file", "Files\\Windows\\System32\\new.dll", b"MZ" + bytes(5000), 9),
         ("rm", "Files\\Temp")],
        # metadata-only change of a directory, a hard link into parent content, ADS change
        [("dir", "Files\\Windows", 42),
         ("link", "Files\\Windows\\System32\\kernel32.dll", "Files\\Windows\\kernel32-link.dll"),
         ("stream", "Files\\Windows\\System32\\new.dll", "meta", b"x" * 10)],
        # delete a single file, re-add a deleted directory with different content
        [("rm", "Files\\Windows\\System32\\new.dll"), ("dir", "Files\\Temp", 10),
         ("file", "Files\\Temp\\b.tmp", b"b", 11)],
    ]
    model = {}
    parent = None
    parent_files = {}
    for i, ops in enumerate(layers):
        name = f"layer{i}.cim"
        before = digest_files(tmp_path)
        with cimfs.create(tmp_path, name, parent=parent) as w:
            apply(model, w, ops)
        after = digest_files(tmp_path)
        # the parent's files (everything that existed before) are byte-identical
        for f, h in before.items():
            assert after[f] == h, f"{f} changed while writing {name}"
        assert tree_of(tmp_path / name) == normalize(model)
        parent = name
        parent_files[name] = after
    # every earlier layer still shows its own view
    with cimfs.open(tmp_path / "layer0.cim") as img:
        assert img.exists("Files\\Temp\\a.tmp")
        assert img.read_bytes("Files\\Windows\\win.ini") == b"[fonts]\r\n"
    with cimfs.open(tmp_path / "layer2.cim") as img:
        assert img.stat("Files\\Windows\\kernel32-link.dll").link_count == 2
        assert img.stat("Files\\Windows").last_write_time == 42
        # the directory kept its children when only its metadata changed
        assert "System32" in img.listdir("Files\\Windows")


def test_header_lists_parent_chain_in_order(tmp_path):
    guids = []
    parent = None
    for i in range(3):
        g = f"0000000{i}-0000-4000-8000-000000000000"
        guids.append(g)
        with cimfs.create(tmp_path, f"l{i}.cim", parent=parent, region_set=g) as w:
            w.add_file(f"f{i}", data=b"%d" % i)
        parent = f"l{i}.cim"
    info = cimfs.open(tmp_path / "l2.cim").info()
    assert [s[0] for s in info["region_sets"]] == guids  # parents first, own set last
    raw = (tmp_path / "l2.cim").read_bytes()
    assert int.from_bytes(raw[70:72], "little") == 2  # parent count
    assert len(raw) == 72 + 2 * 24


def test_deep_chain_reads(tmp_path):
    parent = None
    for i in range(12):
        with cimfs.create(tmp_path, f"l{i}.cim", parent=parent) as w:
            w.add_file(f"file{i:02d}", data=f"layer {i}".encode())
            if i % 3 == 2:
                w.remove(f"file{i - 1:02d}")
        parent = f"l{i}.cim"
    with cimfs.open(tmp_path / "l11.cim") as img:
        names = img.listdir()
        expected = [f"file{i:02d}" for i in range(12) if not (i % 3 == 1 and i + 1 < 12)]
        assert names == expected
        for n in names:
            assert img.read_bytes(n) == f"layer {int(n[4:])}".encode()
        assert len(img.info()["region_sets"]) == 12
        assert img.verify() == []


def test_dedup_against_parent_adds_no_data(tmp_path):
    data = os.urandom(100 * 1024 * 1024)
    with cimfs.create(tmp_path, "base.cim") as w:
        w.add_file("big.bin", data=data)
    with cimfs.create(tmp_path, "child.cim", parent="base.cim") as w:
        w.add_file("copy.bin", data=data)
        w.add_file("small.txt", data=b"hello")
    own = cimfs.region_files(tmp_path / "child.cim", own_only=True)
    data_bytes = 0
    for f in own:
        if os.path.basename(f).startswith("region_"):
            data_bytes += os.path.getsize(f)
    assert data_bytes < 1024 * 1024  # metadata only: the 100 MB were found in the parent
    assert cimfs.usage(tmp_path / "child.cim") < 1024 * 1024
    assert cimfs.usage(tmp_path / "child.cim", include_parents=True) > 100 * 1024 * 1024
    with cimfs.open(tmp_path / "child.cim") as img:
        assert img.read_bytes("copy.bin") == data


def test_destroy_refuses_while_forked(tmp_path):
    with cimfs.create(tmp_path, "base.cim") as w:
        w.add_file("a", data=b"a")
    with cimfs.create(tmp_path, "child.cim", parent="base.cim") as w:
        w.add_file("b", data=b"b")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(cimfs.OpError) as e:
        cimfs.destroy(tmp_path / "base.cim")
    assert e.value.errno == errno.EBUSY
    assert "child.cim" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == before
    assert cimfs.child_images(tmp_path / "base.cim") == [str(tmp_path / "child.cim")]
    # destroying the child removes only its own files; the base still reads
    cimfs.destroy(tmp_path / "child.cim")
    assert cimfs.open(tmp_path / "base.cim").read_bytes("a") == b"a"
    cimfs.destroy(tmp_path / "base.cim")
    assert os.listdir(tmp_path) == []


def test_destroy_force(tmp_path):
    with cimfs.create(tmp_path, "base.cim") as w:
        w.add_file("a", data=b"a")
    with cimfs.create(tmp_path, "child.cim", parent="base.cim") as w:
        pass
    cimfs.destroy(tmp_path / "base.cim", force=True)
    assert not (tmp_path / "base.cim").exists()
    with pytest.raises(cimfs.CimError):
        cimfs.open(tmp_path / "child.cim")  # its parent's regions are gone


def test_fork_in_place_overwrites_header(tmp_path):
    with cimfs.create(tmp_path, "img.cim") as w:
        w.add_file("a", data=b"a")
    with cimfs.create(tmp_path, "img.cim", parent="img.cim") as w:
        w.add_file("b", data=b"b")
    with cimfs.open(tmp_path / "img.cim") as img:
        assert img.listdir() == ["a", "b"]
        assert len(img.info()["region_sets"]) == 2


def test_failed_child_leaves_parent_and_directory_untouched(tmp_path):
    with cimfs.create(tmp_path, "base.cim") as w:
        w.add_file("a", data=b"a")
    before = digest_files(tmp_path)
    with pytest.raises(RuntimeError):
        with cimfs.create(tmp_path, "child.cim", parent="base.cim") as w:
            w.add_file("b", data=os.urandom(100_000))
            raise RuntimeError("interrupted")
    assert digest_files(tmp_path) == before


def test_native_only_features_say_so(tmp_path):
    with cimfs.create(tmp_path, "x.cim") as w:
        w.add_file("a", data=b"a")
        with pytest.raises(cimfs.UnsupportedError) as e:
            w.add_tombstone("a")
        assert isinstance(e.value, NotImplementedError)
        assert "native backend" in str(e.value)
        with pytest.raises(cimfs.UnsupportedError):
            w.add_merge_link("a", "b")


def test_missing_parent(tmp_path):
    with pytest.raises(cimfs.CimError) as e:
        cimfs.create(tmp_path, "child.cim", parent="nope.cim")
    assert e.value.errno == errno.ENOENT
    assert os.listdir(tmp_path) == []

