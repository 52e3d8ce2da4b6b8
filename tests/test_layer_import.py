"""cimfs.layer.import_tar / export_tar: generated Windows layer tars checked through the reader."""

import base64
import gzip
import io
import os
import struct
import subprocess
import sys
import tarfile
import threading

import pytest

import cimfs
from cimfs import layer
from cimfs._sample import SD_SYSTEM_DIR, SD_SYSTEM_FILE, SD_USER, security_descriptor, write_sample_layer

EPOCH_FT = 116444736000000000


def ft(sec, ticks=0):
    """FILETIME of Unix seconds + 100 ns ticks."""
    return EPOCH_FT + sec * 10_000_000 + ticks


def pax_time(sec, ticks=0):
    return f"{sec}.{ticks:07d}"


def _ti(name, kind=tarfile.REGTYPE, size=0, linkname="", pax=None):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.linkname = linkname
    ti.mtime = 1_600_000_000
    ti.mode = 0o644
    ti.pax_headers = dict(pax or {})
    return ti


class TarBuilder:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def add(self, name, data=None, kind=tarfile.REGTYPE, linkname="", **pax):
        pax = {k.replace("__", "."): v for k, v in pax.items()}
        size = len(data) if data is not None else 0
        self.tar.addfile(_ti(name, kind, size, linkname, pax), io.BytesIO(data) if data else None)
        return self

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def write(tmp_path, data, name="layer.tar"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def leftovers(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# --------------------------------------------------------------------------------------
# an independent snapshot of an image's tree, for equality checks


def snapshot(cim):
    out = {}
    with cimfs.open(cim) as img:
        ids = {}
        for dirpath, dirnames, filenames in img.walk(""):
            for name in dirnames + filenames:
                p = dirpath + "\\" + name if dirpath else name
                st = img.stat(p)
                rec = {
                    "attributes": st.attributes,
                    "times": (st.creation_time, st.last_write_time, st.change_time, st.last_access_time),
                    "size": st.size,
                    "dir": st.is_directory,
                    "reparse_tag": st.reparse_tag,
                    "links": st.link_count,
                    "sd": img.security_descriptor(p),
                    "ea": img.extended_attributes(p),
                    "reparse": img.reparse_data(p),
                }
                if not st.is_directory:
                    rec["data"] = img.read_bytes(p)
                    rec["streams"] = {s: img.read_bytes(p + ":" + s) for s in img.streams(p)}
                    if st.link_count > 1:
                        ids.setdefault(st.file_id, []).append(p)
                out[p] = rec
        out["<hardlink groups>"] = sorted(sorted(v) for v in ids.values())
    return out


# --------------------------------------------------------------------------------------
# every record and entry kind


def expected_symlink(sub, prn, flags):
    s, p = sub.encode("utf-16-le"), prn.encode("utf-16-le")
    body = struct.pack("<HHHHI", 0, len(s), len(s) + 2, len(p), flags) + s + b"\0\0" + p + b"\0\0"
    return struct.pack("<IHH", 0xA000000C, len(body), 0) + body


def expected_junction(sub, prn):
    s, p = sub.encode("utf-16-le"), prn.encode("utf-16-le")
    body = struct.pack("<HHHH", 0, len(s), len(s) + 2, len(p)) + s + b"\0\0" + p + b"\0\0"
    return struct.pack("<IHH", 0xA0000003, len(body), 0) + body


def expected_eas(pairs):
    """FILE_FULL_EA_INFORMATION built by hand: each entry padded to 4 bytes, 0 next offset on the last."""
    out = b""
    for i, (name, value) in enumerate(pairs):
        n = name.encode()
        e = struct.pack("<BBH", 0, len(n), len(value)) + n + b"\0" + value
        last = i == len(pairs) - 1
        total = 4 + len(e)
        pad = 0 if last else (-total) % 4
        out += struct.pack("<I", 0 if last else total + pad) + e + b"\0" * pad
    return out


@pytest.fixture
def full_layer(tmp_path):
    times = dict(mtime=pax_time(1_600_000_000, 1234567), atime=pax_time(1_600_000_100, 7),
                 ctime=pax_time(1_600_000_200, 9_999_999))
    sd_b64 = base64.b64encode(SD_SYSTEM_FILE).decode()
    b = TarBuilder()
    b.add("Files/", kind=tarfile.DIRTYPE, MSWINDOWS__fileattr="16", MSWINDOWS__rawsd=base64.b64encode(SD_SYSTEM_DIR).decode())
    b.add("Files/Windows/", kind=tarfile.DIRTYPE, MSWINDOWS__fileattr=str(0x10 | 0x2 | 0x4),
          LIBARCHIVE__creationtime=pax_time(1_500_000_000, 1), **times)
    b.add("Files/Windows/a.dll", b"MZ" + bytes(range(256)) * 40, MSWINDOWS__fileattr="33",
          MSWINDOWS__rawsd=sd_b64, LIBARCHIVE__creationtime=pax_time(1_500_000_000, 42),
          **{"MSWINDOWS.xattr.$KERNEL.PURGE.ESBCACHE": base64.b64encode(b"\x01\x02\x03").decode(),
             "MSWINDOWS.xattr.USER.X": base64.b64encode(b"hello").decode()}, **times)
    b.add("Files/Windows/a.dll:Zone.Identifier", b"[ZoneTransfer]\r\nZoneId=3\r\n")
    b.add("Files/Windows/a.dll:second:$DATA", b"2nd")
    b.add("Files/Windows/b.dll", kind=tarfile.LNKTYPE, linkname="Files/Windows/a.dll")
    b.add("Files/Windows/rel.lnk", kind=tarfile.SYMTYPE, linkname="..\\a.dll", MSWINDOWS__fileattr="1056")
    b.add("Files/Windows/slash.lnk", kind=tarfile.SYMTYPE, linkname="sub/x.txt")
    b.add("Files/Windows/abs.lnk", kind=tarfile.SYMTYPE, linkname="C:\\Windows\\a.dll")
    b.add("Files/Windows/dirlink", kind=tarfile.SYMTYPE, linkname="C:\\ProgramData",
          MSWINDOWS__fileattr=str(0x10 | 0x400))
    b.add("Files/Documents and Settings", kind=tarfile.SYMTYPE, linkname="C:\\Users",
          MSWINDOWS__mountpoint="1", MSWINDOWS__fileattr=str(0x10 | 0x2 | 0x4 | 0x400))
    # children before their directory; a directory that never arrives
    b.add("Files/Late/child.txt", b"child", MSWINDOWS__fileattr="32")
    b.add("Files/Late/", kind=tarfile.DIRTYPE, MSWINDOWS__fileattr=str(0x10 | 0x1), **times)
    b.add("Files/Never/Deep/x.txt", b"x")
    # whiteouts: one removes an earlier entry, one names nothing
    b.add("Files/gone.txt", b"bye")
    b.add("Files/.wh.gone.txt")
    b.add("Files/.wh.never-existed")
    b.add("Hives/Software_Delta", b"regf" + bytes(100))
    b.add("UtilityVM/Files/EFI/boot.efi", b"efi")
    return write(tmp_path, b.bytes())


def test_every_record_and_entry_kind(full_layer, tmp_path):
    cim = tmp_path / "out" / "layer.cim"
    s = layer.import_tar(full_layer, cim)
    assert (s.files, s.links, s.symlinks, s.streams, s.whiteouts) == (6, 1, 5, 2, 2)
    assert s.implicit_directories == 6  # Hives, UtilityVM, UtilityVM\Files, ...\EFI, Files\Never, ...\Deep
    with cimfs.open(cim) as img:
        assert img.verify() == []
        assert img.listdir() == ["Files", "Hives", "UtilityVM"]
        # directory attributes and times, 100 ns exact
        w = img.stat("Files\\Windows")
        assert w.attributes == 0x10 | 0x2 | 0x4
        assert w.creation_time == ft(1_500_000_000, 1)
        assert (w.last_write_time, w.last_access_time, w.change_time) == (
            ft(1_600_000_000, 1234567), ft(1_600_000_100, 7), ft(1_600_000_200, 9_999_999))
        assert img.security_descriptor("Files") == SD_SYSTEM_DIR
        # a file: data, attributes, SD, EAs (hand-built chain), times
        a = img.stat("Files\\Windows\\a.dll")
        assert a.attributes == 33 and a.size == 2 + 256 * 40
        assert img.read_bytes("Files\\Windows\\a.dll") == b"MZ" + bytes(range(256)) * 40
        assert img.security_descriptor("Files\\Windows\\a.dll") == SD_SYSTEM_FILE
        assert img.extended_attributes("Files\\Windows\\a.dll") == expected_eas(
            [("$KERNEL.PURGE.ESBCACHE", b"\x01\x02\x03"), ("USER.X", b"hello")])
        assert a.creation_time == ft(1_500_000_000, 42)
        # alternate data streams, both spellings
        assert img.streams("Files\\Windows\\a.dll") == {"Zone.Identifier": 26, "second": 3}
        assert img.read_bytes("Files\\Windows\\a.dll:second") == b"2nd"
        # hard link identity
        assert img.stat("Files\\Windows\\b.dll").file_id == a.file_id
        assert sorted(img.links("Files\\Windows\\a.dll")) == ["Files\\Windows\\a.dll", "Files\\Windows\\b.dll"]
        assert a.link_count == 2
        # symlinks and junctions: exact REPARSE_DATA_BUFFERs
        r = img.stat("Files\\Windows\\rel.lnk")
        assert r.attributes & 0x400 and r.reparse_tag == 0xA000000C and not r.is_directory
        assert img.reparse_data("Files\\Windows\\rel.lnk") == expected_symlink("..\\a.dll", "..\\a.dll", 1)
        assert img.reparse_data("Files\\Windows\\slash.lnk") == expected_symlink("sub\\x.txt", "sub\\x.txt", 1)
        assert img.reparse_data("Files\\Windows\\abs.lnk") == expected_symlink(
            "\\??\\C:\\Windows\\a.dll", "C:\\Windows\\a.dll", 0)
        assert img.stat("Files\\Windows\\dirlink").is_directory
        j = img.stat("Files\\Documents and Settings")
        assert j.reparse_tag == 0xA0000003 and j.is_directory and j.attributes == 0x10 | 0x2 | 0x4 | 0x400
        assert img.reparse_data("Files\\Documents and Settings") == expected_junction("\\??\\C:\\Users", "C:\\Users")
        # directory after its children: real metadata applied, children kept
        late = img.stat("Files\\Late")
        assert late.attributes == 0x11 and late.last_write_time == ft(1_600_000_000, 1234567)
        assert img.read_bytes("Files\\Late\\child.txt") == b"child"
        # directory that never arrived: defaults
        nv = img.stat("Files\\Never")
        assert nv.attributes == 0x10 and nv.last_write_time == 0
        assert img.read_bytes("Files\\Never\\Deep\\x.txt") == b"x"
        # whiteouts
        assert not img.exists("Files\\gone.txt")
        # other top levels keep their paths
        assert img.read_bytes("Hives\\Software_Delta")[:4] == b"regf"
        assert img.read_bytes("UtilityVM\\Files\\EFI\\boot.efi") == b"efi"


def test_missing_times_default_to_mtime(tmp_path):
    b = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/f", b"1")
    cim = tmp_path / "l.cim"
    layer.import_tar(write(tmp_path, b.bytes()), cim)
    with cimfs.open(cim) as img:
        st = img.stat("Files\\f")
        assert st.creation_time == st.last_write_time == st.change_time == st.last_access_time == ft(1_600_000_000)
        assert st.attributes in (0, 0x80)  # no fileattr: as go-winio, none (the reader may say NORMAL)
        assert img.stat("Files").attributes == 0x10


def test_ea_chain_matches_windows_fixture(fixture_image):
    """decode → encode of the EA blob cimfs.dll wrote gives back the same bytes."""
    with cimfs.open(fixture_image) as img:
        blob = img.extended_attributes("hello.txt")
    eas = layer.decode_eas(blob)
    assert [n for n, _, _ in eas] == ["$KERNEL.SEC.ENDPOINTDLP"]
    assert layer.encode_eas([(n, v) for n, v, _ in eas]) == blob
    multi = [("A", b"1"), ("BB", b"22222"), ("CCC", b"")]
    enc = layer.encode_eas(multi)
    assert enc == expected_eas(multi)
    assert [(n, v) for n, v, _ in layer.decode_eas(enc)] == multi


# --------------------------------------------------------------------------------------
# round trip


def test_import_export_import_is_identical(tmp_path, full_layer):
    for src in (full_layer, None):
        if src is None:
            src = tmp_path / "sample.tar"
            write_sample_layer(src)
        d = tmp_path / ("a" if src == full_layer else "b")
        layer.import_tar(src, d / "one.cim")
        layer.export_tar(d / "one.cim", d / "exp.tar")
        layer.import_tar(d / "exp.tar", d / "two.cim")
        one, two = snapshot(d / "one.cim"), snapshot(d / "two.cim")
        assert one == two
        assert len(one) > 10
        # and the export of the re-import is the same tar
        layer.export_tar(d / "two.cim", d / "exp2.tar")
        assert (d / "exp.tar").read_bytes() == (d / "exp2.tar").read_bytes()


def test_export_records(tmp_path):
    src = tmp_path / "s.tar"
    write_sample_layer(src)
    layer.import_tar(src, tmp_path / "s.cim")
    layer.export_tar(tmp_path / "s.cim", tmp_path / "e.tar")
    with tarfile.open(tmp_path / "e.tar") as tf:
        m = {t.name: t for t in tf.getmembers()}
    k = m["Files/Windows/System32/kernel32.dll"]
    assert base64.b64decode(k.pax_headers["MSWINDOWS.rawsd"]) == SD_SYSTEM_FILE
    assert "MSWINDOWS.xattr.$KERNEL.PURGE.ESBCACHE" in k.pax_headers
    assert k.pax_headers["MSWINDOWS.fileattr"] == "32"
    assert k.pax_headers["mtime"].endswith(".1234567")
    assert m["Files/Windows/notepad.exe"].type == tarfile.LNKTYPE or \
        m["Files/Windows/System32/notepad.exe"].type == tarfile.LNKTYPE
    j = m["Files/Documents and Settings"]
    assert j.type == tarfile.SYMTYPE and j.linkname == "C:\\Users" and "MSWINDOWS.mountpoint" in j.pax_headers
    assert "CIMFS.reparse" not in j.pax_headers
    assert m["Files/Users/Public/Downloads/setup.exe:Zone.Identifier"].size == 65
    assert m["Files/Windows/System32"].type == tarfile.DIRTYPE


def test_foreign_reparse_point_round_trips(tmp_path):
    raw = struct.pack("<IHH", 0x80000017, 8, 0) + b"WOFDATA!"  # a WOF-like tag
    with cimfs.create(tmp_path, "r.cim") as w:
        w.add_file("c.dll", cimfs.FileInfo(attributes=0x20 | 0x400, reparse_data=raw), data=b"x")
    layer.export_tar(tmp_path / "r.cim", tmp_path / "r.tar")
    layer.import_tar(tmp_path / "r.tar", tmp_path / "r2.cim")
    with cimfs.open(tmp_path / "r2.cim") as img:
        assert img.reparse_data("c.dll") == raw


# --------------------------------------------------------------------------------------
# compression and sources


@pytest.mark.parametrize("kind", ["gzip", "zstd", "gzip-stdlib"])
def test_compressed(tmp_path, kind):
    plain = tmp_path / "s.tar"
    write_sample_layer(plain)
    data = plain.read_bytes()
    if kind == "zstd":
        zstandard = pytest.importorskip("zstandard")
        comp = zstandard.ZstdCompressor().compress(data)
    else:
        comp = gzip.compress(data)
    src = write(tmp_path, comp, "s.tar.x")
    layer.import_tar(plain, tmp_path / "p.cim")
    s = layer.import_tar(src, tmp_path / "c.cim")
    assert s.compression == kind.split("-")[0]
    assert snapshot(tmp_path / "p.cim") == snapshot(tmp_path / "c.cim")


def test_gzip_without_isal(tmp_path, monkeypatch):
    """The stdlib gzip fallback works when python-isal is missing."""
    import builtins

    real = builtins.__import__

    def no_isal(name, *a, **kw):
        if name == "isal" or name.startswith("isal."):
            raise ImportError("no isal")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    plain = tmp_path / "s.tar"
    write_sample_layer(plain)
    src = write(tmp_path, gzip.compress(plain.read_bytes()), "s.tgz")
    s = layer.import_tar(src, tmp_path / "c.cim")
    assert s.compression == "gzip" and s.files == 12


def test_file_object_and_pipe(tmp_path):
    plain = tmp_path / "s.tar"
    write_sample_layer(plain)
    data = gzip.compress(plain.read_bytes())
    layer.import_tar(io.BytesIO(data), tmp_path / "bio.cim")
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            for i in range(0, len(data), 7000):
                f.write(data[i:i + 7000])

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as f:
        s = layer.import_tar(f, tmp_path / "pipe.cim")
    t.join()
    assert s.files == 12
    assert snapshot(tmp_path / "bio.cim") == snapshot(tmp_path / "pipe.cim")


class _Dribble(io.RawIOBase):
    """A source that hands out at most `n` bytes per read (buffer-boundary cases)."""

    def __init__(self, data, n):
        self.data, self.pos, self.n = data, 0, n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.n, len(self.data) - self.pos)
        b[:k] = self.data[self.pos:self.pos + k]
        self.pos += k
        return k


def test_file_and_dribbled_stream_make_the_same_bytes(tmp_path):
    """A file read in 1 MiB pieces and a stream that hands out 1000 bytes a read
    (entries and data split at every place in the importer's buffer) must give
    the same image, byte for byte (fixed region set)."""
    plain = tmp_path / "s.tar"
    write_sample_layer(plain)
    big = TarBuilder().add("Files/big.bin", os.urandom(3 << 20)).add("Files/small.txt", b"x" * 700).bytes()
    guid = "12345678-1234-1234-1234-123456789abc"
    for name, data in (("sample", plain.read_bytes()), ("big", big)):
        src = write(tmp_path, data, name + ".tar")
        seen = []
        layer.import_tar(src, tmp_path / "m" / "l.cim", region_set=guid,
                         progress=lambda done, total, entries: seen.append((done, total)))
        assert seen and seen[-1] == (len(data), len(data))  # progress ends at the whole input
        layer.import_tar(_Dribble(data, 1000), tmp_path / "s" / "l.cim", region_set=guid)
        for f in sorted(os.listdir(tmp_path / "m")):
            assert (tmp_path / "m" / f).read_bytes() == (tmp_path / "s" / f).read_bytes(), (name, f)
        assert sorted(os.listdir(tmp_path / "m")) == sorted(os.listdir(tmp_path / "s"))
        for d in ("m", "s"):
            cimfs.destroy(tmp_path / d / "l.cim")


def test_stdin_dash(tmp_path):
    plain = tmp_path / "s.tar"
    write_sample_layer(plain)
    code = "import sys, cimfs.layer as L; print(L.import_tar('-', sys.argv[1]).files)"
    with open(plain, "rb") as f:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.cim")], stdin=f,
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "12"


# --------------------------------------------------------------------------------------
# parent images and whiteouts


def test_parent_and_whiteouts(tmp_path):
    base = TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/keep.txt", b"k").add("Files/drop.txt", b"d")
    layer.import_tar(write(tmp_path, base.bytes(), "base.tar"), tmp_path / "base.cim")
    top = TarBuilder().add("Files/.wh.drop.txt").add("Files/new.txt", b"n")
    try:
        layer.import_tar(write(tmp_path, top.bytes(), "top.tar"), tmp_path / "top.cim", parent=tmp_path / "base.cim")
    except cimfs.UnsupportedError:
        pytest.xfail("forking a parent image is not in the core yet")
    with cimfs.open(tmp_path / "top.cim") as img:
        assert sorted(img.listdir("Files")) == ["keep.txt", "new.txt"]
        assert img.read_bytes("Files\\keep.txt") == b"k"
    with cimfs.open(tmp_path / "base.cim") as img:
        assert sorted(img.listdir("Files")) == ["drop.txt", "keep.txt"]


def test_entries_below_a_removed_parent_directory(tmp_path):
    """A whiteout removes a directory of the parent; a later entry below it gets
    new parent directories like any entry whose parents are missing (it failed
    with "no such file or directory": the parent image still had the directory).
    A stream of a parent file that a whiteout removed comes "before its file"."""
    base = (TarBuilder().add("Files/", kind=tarfile.DIRTYPE).add("Files/Old/", kind=tarfile.DIRTYPE)
            .add("Files/Old/a.txt", b"a").add("Files/Old/in/", kind=tarfile.DIRTYPE).add("Files/f.txt", b"f"))
    layer.import_tar(write(tmp_path, base.bytes(), "base.tar"), tmp_path / "base.cim")
    top = TarBuilder().add("Files/.wh.Old").add("Files/Old/in/new.txt", b"n").add("Files/Old/in/.wh..wh..opq")
    layer.import_tar(write(tmp_path, top.bytes(), "top.tar"), tmp_path / "top.cim", parent=tmp_path / "base.cim")
    with cimfs.open(tmp_path / "top.cim") as img:
        assert img.verify() == []
        assert img.listdir("Files\\Old") == ["in"]
        assert img.listdir("Files\\Old\\in") == ["new.txt"]
        assert img.read_bytes("Files\\Old\\in\\new.txt") == b"n"
    top = TarBuilder().add("Files/.wh.f.txt").add("Files/f.txt:s", b"s")
    with pytest.raises(layer.LayerError, match="before its file"):
        layer.import_tar(write(tmp_path, top.bytes(), "top2.tar"), tmp_path / "top2.cim",
                         parent=tmp_path / "base.cim")


def test_existing_image_is_not_replaced_without_overwrite(tmp_path):
    src = tmp_path / "s.tar"
    write_sample_layer(src)
    layer.import_tar(src, tmp_path / "x.cim")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(cimfs.CimError, match="already exists"):
        layer.import_tar(src, tmp_path / "x.cim")
    assert sorted(os.listdir(tmp_path)) == before
    layer.import_tar(src, tmp_path / "x.cim", overwrite=True)
    assert cimfs.open(tmp_path / "x.cim").verify() == []
    assert len(os.listdir(tmp_path)) == len(before)  # the old region files went with the old image


def test_pax_values_with_newlines_and_utf8(tmp_path):
    # A record whose value holds newlines: its length, not the line ends, delimits it.
    b = TarBuilder().add("Files/nl.txt", b"n", **{"MSWINDOWS.fileattr": "\n33\n", "atime": "7.5"}).bytes()
    layer.import_tar(write(tmp_path, b), tmp_path / "nl.cim")
    with cimfs.open(tmp_path / "nl.cim") as img:
        st = img.stat("Files\\nl.txt")
        assert st.attributes == 33  # READONLY | ARCHIVE
        assert st.last_access_time == 116444736000000000 + 75_000_000  # the record after it still parsed
    # through a real tar: a long UTF-8 name and an EA value holding newlines
    name = "Files/" + "ü" * 120 + "/Ünïcode ファイル.txt"
    b = TarBuilder().add(name, b"u", **{"MSWINDOWS.xattr.NL": base64.b64encode(b"a\nb\n").decode()}).bytes()
    layer.import_tar(write(tmp_path, b), tmp_path / "u.cim")
    with cimfs.open(tmp_path / "u.cim") as img:
        p = name.replace("/", "\\")
        assert img.read_bytes(p) == b"u"
        assert layer.decode_eas(img.extended_attributes(p))[0][:2] == ("NL", b"a\nb\n")
