"""Deduplication (one object per distinct content, in every region) and
determinism (same input and region set: the same bytes in every file, whatever
the timing of the background hashing of large data)."""

import hashlib
import os
import random

import pytest

import cimfs
from cimfs import FileInfo

import _layout as L
from conftest import assert_sound

GUID = "11111111-2222-3333-4444-555555555555"


def blob(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def region_index(lay, rtype):
    return [h.region_type for h in lay.region_headers].index(rtype)


def entries_for(lay, reg, data):
    """objectid entries of region ``reg`` that name ``data``."""
    dg = L.object_digest(data)
    return [e for e in lay.objectids[reg].entries if e[0] == len(data) and e[1] == dg]


def round_up(n, a):
    return (n + a - 1) // a * a


def test_identical_small_files_share_one_object(tmp_path):
    data = b"the same small content, 41 bytes long...."
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("a", data=data)
        w.add_directory("d")
        w.add_file("d\\b", data=data)
        w.add_file("c", size=len(data))
        w.write(data[:10])
        w.write(data[10:])
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    small = region_index(lay, L.REGION_SMALL_DATA)
    assert len(entries_for(lay, small, data)) == 1
    refs = {lay.record(p).default_stream.data for p in ("a", "d\\b", "c")}
    assert len(refs) == 1
    assert len(lay.regions[small]) == round_up(40 + len(data), 8)  # one copy
    with cimfs.open(path) as img:
        assert img.read_bytes("d\\b") == img.read_bytes("c") == data


@pytest.mark.parametrize("size", [64 * 1024, 300_001])
def test_identical_large_files_share_one_object(tmp_path, size):
    data = blob(1, size)
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("a", data=data)
        w.add_file("b", data=bytearray(data))
        w.add_stream("a:copy", data=data)  # an alternate stream with the same bytes too
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    page = region_index(lay, L.REGION_PAGE_DATA)
    [(ln, dg, off)] = lay.objectids[page].entries
    assert (ln, dg) == (size, hashlib.sha512(data).digest()[:24])
    assert off == 4096
    assert len(lay.regions[page]) == 4096 + round_up(size, 4096)
    refs = {lay.record("a").default_stream.data, lay.record("b").default_stream.data,
            lay.streams(lay.record("a"))["copy"].data}
    assert len(refs) == 1
    with cimfs.open(path) as img:
        assert img.read_bytes("b") == data and img.read_bytes("a:copy") == data


def test_identical_security_descriptors_and_eas_stored_once(tmp_path):
    sd = L.security_descriptor(500, 545)
    ea = L.ea_blob([(b"SHARED", b"v" * 40)])
    with cimfs.create(tmp_path, "t.cim") as w:
        for i in range(6):
            w.add_file(f"f{i}", FileInfo(security_descriptor=sd, extended_attributes=ea), data=b"%d" % i)
        w.add_directory("d", FileInfo(security_descriptor=sd))
        w.add_file("other", FileInfo(security_descriptor=L.security_descriptor(501)), data=b"o")
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    prefixed = len(sd).to_bytes(2, "little") + sd
    assert len(entries_for(lay, 0, prefixed)) == 1
    assert len(entries_for(lay, 0, ea)) == 1
    sds = {lay.record(p).security_descriptor for p in [f"f{i}" for i in range(6)] + ["d"]}
    assert len(sds) == 1 and lay.record("other").security_descriptor not in sds
    assert len({lay.record(f"f{i}").extended_attributes for i in range(6)}) == 1
    # the metadata region holds exactly one copy of the SD's bytes
    assert lay.regions[0].count(prefixed) == 1


def test_small_data_equal_to_a_metadata_object_is_listed_once(tmp_path):
    """Small data is hashed in the background and deduplicated by its bytes among
    small data; when it equals a metadata object (here an EA blob written later),
    the image must still list that object once and the file must read back."""
    ea = L.ea_blob([(b"SAME", b"e" * 60)])
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("data", data=ea)                                   # small data first
        w.add_file("meta", FileInfo(extended_attributes=ea), data=b"m")  # then the same bytes as an EA
        w.add_file("data2", data=ea)                                  # and again as data
    path = tmp_path / "t.cim"
    assert_sound(path)  # includes: no ID twice in an objectid file
    lay = L.Layout(path)
    ids = [(e[0], e[1]) for reg in lay.objectids for e in reg.entries]
    assert ids.count((len(ea), L.object_digest(ea))) == 1
    with cimfs.open(path) as img:
        assert img.read_bytes("data") == img.read_bytes("data2") == ea
        assert img.extended_attributes("meta") == ea


def test_links_table_equal_to_a_directory_table_is_listed_once(tmp_path):
    """A file's own links table (parent id, name) is hashed in the background; in
    a chain a\a\a a directory's table {name: child} can hold the same bytes."""
    name = "long-name"  # tables longer than 24 bytes (shorter objects are their own IDs)
    with cimfs.create(tmp_path, "t.cim") as w:
        p = name
        w.add_directory(p)
        for _ in range(6):
            p += "\\" + name
            w.add_directory(p)
        w.add_file(p + "\\leaf", data=b"x")
    path = tmp_path / "t.cim"
    assert_sound(path)
    with cimfs.open(path) as img:
        assert img.read_bytes(p + "\\leaf") == b"x"


def _write_mixed(directory):
    """A tree with small, large and duplicate content; returns {name: bytes}."""
    big = [blob(10 + i, 700_000 + 4097 * i) for i in range(6)]
    with cimfs.create(directory, "t.cim", region_set=GUID) as w:
        w.add_directory("d", FileInfo(security_descriptor=L.security_descriptor(7), last_write_time=5))
        for i in range(40):
            w.add_file(f"d\\small{i}", FileInfo(creation_time=i), data=blob(i % 9, 50 + 97 * i))
        for i, b in enumerate(big + big[::2]):  # large files, several duplicated
            w.add_file(f"big{i}", data=b)
            if i % 3 == 0:
                w.add_stream(f"big{i}:s", data=b[:5000])
        w.add_link("big0", "d\\big0-link")
        w.add_file("chunked", size=3 * len(big[1]))
        for _ in range(3):
            w.write(big[1])
    return {n: (directory / n).read_bytes() for n in os.listdir(directory)}


def test_same_input_gives_identical_bytes(tmp_path):
    runs = []
    for r in range(3):
        (tmp_path / str(r)).mkdir()
        runs.append(_write_mixed(tmp_path / str(r)))
    one = runs[0]
    assert sorted(one) == sorted(["t.cim"] + [f"{k}_{GUID}_{i}" for k in ("region", "objectid") for i in range(3)])
    for other in runs[1:]:
        assert sorted(other) == sorted(one)
        for name in one:
            assert one[name] == other[name], f"{name} differs between two runs"
    assert_sound(tmp_path / "0" / "t.cim")


def test_same_bytes_whatever_the_writing_pattern(tmp_path):
    """Data given whole, in chunks of odd sizes or from a file object: the same image."""
    import io
    data = [blob(i, n) for i, n in enumerate([5, 4095, 4096, 200_000, 1_000_003])]
    outputs = []
    for how in ("whole", "chunks", "source"):
        d = tmp_path / how
        d.mkdir()
        with cimfs.create(d, "t.cim", region_set=GUID) as w:
            for i, b in enumerate(data):
                if how == "whole":
                    w.add_file(f"f{i}", data=b)
                elif how == "source":
                    w.add_file(f"f{i}", size=len(b), source=io.BufferedReader(io.BytesIO(b)))
                else:
                    w.add_file(f"f{i}", size=len(b))
                    for k in range(0, len(b), 7777):
                        w.write(memoryview(b)[k: k + 7777])
        outputs.append({n: (d / n).read_bytes() for n in os.listdir(d)})
    assert outputs[0] == outputs[1] == outputs[2]


def test_non_adjacent_large_duplicates_leave_no_holes(tmp_path):
    A, B, C, D = (blob(s, n) for s, n in [(1, 100_000), (2, 70_001), (3, 4096 * 20), (4, 65_536)])
    order = [("a1", A), ("b1", B), ("a2", A), ("c", C), ("b2", B), ("small", b"s" * 100), ("d", D), ("a3", A)]
    with cimfs.create(tmp_path, "t.cim") as w:
        for name, data in order:
            w.add_file(name, data=data)
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    page = region_index(lay, L.REGION_PAGE_DATA)
    uniques = [A, B, C, D]
    # no holes: the unique objects back to back (page-aligned), in first-write order
    expect_len = 4096 + sum(round_up(len(u), 4096) for u in uniques)
    assert len(lay.regions[page]) == expect_len
    offsets = sorted(off for _, _, off in lay.objectids[page].entries)
    assert len(offsets) == 4
    cursor = 4096
    for u, off in zip(uniques, offsets):
        assert off == cursor and lay.regions[page][off: off + len(u)] == u
        cursor += round_up(len(u), 4096)
    with cimfs.open(path) as img:
        for name, data in order:
            assert img.read_bytes(name) == data
        assert img.verify() == []


def test_dedup_after_remove_keeps_the_surviving_copy(tmp_path):
    """A removed file's data may be shared by a later file; that file must still read right."""
    A = blob(9, 90_000)
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("gone", data=A)
        w.remove("gone")
        w.add_file("kept", data=A)
        w.add_file("x", data=blob(8, 90_000))
    path = tmp_path / "t.cim"
    assert_sound(path)
    with cimfs.open(path) as img:
        assert img.listdir() == ["kept", "x"]
        assert img.read_bytes("kept") == A


def test_aborted_large_file_between_duplicates(tmp_path):
    A, C = blob(21, 120_000), blob(22, 50_000)
    with cimfs.create(tmp_path, "t.cim") as w:
        w.add_file("a1", data=A)
        w.add_file("short", size=200_000)
        w.write(blob(23, 100_000))
        with pytest.raises(cimfs.PathError):
            w.close_stream()
        w.add_file("c", data=C)
        w.add_file("a2", data=A)
    path = tmp_path / "t.cim"
    assert_sound(path)
    lay = L.Layout(path)
    page = region_index(lay, L.REGION_PAGE_DATA)
    assert len(lay.regions[page]) == 4096 + round_up(len(A), 4096) + round_up(len(C), 4096)
    with cimfs.open(path) as img:
        assert img.listdir() == ["a1", "a2", "c"]
        assert img.read_bytes("a2") == A and img.read_bytes("c") == C
