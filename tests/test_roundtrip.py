"""Round trips: random trees written with cimfs.create and read back with
cimfs.open (and the independent parser, through assert_sound)."""

import errno
import io
import random
import string
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cimfs
from cimfs import FileAttributes as A
from cimfs import FileInfo

import _layout as L
from conftest import assert_sound

# Windows' upcase table (test_fixture.py checks it equals the fixture's, byte for byte).
UPCASE = cimfs._core.upcase_table()

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


SWAP = str.maketrans(string.ascii_lowercase + string.ascii_uppercase, string.ascii_uppercase + string.ascii_lowercase)


def key(name: str) -> Tuple[int, ...]:
    """How Windows compares names: UTF-16 code units through the upcase table."""
    return L.sort_key(name, UPCASE)


def units(name: str) -> int:
    return len(name.encode("utf-16-le", "surrogatepass")) // 2


def content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# ---- the model ------------------------------------------------------------------

@dataclass
class FileSpec:
    info: FileInfo
    size: int = 0
    seed: int = 0
    how: str = "data"  # data | chunks | source
    streams: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # name -> (size, seed)
    names: List[str] = field(default_factory=list)  # every path of the file (hard links)

    @property
    def data(self) -> bytes:
        return content(self.seed, self.size)


@dataclass
class DirSpec:
    info: FileInfo
    children: Dict[Tuple[int, ...], str] = field(default_factory=dict)  # key -> name as given


# Names: ASCII, Latin/Greek letters whose case mapping is special in Windows'
# table, CJK, the private use area and astral-plane characters (surrogate pairs).
ALPHABET = list("abcXYZ019 -_.~$") + list("éÉßµıſΣσςǅ日本") + ["\ue000", "\U0001F600", "\U00010400", "\U00010428"]
short_names = st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=10).filter(
    lambda n: n not in (".", ".."))


@st.composite
def long_names(draw):
    """Exactly 255 UTF-16 code units, sometimes ending in a surrogate pair."""
    astral = draw(st.booleans())
    stem = draw(st.sampled_from("LmÉ"))
    return stem * 253 + "\U0001F600" if astral else stem * 255


names = st.one_of(short_names, short_names, short_names, long_names())
ATTRS = [A.READONLY, A.HIDDEN, A.SYSTEM, A.ARCHIVE, A.NOT_CONTENT_INDEXED, A.TEMPORARY, A.NORMAL]
times = st.integers(0, 2**63 - 1)
sizes = st.one_of(st.sampled_from([0, 1, 24, 25, 4095, 4096, 4097, 8192]), st.integers(0, 20_000),
                  st.sampled_from([65_536, 100_003]))
ea_names = st.binary(min_size=1, max_size=20).map(lambda b: bytes(0x41 + c % 26 for c in b))


@st.composite
def infos(draw, directory=False):
    attrs = 0
    for a in draw(st.lists(st.sampled_from(ATTRS), max_size=3)):
        attrs |= a
    if directory:
        attrs |= A.DIRECTORY
    sd = draw(st.one_of(st.none(), st.builds(L.security_descriptor, st.integers(0, 600),
                                             st.one_of(st.none(), st.integers(0, 600)))))
    ea = draw(st.one_of(st.just(b""), st.lists(st.tuples(ea_names, st.binary(max_size=60), st.sampled_from([0, 0x80])),
                                                min_size=1, max_size=3).map(L.ea_blob)))
    return FileInfo(attributes=attrs, creation_time=draw(times), last_write_time=draw(times),
                    change_time=draw(times), last_access_time=draw(times), security_descriptor=sd,
                    extended_attributes=ea)


@st.composite
def trees(draw):
    """A list of operations and the model of the image they make."""
    dirs: Dict[str, DirSpec] = {"": DirSpec(FileInfo(attributes=A.DIRECTORY))}
    files: Dict[str, FileSpec] = {}
    ops = []

    def fresh(parent: str, name: str) -> Optional[str]:
        path = parent + "\\" + name if parent else name
        if units(path) > 32767 or key(name) in dirs[parent].children:
            return None
        dirs[parent].children[key(name)] = name
        return path

    n = draw(st.integers(1, 25))
    for _ in range(n):
        parent = draw(st.sampled_from(sorted(dirs)))
        kind = draw(st.sampled_from(["file", "file", "dir", "symlink", "deep"]))
        path = fresh(parent, draw(names))
        if path is None:
            continue
        if kind == "dir":
            dirs[path] = DirSpec(draw(infos(directory=True)))
            ops.append(("dir", path))
        elif kind == "deep":  # a chain of nested directories with a file at the bottom
            dirs[path] = DirSpec(draw(infos(directory=True)))
            ops.append(("dir", path))
            for _d in range(draw(st.integers(5, 40))):
                sub = fresh(path, draw(short_names))
                if sub is None:
                    break
                dirs[sub] = DirSpec(FileInfo(attributes=A.DIRECTORY))
                ops.append(("dir", sub))
                path = sub
            leaf = fresh(path, "leaf")
            if leaf:
                files[leaf] = FileSpec(FileInfo(), size=draw(st.integers(0, 5000)), seed=draw(st.integers(0, 3)),
                                       names=[leaf])
                ops.append(("file", leaf))
        elif kind == "symlink":
            info = draw(infos())
            target = draw(st.text(alphabet=st.sampled_from(ALPHABET + ["\\"]), min_size=1, max_size=40))
            info.reparse_data = L.symlink_reparse(target, relative=draw(st.booleans()))
            files[path] = FileSpec(info, names=[path])
            ops.append(("file", path))
        else:
            spec = FileSpec(draw(infos()), size=draw(sizes), seed=draw(st.integers(0, 4)),
                            how=draw(st.sampled_from(["data", "chunks", "source"])), names=[path])
            for _s in range(draw(st.integers(0, 2))):
                sname = draw(st.text(alphabet=st.sampled_from(list("abcSTR_1éµ\U0001F600")), min_size=1, max_size=8))
                if key(sname) not in {key(k) for k in spec.streams}:
                    spec.streams[sname] = (draw(st.sampled_from([0, 3, 4096, 5000])), draw(st.integers(0, 4)))
            files[path] = spec
            ops.append(("file", path))
    # hard links to some of the files, in any directory
    regular = [p for p in files]
    if regular:
        for _ in range(draw(st.integers(0, 4))):
            target = draw(st.sampled_from(regular))
            parent = draw(st.sampled_from(sorted(dirs)))
            new = fresh(parent, draw(short_names))
            if new is None:
                continue
            files[target].names.append(new)
            files[new] = files[target]
            ops.append(("link", target, new))
    fmt = draw(st.sampled_from([3, 3, 3, 2]))
    return fmt, dirs, files, ops


def write_tree(directory, fmt, dirs, files, ops):
    with cimfs.create(directory, "t.cim", format_version=fmt) as w:
        w.add_directory("", dirs[""].info)
        for op in ops:
            if op[0] == "dir":
                w.add_directory(op[1], dirs[op[1]].info)
            elif op[0] == "link":
                w.add_link(op[1], op[2])
            else:
                spec = files[op[1]]
                data = spec.data
                if spec.how == "data" or not data:
                    w.add_file(op[1], spec.info, data=data)
                elif spec.how == "source":
                    w.add_file(op[1], spec.info, size=len(data), source=io.BytesIO(data))
                else:
                    w.add_file(op[1], spec.info, size=len(data))
                    for i in range(0, len(data), 3001):
                        w.write(data[i: i + 3001])
                for sname, (size, seed) in spec.streams.items():
                    w.add_stream(op[1] + ":" + sname, data=content(seed, size))
    return directory / "t.cim"


def expected_attributes(info: FileInfo, directory: bool, reparse: bool) -> int:
    a = info.attributes & (A.READONLY | A.HIDDEN | A.SYSTEM | A.ARCHIVE | A.SPARSE_FILE)
    if directory:
        a |= A.DIRECTORY
    if reparse:
        a |= A.REPARSE_POINT
    return a or A.NORMAL


def check_tree(path, fmt, dirs, files):
    null_sd = cimfs.null_dacl_security_descriptor()
    with cimfs.open(path) as img:
        assert img.version == (fmt, 0)
        for dpath, spec in dirs.items():
            names = sorted(spec.children.values(), key=key)
            assert img.listdir(dpath) == names
            st_ = img.stat(dpath)
            assert st_.is_directory and st_.size == 0
            assert st_.attributes == expected_attributes(spec.info, True, False)
            if dpath:  # the root keeps no SD unless one is given
                assert img.security_descriptor(dpath) == (spec.info.security_descriptor or null_sd)
                assert (st_.creation_time, st_.last_write_time, st_.change_time, st_.last_access_time) == (
                    spec.info.creation_time, spec.info.last_write_time, spec.info.change_time,
                    spec.info.last_access_time)
            assert img.extended_attributes(dpath) == spec.info.extended_attributes
        walked = {d: sorted(ds + fs, key=key) for d, ds, fs in img.walk()}
        assert walked == {d: sorted(s.children.values(), key=key) for d, s in dirs.items()}
        for fpath, spec in files.items():
            st_ = img.stat(fpath)
            info = spec.info
            reparse = bool(info.reparse_data)
            assert not st_.is_directory
            assert st_.size == spec.size
            assert st_.attributes == expected_attributes(info, False, reparse)
            assert (st_.creation_time, st_.last_write_time, st_.change_time, st_.last_access_time) == (
                info.creation_time, info.last_write_time, info.change_time, info.last_access_time)
            assert st_.link_count == len(spec.names)
            assert st_.ea_length == len(info.extended_attributes)
            assert img.read_bytes(fpath) == spec.data
            assert img.security_descriptor(fpath) == (info.security_descriptor or null_sd)
            assert img.extended_attributes(fpath) == info.extended_attributes
            assert img.reparse_data(fpath) == info.reparse_data
            if reparse:
                assert st_.reparse_tag == 0xA000000C and st_.is_symlink
            else:
                assert st_.reparse_tag == 0
            assert list(img.streams(fpath).items()) == sorted(
                ((n, s) for n, (s, _) in spec.streams.items()), key=lambda x: key(x[0]))
            for sname, (size, seed) in spec.streams.items():
                assert img.read_bytes(fpath + ":" + sname) == content(seed, size)
                assert img.read_bytes(fpath + ":" + sname + ":$DATA") == content(seed, size)
            if fmt == 3:
                assert sorted(img.links(fpath)) == sorted(spec.names)
            # the path with its ASCII letters' case swapped reaches the same file
            assert img.stat(fpath.translate(SWAP)).file_id == st_.file_id


@SETTINGS
@given(tree=trees())
def test_random_trees_round_trip(tmp_path_factory, tree):
    fmt, dirs, files, ops = tree
    d = tmp_path_factory.mktemp("rt")
    path = write_tree(d, fmt, dirs, files, ops)
    assert_sound(path)
    check_tree(path, fmt, dirs, files)


def test_many_files_cross_file_tables(tmp_path):
    rng = random.Random(7)
    expect = {}
    with cimfs.create(tmp_path, "many.cim") as w:
        for d in range(12):
            w.add_directory(f"d{d}")
            for i in range(250):
                p = f"d{d}\\F{i}_{rng.randrange(10**6)}"
                data = rng.randbytes(rng.choice([0, 10, 100, 5000]))
                w.add_file(p, data=data)
                expect[p] = data
        w.add_link("d0\\" + next(p.split("\\")[1] for p in expect if p.startswith("d0\\")), "d11\\zz_link")
    path = tmp_path / "many.cim"
    assert_sound(path)
    lay = L.Layout(path)
    assert len(lay.ftd) == 3 and len(lay.records) == 1 + 12 + 3000
    with cimfs.open(path) as img:
        for d in range(12):
            names = img.listdir(f"d{d}")
            assert names == sorted(names, key=key)
            assert len(names) == 250 + (d == 11)
        for p in rng.sample(sorted(expect), 300):
            assert img.read_bytes(p.lower()) == expect[p]
        ids = {img.stat(p).file_id for p in expect}
        assert max(ids) > 2048  # the third table is reached through lookups
        assert len(img.links("d11\\zz_link")) == 2


@pytest.mark.parametrize("second", ["FOO", "foo", "Foo".replace("o", "O", 1)])
def test_names_differing_only_in_case_are_rejected(tmp_path, second):
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("Foo", data=b"first")
        w.add_directory("Dir")
        for op in (lambda: w.add_file(second, data=b"second"),
                   lambda: w.add_directory(second),
                   lambda: w.add_file("Dir\\x", data=b"") or w.add_file("dir\\X", data=b"")):
            with pytest.raises(cimfs.PathError) as e:
                op()
            assert e.value.errno == errno.EEXIST
            assert "case" in str(e.value)
        with pytest.raises(cimfs.CimError) as e:
            w.add_link("Foo", second)
        assert e.value.errno == errno.EEXIST
        # Windows' table: U+00B5 (micro) and U+039C (capital mu) are different names,
        # U+00E9 and U+00C9 are the same one.
        w.add_file("\u00b5", data=b"micro")
        w.add_file("\u039c", data=b"MU")
        w.add_file("\u00e9", data=b"e")
        with pytest.raises(cimfs.PathError) as e:
            w.add_file("\u00c9", data=b"E")
        assert e.value.errno == errno.EEXIST
    path = tmp_path / "t.cim"
    assert_sound(path)
    with cimfs.open(path) as img:
        assert img.read_bytes("FOO") == b"first"
        assert img.listdir() == sorted(["Dir", "Foo", "\u00b5", "\u039c", "\u00e9"], key=key)
        assert img.listdir("dir") == ["x"]
        assert img.read_bytes("\u00c9") == b"e"
        assert img.read_bytes("\u00b5") == b"micro"


def test_surrogate_pairs_and_255_unit_names(tmp_path):
    n255 = "\U0001F600" * 127 + "x"  # 255 code units, 128 characters
    assert units(n255) == 255
    deep = "\\".join(["\U00010400dir"] * 50)
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file(n255, data=b"long")
        p = ""
        for part in deep.split("\\"):
            p = p + "\\" + part if p else part
            w.add_directory(p)
        w.add_file(deep + "\\\U00010428", data=b"deep")
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    assert n255 in [n for n, _ in lay.children(lay.root_id)]
    with cimfs.open(path) as img:
        assert img.read_bytes(n255) == b"long"
        # U+10400 and U+10428 are case pairs in Unicode, but the table maps code
        # units: surrogates map to themselves, so case-folding does not reach them.
        assert img.read_bytes(deep + "\\\U00010428") == b"deep"
        assert not img.exists(deep + "\\\U00010400")
        assert img.links(deep + "\\\U00010428") == [deep + "\\\U00010428"]
