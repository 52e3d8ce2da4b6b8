"""Hostile layer tars against cimfs.layer.import_tar, hostile images against extract.

The contract checked for every input (see :func:`attempt`):

* import either succeeds, and the image passes ``verify()`` and holds the tree
  the input describes (where a model of the input exists), or raises a
  :class:`cimfs.CimError` (a :class:`~cimfs.layer.LayerError`) that names the
  entry at fault (or, for damage to the archive itself, the byte offset);
* never another exception type, never a hang (an alarm bounds each import),
  never a crash;
* on failure the destination directory holds exactly what it held before.

Decisions these tests pin down (where the issue and spec are silent):

* Names must be valid UTF-8 (PAX says so; ustar names from Windows exporters
  are UTF-8 too). Bytes that are not, and UTF-8-encoded surrogates, are an
  error naming the entry, not silently turned into unpaired UTF-16
  surrogates.
* Reserved DOS device names (CON, NUL, COM1, AUX.txt, ...), and names ending
  in a dot or space, are *accepted* and stored exactly: the image holds NT
  names, which may be anything but ``\\ / : * ? " < > |`` and control
  characters, and cimfs.dll/hcsshim do not refuse them either. Extract writes
  them as ordinary host names.
* A backslash in a tar name is a path separator (as in the Windows form of
  the path), so ``a\\..\\x`` is caught as ``..``.
* Names that differ only in case are compared with the image's own upcase
  table (Windows' rules), not Python's ``str.upper`` (which maps ß to SS).
"""

from __future__ import annotations

import base64
import errno
import glob
import gzip
import io
import os
import resource
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import cimfs
from cimfs import FileInfo, layer

from _tar_gen import BLOCK, Entry, Tar, header, pax_record, small_layer

HSET = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --------------------------------------------------------------------------------------
# the contract


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: int = 20):
    def on_alarm(signum, frame):
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def listing(top) -> List[str]:
    out = []
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(root, n), top))
    return sorted(out)


def tree_of(cim) -> Dict[str, tuple]:
    """path -> ('d',) or ('f', data, streams, link group) with link groups numbered by first path."""
    out: Dict[str, tuple] = {}
    groups: Dict[int, str] = {}
    with cimfs.open(cim) as img:
        for dirpath, dirnames, filenames in img.walk(""):
            for name in dirnames + filenames:
                p = dirpath + "\\" + name if dirpath else name
                s = img.stat(p)
                if s.is_directory and not s.is_reparse_point:
                    out[p] = ("d",)
                elif s.is_reparse_point:
                    out[p] = ("l",)
                else:
                    g = groups.setdefault(s.file_id, p) if s.link_count > 1 else p
                    streams = {n: img.read_bytes(p + ":" + n) for n in img.streams(p)}
                    out[p] = ("f", img.read_bytes(p), streams, g)
    return out


def attempt(tmp_path, data, *, entries: Optional[List[str]] = None, source=None, tag="t"):
    """Import ``data`` (bytes) or ``source`` (a file object) and check the contract.

    Returns the image path on success, the LayerError on failure. ``entries``:
    the tar's entry names; a failure must name one of them (or an offset).
    """
    work = tmp_path / f"w-{tag}"
    work.mkdir(exist_ok=True)
    dest = work / "dest"
    dest.mkdir(exist_ok=True)
    (dest / "keep.txt").write_bytes(b"mine")
    for n in os.listdir(dest):
        if n != "keep.txt":
            p = dest / n
            os.unlink(p)
    src = work / "in.tar"
    if source is None:
        src.write_bytes(data)
        source = src
    before = listing(dest)
    cim = dest / "layer.cim"
    try:
        with alarm():
            layer.import_tar(source, cim)
    except cimfs.CimError as e:
        assert isinstance(e, layer.LayerError), repr(e)
        assert listing(dest) == before, "a failed import left files behind"
        msg = str(e)
        assert msg.startswith(("cim import ", "cimfs import ")), msg
        if e.entry:
            assert f"'{e.entry}'" in msg or repr(e.entry) in msg
            if entries is not None:
                assert e.entry in entries, (e.entry, entries)
        else:
            assert "offset" in msg or "reading the input failed" in msg or "truncated" in msg \
                or "empty" in msg or "root of a layer" in msg, msg
        # the reason must not be an internal Python error leaking through
        for leak in ("TypeError", "struct.error", "incompatible function arguments", "AttributeError",
                     "IndexError", "KeyError", "UnboundLocalError", "RecursionError"):
            assert leak not in msg, msg
        return e
    with cimfs.open(cim) as img:
        assert img.verify() == []
    for n in os.listdir(dest):
        if n not in ("keep.txt", "layer.cim"):
            assert n.startswith(("region_", "objectid_")), n
    return cim


def names_in(t: Tar) -> List[str]:
    """Every name a header of ``t`` could be reported under (PAX path or ustar name)."""
    raw = t.bytes()
    out = set(t.names)
    for off in range(0, len(raw) - BLOCK + 1, BLOCK):
        out.add(raw[off:off + 100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
    return sorted(out)


# --------------------------------------------------------------------------------------
# truncation: a sweep over every header and data boundary of a small valid layer


def test_small_layer_is_valid(tmp_path):
    cim = attempt(tmp_path, small_layer().bytes())
    assert isinstance(cim, os.PathLike)
    tree = tree_of(cim)
    assert tree["Files\\Windows\\a.txt"][2] == {"Zone.Identifier": b"[ZoneTransfer]\r\nZoneId=3\r\n"}
    assert tree["Files\\Windows\\hard.txt"][3] == tree["Files\\Windows\\a.txt"][3]


def test_truncation_at_every_boundary(tmp_path):
    t = small_layer()
    full = t.bytes()
    cuts = sorted({c + d for c in t.bounds for d in (-1, 0, 1, 100) if 0 <= c + d < len(full)})
    names = names_in(t)
    for i, cut in enumerate(cuts):
        r = attempt(tmp_path, full[:cut], entries=names, tag=str(i))
        if cut >= t.size + BLOCK:  # the first end-of-archive block is whole: a complete archive
            assert isinstance(r, os.PathLike), (cut, r)
        else:
            assert isinstance(r, layer.LayerError), cut
            assert "truncated" in str(r) or "empty" in str(r) or "end-of-archive" in str(r), (cut, str(r))


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_truncated_compressed_streams(tmp_path, kind):
    full = small_layer().bytes()
    if kind == "gzip":
        z = gzip.compress(full)
    else:
        import zstandard

        z = zstandard.ZstdCompressor().compress(full)
    for i, cut in enumerate(sorted({1, 2, 5, 10, len(z) // 3, len(z) // 2, len(z) - 9, len(z) - 1})):
        r = attempt(tmp_path, z[:cut], tag=f"{kind}{i}")
        assert isinstance(r, layer.LayerError), cut


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6))
@HSET
def test_corrupt_compressed_streams(tmp_path, seed, n):
    import random
    import zstandard

    rnd = random.Random(seed)
    full = small_layer().bytes()
    z = bytearray(gzip.compress(full) if seed & 1 else zstandard.ZstdCompressor().compress(full))
    for _ in range(n):
        z[rnd.randrange(4, len(z))] ^= 1 << rnd.randrange(8)
    attempt(tmp_path, bytes(z), entries=names_in(small_layer()), tag="c")


# --------------------------------------------------------------------------------------
# mutated archives: bit flips, spliced blocks, lying fields


@given(data=st.data())
@HSET
def test_mutated_small_layer(tmp_path, data):
    t = small_layer()
    raw = bytearray(t.bytes())
    op = data.draw(st.sampled_from(["flip", "splice", "dup", "drop", "field"]))
    if op == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    elif op in ("splice", "dup", "drop"):
        nb = len(raw) // BLOCK
        a = data.draw(st.integers(0, nb - 1))
        b = data.draw(st.integers(0, nb - 1))
        blk = raw[a * BLOCK:(a + 1) * BLOCK]
        if op == "splice":
            raw[b * BLOCK:(b + 1) * BLOCK] = blk
        elif op == "dup":
            raw[b * BLOCK:b * BLOCK] = blk
        else:
            del raw[a * BLOCK:(a + 1) * BLOCK]
    else:
        # rewrite the size or mtime field of one header (with a valid checksum) to a hostile value
        hdrs = [i for i in range(0, len(raw) - BLOCK, BLOCK) if raw[i + 257:i + 263] == b"ustar\x00"]
        i = data.draw(st.sampled_from(hdrs))
        off = data.draw(st.sampled_from([124, 136]))
        value = data.draw(st.one_of(
            st.binary(min_size=12, max_size=12),
            st.integers(-(2**95), 2**95 - 1).map(lambda v: bytes([(v >> 88) & 0xFF | 0x80]) +
                                                  (v & (2**88 - 1)).to_bytes(11, "big")),
            st.integers(0, 8**11 - 1).map(lambda v: b"%011o\0" % v)))
        raw[i + off:i + off + 12] = value
        raw[i + 148:i + 156] = b" " * 8
        raw[i + 148:i + 156] = b"%06o\0 " % sum(raw[i:i + BLOCK])
    attempt(tmp_path, bytes(raw), tag="m")


# --------------------------------------------------------------------------------------
# sizes and numbers


@pytest.mark.parametrize("field", [
    b"\xff" * 12,  # base-256 -1
    b"\xff" * 10 + b"\xfe\x00",  # -512
    (-1000 & (2**96 - 1)).to_bytes(12, "big"),  # -1000
    b"\x80" + b"\xff" * 11,  # 2^88 - 1
    b"\x80" + b"\x00" * 3 + b"\x01" + b"\x00" * 7,  # 2^64
])
@pytest.mark.parametrize("typeflag", [b"0", b"x", b"L"])
def test_hostile_size_fields(tmp_path, field, typeflag):
    """Negative and huge base-256 sizes: an error at that header, not a hang or a TypeError."""
    t = Tar().raw(header("Files/a", typeflag, 0, size_field=field)).raw(b"\0" * 1024).file("Files/b", b"1")
    r = attempt(tmp_path, t.bytes(), entries=["Files/a", "Files/b", ""])
    assert isinstance(r, layer.LayerError)


@pytest.mark.parametrize("value", ["-5", "-1", "-512", "18446744073709551616", "9" * 40, "1e3", "0x10", "", "nan"])
def test_hostile_pax_size(tmp_path, value):
    t = Tar().file("Files/a", b"hello", size=value).file("Files/b", b"x")
    r = attempt(tmp_path, t.bytes(), entries=["Files/a", "Files/b"])
    assert isinstance(r, layer.LayerError)


TIME_KEYS = ["mtime", "atime", "ctime", "LIBARCHIVE.creationtime"]


@pytest.mark.parametrize("key", TIME_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e10", "1.5.5", "", "+", "-", ".", "0x10", "1_000",
                                   "99999999999999999999999999", "1844674407370", "1833029933771"])
def test_bad_pax_times_are_errors_naming_the_entry(tmp_path, key, value):
    t = Tar().dir("Files/").file("Files/a", b"1", **{key: value})
    r = attempt(tmp_path, t.bytes(), entries=["Files/a"])
    assert isinstance(r, layer.LayerError) and r.entry == "Files/a", r


@pytest.mark.parametrize("value", ["-1", "-99999999999999999999", "-0.0000001", "0", "1833029933770.9551615"])
def test_extreme_but_representable_pax_times(tmp_path, value):
    """Before 1601 clamps to 0 (documented in filetime_from_pax); the FILETIME maximum is kept."""
    t = Tar().file("Files/a", b"1", mtime=value)
    cim = attempt(tmp_path, t.bytes())
    assert isinstance(cim, os.PathLike)
    with cimfs.open(cim) as img:
        assert 0 <= img.stat("Files\\a").last_write_time < 2**64


def test_header_mtime_beyond_filetime(tmp_path):
    t = Tar().raw(header("Files/a", b"0", 0, mtime_field=b"\x80" + b"\xff" * 11))
    r = attempt(tmp_path, t.bytes(), entries=["Files/a"])
    assert isinstance(r, layer.LayerError) and r.entry == "Files/a"


@given(key=st.sampled_from(TIME_KEYS + ["size", "MSWINDOWS.fileattr", "MSWINDOWS.rawsd", "CIMFS.reparse",
                                        "MSWINDOWS.xattr.X", "path", "linkpath", "MSWINDOWS.mountpoint"]),
       value=st.one_of(st.text(max_size=40), st.from_regex(r"-?[0-9]{0,30}(\.[0-9]{0,12})?", fullmatch=True),
                       st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())),
       kind=st.sampled_from(["file", "dir", "symlink"]))
@HSET
def test_random_pax_values(tmp_path, key, value, kind):
    assume("\n" not in value or key != "path")
    t = Tar().dir("Files/")
    pax = {key: value}
    if kind == "file":
        t.file("Files/a", b"data", **pax)
    elif kind == "dir":
        t.dir("Files/d/", **pax)
    else:
        t.symlink("Files/s", "target", **pax)
    t.file("Files/z", b"z")
    attempt(tmp_path, t.bytes(), entries=names_in(t) + [value, value.rstrip("\n")], tag="p")


def test_pax_record_lengths(tmp_path):
    for i, rec in enumerate([b"99 path=Files/a\n", b"0 path=Files/a\n", b"-5 path=Files/a\n",
                             b"9" * 30 + b" path=Files/a\n", b" 16 path=Files/a\n", b"5 \n", b"x" * 400]):
        t = Tar().raw(header("p", b"x", len(rec))).raw(rec.ljust(BLOCK, b"\0")).file("Files/a", b"1")
        r = attempt(tmp_path, t.bytes(), tag=str(i))
        assert isinstance(r, layer.LayerError)


# --------------------------------------------------------------------------------------
# names


REJECTED_NAMES = [
    "../evil", "Files/../../evil", "Files\\..\\..\\evil", "Files/a\\..\\..\\..\\x",  # '..'
    "/etc/passwd", "\\x", "//server/share/x", "C:\\x", "C:/x", "C:x", "c:\\Windows\\x",  # absolute, drive
    "\\\\?\\C:\\x", "\\\\.\\PhysicalDrive0", "\\\\server\\share\\x",  # device and UNC forms
    "Files/a\0b", "Files/a*b", "Files/a?b", "Files/a<b", "Files/a>b", 'Files/a"b', "Files/a|b",
    "Files/a\x01b", "Files/a\x1fb", "Files/d:x/f",  # NTFS-illegal characters
    "Files/" + "n" * 256, "Files/" + "\U0001F600" * 128,  # > 255 UTF-16 units (astral chars count 2)
    "/".join(["d" * 200] * 170),  # > 32767 units
    "Files/.wh.", "Files/a:", "Files/a::$DATA",
]


@pytest.mark.parametrize("name", REJECTED_NAMES, ids=lambda n: ascii(n)[:40])
@pytest.mark.parametrize("kind", ["file", "dir", "link"])
def test_rejected_names(tmp_path, name, kind):
    t = Tar().dir("Files/").file("Files/target", b"t")
    if kind == "file":
        t.file("x", b"x", path=name)
    elif kind == "dir":
        t.dir("x", path=name + "/")
    else:
        t.link("x", "Files/target", path=name)
    r = attempt(tmp_path, t.bytes(), entries=names_in(t))
    assert isinstance(r, layer.LayerError), name
    assert r.entry.rstrip("/") == name, (r.entry, name)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "C:\\Windows\\x", "\\\\?\\C:\\x",
                                  "Files/a\0b", "Files/missing", "Files", "Files/", "", "Files/t:s"])
def test_rejected_hard_link_targets(tmp_path, name):
    t = Tar().dir("Files/").file("Files/t", b"t").file("Files/t:s", b"s").link("Files/l", name)
    r = attempt(tmp_path, t.bytes(), entries=names_in(t))
    assert isinstance(r, layer.LayerError) and r.entry == "Files/l", r


@pytest.mark.parametrize("raw", [b"Files/\xff\xfe.txt", b"Files/\xed\xa0\x80.txt", b"Files/\xed\xa0\xbd\xed\xb8\x80",
                                 b"Files/\xc0\xaf", b"Files/\xe0\x80\xaf..", b"Files/ok\x80"])
@pytest.mark.parametrize("where", ["ustar", "pax", "gnu"])
def test_non_utf8_names_are_rejected(tmp_path, raw, where):
    """Invalid UTF-8 (and UTF-8-encoded surrogates, overlong forms) would become unpaired
    UTF-16 surrogates or other names than the archive meant: an error naming the entry."""
    t = Tar().dir("Files/")
    if where == "ustar":
        t.add(Entry(raw, data=b"x"))
    elif where == "pax":
        t.add(Entry("Files/x", data=b"x", pax={"path": raw}))
    else:
        t.add(Entry(raw + b"/" + b"g" * 120, data=b"x", gnu_longname=True))
    r = attempt(tmp_path, t.bytes(), entries=names_in(t) + [raw.decode("utf-8", "surrogateescape")])
    assert isinstance(r, layer.LayerError), raw
    assert "UTF-8" in str(r)


def test_non_utf8_link_targets_are_rejected(tmp_path):
    t = Tar().dir("Files/").file("Files/a", b"1").symlink("Files/s", b"\xff").link("Files/h", b"Files/\xff")
    r = attempt(tmp_path, t.bytes(), entries=names_in(t))
    assert isinstance(r, layer.LayerError) and r.entry == "Files/s"
    t = Tar().dir("Files/").file("Files/a", b"1").link("Files/h", b"Files/\xff")
    r = attempt(tmp_path, t.bytes(), entries=names_in(t), tag="2")
    assert isinstance(r, layer.LayerError) and r.entry == "Files/h"


ACCEPTED_NAMES = ["CON", "NUL", "COM1", "AUX.txt", "con", "LPT9.log", "PRN.", "name.", "name ", " lead",
                  "n" * 255, "\U0001F600" * 127, "é", "\u202e", "\ufeff", "\uffff"]


@pytest.mark.parametrize("name", ACCEPTED_NAMES, ids=lambda n: ascii(n)[:40])
def test_reserved_and_odd_names_are_kept_exactly(tmp_path, name):
    t = Tar().dir("Files/").dir(f"Files/{name}/").file(f"Files/{name}/{name}", b"x") \
        .file(f"Files/{name}/{name}:{name}", b"s").link(f"Files/l-{name[:100]}", f"Files/{name}/{name}")
    cim = attempt(tmp_path, t.bytes())
    assert isinstance(cim, os.PathLike), cim
    tree = tree_of(cim)
    assert tree[f"Files\\{name}"] == ("d",)
    assert tree[f"Files\\{name}\\{name}"][1:3] == (b"x", {name: b"s"})
    # extract writes them as plain host names
    dest = tmp_path / "x"
    if len(name.encode()) > 255:  # no host file system holds that name: an error naming it
        with pytest.raises(cimfs.CimError) as ei:
            layer.extract(cim, dest)
        assert ei.value.errno == errno.ENAMETOOLONG
        return
    layer.extract(cim, dest)
    assert (dest / "Files" / name / name).read_bytes() == b"x"


def test_backslash_is_a_separator(tmp_path):
    t = Tar().file("Files\\sub\\a", b"1").file("Files/sub\\b", b"2")
    tree = tree_of(attempt(tmp_path, t.bytes()))
    assert tree["Files\\sub"] == ("d",) and tree["Files\\sub\\a"][1] == b"1" and tree["Files\\sub\\b"][1] == b"2"


def test_case_folding_follows_the_image_not_python(tmp_path):
    """ß.upper() == 'SS' in Python, but Windows' upcase table keeps ß: they are two names."""
    t = Tar().dir("Files/").file("Files/ß", b"1").file("Files/SS/x", b"2").link("Files/l", "Files/ß")
    tree = tree_of(attempt(tmp_path, t.bytes()))
    assert tree["Files\\ß"][1] == b"1" and tree["Files\\SS"] == ("d",) and tree["Files\\l"][3] == tree["Files\\ß"][3]
    t = Tar().dir("Files/").dir("Files/ß/").file("Files/SS", b"1")
    tree = tree_of(attempt(tmp_path, t.bytes(), tag="2"))
    assert tree["Files\\ß"] == ("d",) and tree["Files\\SS"][1] == b"1"
    # real case-only duplicates are still errors
    t = Tar().dir("Files/").file("Files/é", b"1").file("Files/É", b"2")
    r = attempt(tmp_path, t.bytes(), tag="3")
    assert isinstance(r, layer.LayerError) and r.entry == "Files/É" and "case" in str(r)


@pytest.mark.parametrize("target,why", [("a" * 40000, "too long"), ("a\0b", "NUL")])
def test_hostile_symlink_targets(tmp_path, target, why):
    t = Tar().dir("Files/").symlink("Files/s", "x", linkpath=target)
    r = attempt(tmp_path, t.bytes(), entries=["Files/s"])
    assert isinstance(r, layer.LayerError) and r.entry == "Files/s", (why, r)


# --------------------------------------------------------------------------------------
# a model of what a well-formed entry sequence builds, checked against the image

COMPONENTS = ["aa", "bb", "Files", "CON", "x.txt", "ß", "SS"]


ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(["dir", "file", "link", "whiteout", "stream", "symlink"]),
        st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=3),
        st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=3),
        st.binary(max_size=700),
    ),
    max_size=14,
)


class Model:
    """What the importer should build (names compared exactly: COMPONENTS has no case-only pairs
    under Windows' upcase table, ß and SS included)."""

    def __init__(self):
        self.t: Dict[Tuple[str, ...], list] = {}  # path -> ['d'] | ['f', data, streams, gid] | ['l']
        self.gid = 0
        self.last_file: Optional[Tuple[str, ...]] = None

    def _parents(self, p):
        for i in range(1, len(p)):
            q = p[:i]
            k = self.t.get(q)
            if k is None:
                self.t[q] = ["d"]
            elif k[0] != "d":
                return False
        return True

    def apply(self, op, p, q, data) -> bool:
        """False when the importer must refuse this entry."""
        if op == "dir":
            k = self.t.get(p)
            if not self._parents(p) or (k is not None and k[0] != "d"):
                return False
            self.t[p] = ["d"]
            self.last_file = None
        elif op == "file":
            k = self.t.get(p)
            if not self._parents(p) or (k is not None and k[0] == "d"):
                return False
            self.gid += 1
            self.t[p] = ["f", data, {}, self.gid]
            self.last_file = p
        elif op == "symlink":
            k = self.t.get(p)
            if not self._parents(p) or (k is not None and k[0] == "d"):
                return False
            self.t[p] = ["l"]
            self.last_file = p
        elif op == "link":
            target = self.t.get(q)
            if target is None or target[0] == "d":
                return False
            k = self.t.get(p)
            if not self._parents(p) or (k is not None and k[0] == "d"):
                return False
            if target[0] == "f":
                self.t[p] = target  # the same list: one file, two names
            else:
                self.t[p] = ["l"]
            self.last_file = p
        elif op == "whiteout":
            victim = p
            for key in [x for x in self.t if x[:len(victim)] == victim]:
                del self.t[key]
            if self.last_file is not None and self.last_file[:len(victim)] == victim:
                self.last_file = None
        elif op == "stream":
            k = self.t.get(p)
            if k is None:
                return False
            if k[0] == "f":
                k[2]["s"] = data
            elif k[0] == "l":
                pass
            else:
                return False  # streams on directories: kept out of the model
        return True

    def tree(self):
        out = {}
        for p, k in self.t.items():
            key = "\\".join(p)
            if k[0] == "f":
                out[key] = ("f", k[1], dict(k[2]), id(k))
            else:
                out[key] = (k[0],)
        return out


@given(ops=ops_strategy)
@HSET
@example(ops=[("file", ["ß"], ["aa"], b"1"), ("file", ["SS", "aa"], ["aa"], b"2"), ("link", ["bb"], ["ß"], b"")])
def test_generated_layers_match_model(tmp_path, ops):
    t = Tar()
    m = Model()
    expect_error: Optional[str] = None
    for op, p, q, data in ops:
        name = "/".join(p)
        if op == "whiteout":
            ent = "/".join(p[:-1] + [".wh." + p[-1]])
            t.file(ent)
        elif op == "stream":
            if m.t.get(tuple(p), ["d"])[0] == "d":
                continue
            ent = name + ":s"
            t.file(ent, data)
        elif op == "dir":
            ent = name + "/"
            t.dir(ent)
        elif op == "file":
            ent = name
            t.file(ent, data)
        elif op == "symlink":
            ent = name
            t.symlink(ent, "target")
        else:
            ent = name
            t.link(ent, "/".join(q))
        if not m.apply(op, tuple(p), tuple(q), data):
            expect_error = ent
            break
    r = attempt(tmp_path, t.bytes(), entries=names_in(t), tag="g")
    if expect_error is not None:
        assert isinstance(r, layer.LayerError), (expect_error, ops)
        assert r.entry == expect_error, (r, expect_error)
        return
    assert isinstance(r, os.PathLike), (r, ops)
    got = tree_of(r)
    want = m.tree()
    assert set(got) == set(want), (sorted(got), sorted(want))
    # link groups: paths sharing one model file share one image file
    gmap: Dict[int, str] = {}
    for p, w in want.items():
        g = got[p]
        assert g[0] == w[0], p
        if w[0] == "f":
            assert g[1] == w[1] and g[2] == w[2], p
            first = gmap.setdefault(w[3], g[3])
            assert g[3] == first, p


# --------------------------------------------------------------------------------------
# links, streams and whiteouts at the edges


@pytest.mark.parametrize("build,entry,match", [
    (lambda t: t.link("Files/b", "Files/a").file("Files/a", b"1"), "Files/b", "does not exist"),  # later entry
    (lambda t: t.link("Files/b", "Files/b"), "Files/b", "does not exist"),  # itself
    (lambda t: t.dir("Files/d/").link("Files/b", "Files/d"), "Files/b", "directory"),
    (lambda t: t.file("Files/d/x", b"1").link("Files/b", "Files/d/"), "Files/b", "directory"),  # implicit dir
    (lambda t: t.symlink("Files/s", "x", **{"MSWINDOWS.fileattr": "16"}).link("Files/b", "Files/s"), "Files/b",
     "directory"),
    (lambda t: t.file("Files/a", b"1").file("Files/.wh.a").link("Files/b", "Files/a"), "Files/b",
     "does not exist"),
    (lambda t: t.file("Files/a:s", b"x"), "Files/a:s", "before its file"),  # ADS on a missing file
    (lambda t: t.file("Files/a", b"1").file("Files/.wh.a").file("Files/a:s", b"x"), "Files/a:s", "before its file"),
    (lambda t: t.file("Files/a", b"1").dir("Files/a:s/"), "Files/a:s/", "regular file"),
    (lambda t: t.file("Files/a", b"1").link("Files/a:s", "Files/a"), "Files/a:s", "regular file"),
    (lambda t: t.file("Files/a", b"1").file("Files/a:s", b"x").file("Files/a:S", b"y"), "Files/a:S", "case"),
    (lambda t: t.file("Files/a", b"1").file("Files/a:" + "s" * 256, b"x"), "Files/a:" + "s" * 256, "255"),
])
def test_link_stream_edge_cases(tmp_path, build, entry, match):
    t = build(Tar().dir("Files/"))
    r = attempt(tmp_path, t.bytes(), entries=names_in(t))
    assert isinstance(r, layer.LayerError) and r.entry == entry and match in str(r), r


def test_whiteouts_of_missing_paths_are_ignored(tmp_path):
    t = Tar().dir("Files/").file("Files/.wh.nothing").file("Files/nodir/.wh.x").file("Files/a", b"1") \
        .file("Files/a/.wh.x").file(".wh.Nope").file("Files/.wh..wh..opq").file("Files/.wh.b", b"junk" * 300)
    tree = tree_of(attempt(tmp_path, t.bytes()))
    assert set(tree) == {"Files", "Files\\a"}


# --------------------------------------------------------------------------------------
# sources that fail, and decompression bombs


class Failing(io.RawIOBase):
    def __init__(self, data: bytes, at: int, exc: BaseException):
        self.d, self.p, self.at, self.exc = data, 0, at, exc

    def readable(self):
        return True

    def readinto(self, b):
        if self.p >= self.at:
            raise self.exc
        n = min(len(b), self.at - self.p, len(self.d) - self.p)
        b[:n] = self.d[self.p:self.p + n]
        self.p += n
        return n


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "I/O error"), ValueError("boom"), RuntimeError("x"),
                                 zlib.error("bad"), MemoryError()], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_source_raising_mid_stream(tmp_path, exc, compress):
    t = small_layer()
    data = t.bytes()
    ats = [len(data) // 3, t.size - 10]  # before the end-of-archive blocks: the reader must get there
    if compress == "gzip":
        data = gzip.compress(data)
        ats = [len(data) // 3, len(data) // 2]
    for i, at in enumerate(ats):
        r = attempt(tmp_path, None, source=Failing(data, at, exc), tag=f"{i}")
        assert isinstance(r, layer.LayerError) and "reading the input failed" in str(r), r


def test_keyboard_interrupt_mid_stream_propagates_and_cleans_up(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    data = small_layer().bytes()
    with pytest.raises(KeyboardInterrupt):
        layer.import_tar(Failing(data, len(data) // 2, KeyboardInterrupt()), dest / "x.cim")
    assert os.listdir(dest) == []


BOMB = textwrap.dedent("""
    import resource, sys, os
    sys.path.insert(0, {tests!r})
    from cimfs import layer, CimError
    src, out = sys.argv[1], sys.argv[2]
    try:
        layer.import_tar(src, out)
        print("ok")
    except CimError as e:
        print("error", e)
    print("maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def _run_bomb(tmp_path, path, limit_mb=1024):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    code = BOMB.format(tests=os.path.dirname(__file__))
    r = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "o" / "x.cim")],
                       capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    return lines[0], int(lines[-1].split()[1]) // 1024


def _compress(kind, chunks):
    if kind == "zstd":
        import zstandard

        co = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join(co.compress(c) for c in chunks) + co.flush()
    co = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join(co.compress(c) for c in chunks) + co.flush()


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_bomb_file_data_memory_stays_bounded(tmp_path, kind):
    """A few hundred KB that inflate to 256 MiB of file data: streamed, not held in memory."""
    size = 256 << 20
    zero = b"\0" * (1 << 20)
    chunks = [header("Files/big", b"0", size)] + [zero] * (size >> 20) + [b"\0" * 1024]
    p = tmp_path / f"bomb.tar.{kind}"
    p.write_bytes(_compress(kind, chunks))
    assert p.stat().st_size < 2 << 20
    outcome, rss = _run_bomb(tmp_path, p)
    assert outcome == "ok"
    assert rss < 200, f"{rss} MB"


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_bomb_of_garbage_stops_early(tmp_path, kind):
    """4 GiB of 'A' after the magic: the first header is refused at once, nothing more is inflated."""
    p = tmp_path / f"garbage.{kind}"
    p.write_bytes(_compress(kind, [b"A" * (1 << 20)] * 4096))
    outcome, rss = _run_bomb(tmp_path, p)
    assert outcome.startswith("error") and "checksum" in outcome
    assert rss < 200


def test_bomb_pax_header_memory_stays_bounded(tmp_path):
    n = 60 << 20
    body = (b"5 a=\n" * (n // 5))[:n]
    chunks = [header("p", b"x", len(body)), body, b"\0" * (-len(body) % BLOCK), header("Files/a", b"0", 0),
              b"\0" * 1024]
    p = tmp_path / "pax.tar.zst"
    p.write_bytes(_compress("zstd", chunks))
    del body, chunks
    outcome, rss = _run_bomb(tmp_path, p, limit_mb=2048)
    assert rss < 400, f"{rss} MB for a {p.stat().st_size}-byte input ({outcome})"


def _extended_header(kind: bytes, key_prefix: str, value: str = "", size: int = (1 << 20) - 64) -> bytes:
    """One extended header of about ``size`` bytes of distinct records."""
    records, n = [], 0
    while True:
        r = pax_record(f"{key_prefix}{len(records):x}", value)
        if n + len(r) > size:
            break
        records.append(r)
        n += len(r)
    body = b"".join(records)
    return header("PaxHeaders/x", kind, len(body)) + body + b"\0" * (-len(body) % BLOCK)


def test_pax_header_of_many_distinct_records_is_not_quadratic(tmp_path):
    """~100 000 tiny records in one PAX header (1 MiB, the most accepted): each was
    looked up among all before it, ~5e9 string comparisons (a minute and more)."""
    data = _extended_header(b"x", "k") + header("Files/a", b"0", 0) + b"\0" * 1024
    start = time.monotonic()
    cim = attempt(tmp_path, data)
    assert isinstance(cim, os.PathLike), cim
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("kind", [b"x", b"g"])
def test_extended_records_are_capped_in_total(tmp_path, kind):
    """Each extended header is capped at 1 MiB, but records of several headers add
    up (an entry's, or the global ones, which every later entry copies): 2 MiB of
    them is refused, so N headers cannot make the importer hold N MiB."""
    data = (_extended_header(kind, "a", "v" * 100) + _extended_header(kind, "b", "v" * 100)
            + header("Files/a", b"0", 0) + b"\0" * 1024)
    e = attempt(tmp_path, data, tag=kind.decode())
    assert isinstance(e, layer.LayerError), e
    assert "more than 1048576 bytes of records" in str(e)
    assert ("global" in str(e)) == (kind == b"g")
    # one header's worth of records, and records that replace each other, are fine
    again = b"".join(_extended_header(kind, "a", "v" * 100) for _ in range(3))
    assert isinstance(attempt(tmp_path, again + header("Files/a", b"0", 0) + b"\0" * 1024, tag="ok"), os.PathLike)


def test_whiteouts_of_directories_do_not_scan_every_path(tmp_path):
    """20 000 files, then 20 000 directories each added and whited out: every
    whiteout of a directory scanned all paths the import had added for those
    below it (4e8 comparisons, 17 s); now it visits only what it removes."""
    n = 20000
    parts = [header("Files/", b"5")] + [header(f"Files/f{i}", b"0", 0) for i in range(n)]
    for i in range(n):
        parts += [header(f"D{i}/", b"5"), header(f"D{i}/x", b"0", 0), header(f".wh.D{i}", b"0", 0)]
    src = tmp_path / "wh.tar"
    src.write_bytes(b"".join(parts) + b"\0" * 1024)
    start = time.monotonic()
    with alarm(60):
        s = layer.import_tar(src, tmp_path / "wh.cim")
    assert time.monotonic() - start < 5
    assert s.whiteouts == n
    with cimfs.open(tmp_path / "wh.cim") as img:
        assert img.listdir("") == ["Files"]
        assert len(img.listdir("Files")) == n


def test_repeated_opaque_whiteouts_cost_nothing_more(tmp_path):
    """An opaque whiteout went through all the parent's entries of its directory
    every time, each one a failed remove once gone: 400 of them (200 KiB) over a
    parent directory of 5 000 files took seconds (a real base layer's System32
    holds 20 000: 10 s per 100 KiB). Now a directory is cleared once."""
    base = [header("Files/", b"5")] + [header(f"Files/f{i}", b"0", 0) for i in range(5000)]
    (tmp_path / "base.tar").write_bytes(b"".join(base) + b"\0" * 1024)
    layer.import_tar(tmp_path / "base.tar", tmp_path / "base.cim")
    top = [header("Files/.wh..wh..opq", b"0", 0)] * 200 + [header("Files/mine", b"0", 0)]
    top += [header("Files/.wh..wh..opq", b"0", 0)] * 200
    (tmp_path / "top.tar").write_bytes(b"".join(top) + b"\0" * 1024)
    start = time.monotonic()
    with alarm(60):
        layer.import_tar(tmp_path / "top.tar", tmp_path / "top.cim", parent=tmp_path / "base.cim")
    assert time.monotonic() - start < 5
    with cimfs.open(tmp_path / "top.cim") as img:
        assert img.listdir("Files") == ["mine"]
        assert img.verify() == []


# --------------------------------------------------------------------------------------
# extraction: hostile images never write outside DEST


def _patch_name(directory, old: str, new: str) -> None:
    o = old.encode("utf-16-le", "surrogatepass")
    n = new.encode("utf-16-le", "surrogatepass")
    assert len(o) == len(n)
    hits = 0
    for f in glob.glob(os.path.join(directory, "region_*")):
        with open(f, "rb") as fh:
            b = fh.read()
        if o in b:
            hits += b.count(o)
            with open(f, "wb") as fh:
                fh.write(b.replace(o, n))
    assert hits, old


def _outside_snapshot(root, dest):
    """Everything under root that is not under dest (and not the image files)."""
    out = []
    ps = []
    for r, dirs, files in os.walk(root):  # prune dest: it may be deeper than 3.11's recursive os.walk can go
        dirs[:] = [d for d in dirs if os.path.join(r, d) != str(dest)]
        ps.extend(os.path.relpath(os.path.join(r, n), root) for n in dirs + files)
    for p in sorted(ps):
        full = os.path.join(root, p)
        if os.path.commonpath([full, str(dest)]) == str(dest):
            continue
        out.append((p, os.path.islink(full), open(full, "rb").read() if os.path.isfile(full)
                    and not os.path.islink(full) else None))
    return out


def _extract_checked(tmp_path, cim, dest):
    before = _outside_snapshot(tmp_path, dest)
    try:
        with alarm():
            r = layer.extract(cim, dest)
    except cimfs.CimError as e:
        r = e
    assert _outside_snapshot(tmp_path, dest) == before, "extract wrote outside DEST"
    return r


def _image(tmp_path, build, patches=()):
    d = tmp_path / "img"
    d.mkdir()
    with cimfs.create(d, "i.cim") as w:
        build(w)
    for old, new in patches:
        _patch_name(d, old, new)
    return d / "i.cim"


PATCHED = [
    ("xx", ".."), ("QQ", ".."), ("Q", "."), ("a_b_c_d", "../../x"), ("AcB", "/cB"), ("AcB", "\\cB"),
    ("AcB", "A\0B"), ("AcB", "A:B"), ("AcB", "..\\"), ("AcBDEFGHIJKLMNOP", "/tmp/hx-evil-abc"),
]


@pytest.mark.parametrize("old,new", PATCHED, ids=lambda s: ascii(s))
def test_extract_patched_names_stay_inside(tmp_path, old, new):
    def build(w):
        w.add_directory("top")
        w.add_directory("top\\" + old)
        w.add_file("top\\" + old + "\\evil", data=b"e")
        w.add_file("top\\ok", data=b"ok")

    cim = _image(tmp_path, build, [(old, new)])
    dest = tmp_path / "dest" / "inner"
    dest.mkdir(parents=True)
    r = _extract_checked(tmp_path, cim, dest)
    assert not os.path.exists("/tmp/hx-evil-abc")
    if isinstance(r, layer.ImportSummary):
        assert (dest / "top" / "ok").read_bytes() == b"ok"
        assert all(os.path.realpath(os.path.join(root, n)).startswith(str(dest))
                   for root, ds, fs in os.walk(dest) for n in ds + fs)


def test_extract_directory_cycle(tmp_path):
    """A directory whose link table names its own parent: extract stops, it does not recurse forever."""
    def build(w):
        w.add_directory("top")
        w.add_directory("top\\CYCLECHILD")
        w.add_file("top\\CYCLECHILD\\f", data=b"x")

    cim = _image(tmp_path, build)
    with cimfs.open(cim) as img:
        top, ch = img.stat("top").file_id, img.stat("top\\CYCLECHILD").file_id
    name = "CYCLECHILD".encode("utf-16-le")
    patched = 0
    for f in glob.glob(str(tmp_path / "img" / "region_*")):
        b = bytearray(open(f, "rb").read())
        i = b.find(name)
        while i >= 0:
            t = i - 18  # link table: length, count=1, FileID, name offset 16, name length, name
            if t >= 0 and struct.unpack_from("<II", b, t + 4) == (1, ch):
                struct.pack_into("<I", b, t + 8, top)
                patched += 1
            i = b.find(name, i + 1)
        open(f, "wb").write(b)
    assert patched == 1
    dest = tmp_path / "dest"
    r = _extract_checked(tmp_path, cim, dest)
    assert isinstance(r, (layer.ImportSummary, layer.LayerError)), r
    depth = max(len(os.path.relpath(root, dest).split(os.sep)) for root, _, _ in os.walk(dest))
    assert depth < 10


def test_extract_deep_but_valid_tree(tmp_path):
    def build(w):
        p = "a"
        w.add_directory(p)
        for _ in range(1099):
            p += "\\a"
            w.add_directory(p)
        w.add_file(p + "\\f", data=b"deep")

    cim = _image(tmp_path, build)
    dest = tmp_path / "dest"
    r = _extract_checked(tmp_path, cim, dest)
    assert isinstance(r, layer.ImportSummary), r
    assert (dest.joinpath(*["a"] * 1100) / "f").read_bytes() == b"deep"
    # pytest's tmp_path cleanup (shutil.rmtree) recurses per level on Python < 3.12: remove it here
    order, stack = [], [str(dest)]
    while stack:
        d = stack.pop()
        order.append(d)
        for e in os.scandir(d):
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                os.unlink(e.path)
    for d in reversed(order):
        os.rmdir(d)


def test_extract_unencodable_names_and_targets(tmp_path):
    """Names with unpaired high surrogates (legal in an image) have no host form; links to NUL-bearing
    targets neither: skipped with a warning, never a UnicodeEncodeError/ValueError."""
    def build(w):
        w.add_file("A\ud800B", data=b"e")
        w.add_file("ok", data=b"ok")
        w.add_file("nul", FileInfo(attributes=0x420, reparse_data=layer.encode_reparse_point("a_b")))
        w.add_file("sur", FileInfo(attributes=0x420, reparse_data=layer.encode_reparse_point("a_c")))

    cim = _image(tmp_path, build, [("a_b", "a\0b"), ("a_c", "a\ud800c")])
    dest = tmp_path / "dest"
    r = _extract_checked(tmp_path, cim, dest)
    assert isinstance(r, (layer.ImportSummary, layer.LayerError)), r
    if isinstance(r, layer.ImportSummary):
        assert (dest / "ok").read_bytes() == b"ok"


def test_extract_hard_links_and_outside_reparse_points(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"keep")

    def build(w):
        w.add_directory("d")
        w.add_file("d\\a", data=b"A" * 100)
        w.add_link("d\\a", "b")
        w.add_link("d\\a", "d\\c")
        w.add_file("abs", FileInfo(attributes=0x420, reparse_data=layer.encode_reparse_point(str(outside))))
        w.add_file("rel", FileInfo(attributes=0x420, reparse_data=layer.encode_reparse_point("..\\outside")))
        w.add_file("junction", FileInfo(attributes=0x410,
                                        reparse_data=layer.encode_reparse_point("C:\\", mount_point=True)))
        w.add_file("secret", data=b"pwned")  # same name as the file outside: must not go through 'abs'

    cim = _image(tmp_path, build)
    dest = tmp_path / "dest"
    r = _extract_checked(tmp_path, cim, dest)
    assert isinstance(r, layer.ImportSummary), r
    assert os.path.samefile(dest / "b", dest / "d" / "a") and os.path.samefile(dest / "d" / "c", dest / "b")
    assert os.path.islink(dest / "abs") and os.path.islink(dest / "rel")
    assert (outside / "secret").read_bytes() == b"keep"
    # a second extract over the first: the planted links (now in DEST) are not followed
    r = _extract_checked(tmp_path, cim, dest)
    assert (outside / "secret").read_bytes() == b"keep"


@pytest.mark.parametrize("where", ["top", "deep", "file", "hardlink-source"])
def test_extract_planted_symlinks_are_not_followed(tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a").write_bytes(b"keep")

    def build(w):
        w.add_directory("d")
        w.add_directory("d\\e")
        w.add_file("d\\e\\a", data=b"new")
        w.add_link("d\\e\\a", "d\\h")

    cim = _image(tmp_path, build)
    dest = tmp_path / "dest"
    if where == "top":
        dest.mkdir()
        os.symlink(outside, dest / "d")
    elif where == "deep":
        (dest / "d").mkdir(parents=True)
        os.symlink(outside, dest / "d" / "e")
    elif where == "file":
        (dest / "d" / "e").mkdir(parents=True)
        os.symlink(outside / "a", dest / "d" / "e" / "a")
    else:
        (dest / "d").mkdir(parents=True)
        os.symlink(outside / "a", dest / "d" / "h")
    r = _extract_checked(tmp_path, cim, dest)
    assert (outside / "a").read_bytes() == b"keep"
    assert os.listdir(outside) == ["a"]
    assert isinstance(r, (layer.ImportSummary, layer.LayerError))


def test_extract_dest_itself_a_symlink_into_a_file(tmp_path):
    (tmp_path / "f").write_bytes(b"keep")
    cim = _image(tmp_path, lambda w: w.add_file("a", data=b"x"))
    with pytest.raises(cimfs.CimError):
        layer.extract(cim, tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"keep"


def test_extract_refuses_to_overwrite_existing_files(tmp_path):
    cim = _image(tmp_path, lambda w: w.add_file("a", data=b"new"))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a").write_bytes(b"mine")
    with pytest.raises(cimfs.CimError) as e:
        layer.extract(cim, dest)
    assert e.value.errno == errno.EEXIST
    assert (dest / "a").read_bytes() == b"mine"
    layer.extract(cim, dest, overwrite=True)
    assert (dest / "a").read_bytes() == b"new"


def test_extract_checks_free_space_up_front(tmp_path, monkeypatch):
    cim = _image(tmp_path, lambda w: w.add_file("a", data=b"x" * 100_000))
    real = os.statvfs

    class Tiny:
        def __init__(self, s):
            self.__dict__.update({k: getattr(s, k) for k in dir(s) if k.startswith("f_")})
            self.f_bavail = self.f_bfree = 1

    monkeypatch.setattr(os, "statvfs", lambda p: Tiny(real(p)))
    dest = tmp_path / "dest"
    with pytest.raises(cimfs.CimError) as ei:
        layer.extract(cim, dest)
    assert ei.value.errno == errno.ENOSPC
    assert not (dest / "a").exists()
