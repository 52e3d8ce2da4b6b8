#!/usr/bin/env python3
"""List the delay-load imports of a PE image (.exe / .dll): one line per DLL,
"<dll>: <function> <function> ...", sorted by DLL name.

Used by .ci/cross-windows.sh to check that cimfs_selftest.exe delay-loads
cimfs.dll. binutils 2.40's objdump -p does not print delay imports, and GNU ld
does not fill the PE delay-import data directory (entry 13) for delay-import
libraries made by dlltool, so the descriptors are found either through that
directory (MSVC link, lld, a future ld) or, failing that, through dlltool's
__DELAY_IMPORT_DESCRIPTOR_* symbols in the COFF symbol table.

Usage: pe_delay_imports.py IMAGE
Exit status: 0 when it could read the image (even with no delay imports), 2 otherwise.
"""
import struct
import sys

DESCRIPTOR_SIZE = 32  # ImgDelayDescr: 8 DWORDs


class Image:
    def __init__(self, data):
        self.data = data
        if data[:2] != b"MZ":
            raise ValueError("not an MZ/PE image")
        pe = struct.unpack_from("<I", data, 0x3C)[0]
        if data[pe:pe + 4] != b"PE\0\0":
            raise ValueError("no PE signature")
        coff = pe + 4
        (_, nsections, _, self.symtab, self.nsymbols, opt_size, _) = struct.unpack_from("<HHIIIHH", data, coff)
        opt = coff + 20
        magic = struct.unpack_from("<H", data, opt)[0]
        if magic == 0x20B:  # PE32+
            self.pe32plus = True
            ndirs = struct.unpack_from("<I", data, opt + 108)[0]
            dirs = opt + 112
        elif magic == 0x10B:  # PE32
            self.pe32plus = False
            ndirs = struct.unpack_from("<I", data, opt + 92)[0]
            dirs = opt + 96
        else:
            raise ValueError("unknown optional header magic 0x%x" % magic)
        self.dirs = [struct.unpack_from("<II", data, dirs + 8 * i) for i in range(ndirs)]
        self.sections = []
        for i in range(nsections):
            off = opt + opt_size + 40 * i
            vsize, va, raw_size, raw_ptr = struct.unpack_from("<IIII", data, off + 8)
            self.sections.append((va, max(vsize, raw_size), raw_ptr, raw_size))

    def offset(self, rva):
        for va, size, raw_ptr, raw_size in self.sections:
            if va <= rva < va + size:
                if rva - va >= raw_size:
                    raise ValueError("RVA 0x%x is in uninitialised data" % rva)
                return raw_ptr + (rva - va)
        raise ValueError("RVA 0x%x is in no section" % rva)

    def cstring(self, rva):
        off = self.offset(rva)
        end = self.data.index(b"\0", off)
        return self.data[off:end].decode("ascii", "replace")

    def descriptor(self, rva):
        return struct.unpack_from("<8I", self.data, self.offset(rva))

    def functions(self, int_rva):
        names = []
        size, ordinal_flag = (8, 1 << 63) if self.pe32plus else (4, 1 << 31)
        fmt = "<Q" if self.pe32plus else "<I"
        off = self.offset(int_rva)
        while True:
            thunk = struct.unpack_from(fmt, self.data, off)[0]
            if thunk == 0:
                return names
            if thunk & ordinal_flag:
                names.append("#%d" % (thunk & 0xFFFF))
            else:
                names.append(self.cstring((thunk & 0x7FFFFFFF) + 2))  # skip the hint
            off += size

    def descriptors_from_directory(self):
        if len(self.dirs) <= 13 or self.dirs[13][0] == 0:
            return None
        rva, out = self.dirs[13][0], []
        while True:
            d = self.descriptor(rva)
            if not any(d):
                return out
            out.append(d)
            rva += DESCRIPTOR_SIZE

    def descriptors_from_symbols(self):
        if not self.symtab or not self.nsymbols:
            return None
        strtab = self.symtab + 18 * self.nsymbols
        out, i = [], 0
        while i < self.nsymbols:
            off = self.symtab + 18 * i
            raw = self.data[off:off + 8]
            value, section, _, _, naux = struct.unpack_from("<IhHBB", self.data, off + 8)
            if raw[:4] == b"\0\0\0\0":
                name_off = strtab + struct.unpack_from("<I", raw, 4)[0]
                name = self.data[name_off:self.data.index(b"\0", name_off)].decode("ascii", "replace")
            else:
                name = raw.rstrip(b"\0").decode("ascii", "replace")
            if name.startswith("__DELAY_IMPORT_DESCRIPTOR_") and 0 < section <= len(self.sections):
                out.append(self.descriptor(self.sections[section - 1][0] + value))
            i += 1 + naux
        return out


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            image = Image(f.read())
        descriptors = image.descriptors_from_directory()
        source = "delay-import directory"
        if descriptors is None:
            descriptors = image.descriptors_from_symbols() or []
            source = "__DELAY_IMPORT_DESCRIPTOR_ symbols (the delay-import directory is empty)"
        print("# delay imports from the %s" % source)
        lines = []
        for attrs, name_rva, _, _, int_rva, _, _, _ in descriptors:
            if not attrs & 1:
                raise ValueError("a delay-import descriptor is not RVA-based")
            lines.append("%s: %s" % (image.cstring(name_rva), " ".join(image.functions(int_rva))))
        for line in sorted(lines, key=str.lower):
            print(line)
    except (OSError, ValueError, struct.error) as e:
        print("pe_delay_imports: %s: %s" % (argv[1], e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
