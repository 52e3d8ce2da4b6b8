"""The file container the reader fuzzer (fuzz/fuzz_reader.cpp) takes as input.

One fuzzer input holds the files of one image (format: tests/should_fail/README.md):

    input  := record*
    record := op:u8  length:u32le  payload[length]   (the last record may be short)
    op & 3:   0  start the next file, then append the payload to it
              1  append the payload to the current file
              2  append the standard 131072-byte upcase table, then the payload
              3  same as 1

File 0 is the header; then the region files in RegionOffset order (parents' region
sets as the header lists them, then the own set), then the own set's objectid
files. ``pack`` writes it (fuzz/make_seeds.py), ``unpack_to`` turns it back into an
image directory (tests/test_should_fail.py); both mirror the C++ harness.
"""

from __future__ import annotations

import pathlib
import struct
import uuid
from typing import List, Optional, Sequence

HEADER_NAME = "image.cim"
UPCASE_SIZE = 131072
MAX_FILES = 64


def guid_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=bytes(raw)))


def _record(op: int, payload: bytes) -> bytes:
    return bytes([op]) + struct.pack("<I", len(payload)) + payload


def pack(files: Sequence[bytes], upcase: Optional[bytes] = None) -> bytes:
    """Container of ``files`` (header first). Where a file holds ``upcase`` (the
    standard table), the table is replaced by an op-2 record."""
    out = bytearray()
    for data in files:
        at = data.find(upcase) if upcase else -1
        if at < 0:
            out += _record(0, data)
        else:
            out += _record(0, data[:at])
            out += _record(2, data[at + len(upcase):])
    return bytes(out)


def unpack(blob: bytes, upcase: bytes) -> List[bytes]:
    files: List[bytearray] = []
    pos = 0
    while pos < len(blob):
        op = blob[pos]
        pos += 1
        length = int.from_bytes(blob[pos:pos + 4], "little")
        pos = min(pos + 4, len(blob))
        payload = blob[pos:pos + length]
        pos += len(payload)
        if (op & 3) == 0 or not files:
            if len(files) >= MAX_FILES:
                break
            files.append(bytearray())
        if (op & 3) == 2:
            files[-1] += upcase
        files[-1] += payload
    return [bytes(f) for f in files]


def file_names(header: bytes, nfiles: int) -> List[str]:
    """Names the header asks for: header, region files (parents' sets first), own objectid files."""
    names = [HEADER_NAME]
    if len(header) < 72:
        return names
    parents = int.from_bytes(header[70:72], "little")
    sets = []
    for i in range(parents):
        at = 72 + 24 * i
        if at + 24 > len(header):
            break
        sets.append(header[at:at + 24])
    own = header[32:56]
    sets.append(own)
    for s in sets:
        count = int.from_bytes(s[16:18], "little")
        for i in range(count):
            if len(names) >= nfiles:
                break
            names.append(f"region_{guid_text(s[:16])}_{i}")
    for i in range(int.from_bytes(own[16:18], "little")):
        if len(names) >= nfiles:
            break
        names.append(f"objectid_{guid_text(own[:16])}_{i}")
    return names


def unpack_to(blob: bytes, directory: pathlib.Path, upcase: bytes) -> pathlib.Path:
    """Write the image held in ``blob`` into ``directory``; returns the header path."""
    files = unpack(blob, upcase)
    if not files:
        files = [b""]
    names = file_names(files[0], len(files))
    for name, data in zip(names, files):
        (directory / name).write_bytes(data)
    return directory / HEADER_NAME


def image_files(header_path: pathlib.Path) -> List[bytes]:
    """The files of an image on disk, in container order (objectid files if present)."""
    header = header_path.read_bytes()
    d = header_path.parent
    names = file_names(header, 1 << 20)
    files = [header]
    for name in names[1:]:
        p = d / name
        if not p.exists():
            if name.startswith("objectid_"):
                break
            raise FileNotFoundError(p)
        files.append(p.read_bytes())
    return files


def upcase_from_fixture(fixture_dir: pathlib.Path) -> bytes:
    """The standard upcase table, as Windows wrote it into the fixture (metadata offset 0x5b0)."""
    region = next(fixture_dir.glob("region_*_0")).read_bytes()
    table = region[0x5B0:0x5B0 + UPCASE_SIZE]
    assert len(table) == UPCASE_SIZE and table[0x61 * 2:0x61 * 2 + 2] == b"A\x00"
    return table
