// libFuzzer harness over the portable writer: random UTF-16 paths, stream names,
// metadata blobs and operation orders. Every operation may fail with a
// cimfs::Error (bad path, missing parent, short stream, ...); nothing may crash,
// and whatever commits must read back clean: verify() finds no problem and every
// file, directory and stream can be listed, stat'ed and read.
//
// Input: byte 0 picks the format (bit 0: 2.0 / 3.0); then operations, each an
// opcode byte followed by its arguments drawn from the input (see Ops below).
// Opcode 8 commits the image and starts a fork of it (at most 3 generations), so
// the parent-loading code of the writer is exercised too.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cimfs/error.hpp"
#include "cimfs/format.hpp"
#include "cimfs/metadata.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/reader.hpp"
#include "cimfs/upcase.hpp"
#include "cimfs/writer.hpp"
#include "fuzz_support.hpp"

using namespace cimfs;
using cimfs_fuzz::fail;

namespace {

struct Input {
    const std::uint8_t* p;
    std::size_t n, pos = 0;
    bool empty() const { return pos >= n; }
    std::uint8_t u8() { return pos < n ? p[pos++] : 0; }
    std::uint16_t u16() { return std::uint16_t(u8() | (u8() << 8)); }
    std::string bytes(std::size_t k) {
        k = std::min(k, n - std::min(pos, n));
        std::string s(reinterpret_cast<const char*>(p + pos), k);
        pos += k;
        return s;
    }
};

// Code units that matter for names: separators, stream colons, dots, case pairs
// that Windows' upcase table treats specially, surrogates, NUL and the extremes.
const char16_t kAlphabet[] = {
    u'a', u'A', u'b', u'B', u'z', u'\\', u'/', u':', u'.', u' ', u'$', u'D', u'~', u'1',
    0x00B5, 0x039C, 0x0131, 0x0049, 0x0069, 0x017F, 0x0053, 0x00DF, 0x1F80, 0x1F88,
    0x01C5, 0x01C4, 0xD800, 0xDC00, 0xDBFF, 0xDFFF, 0x0000, 0xFFFF, 0xE000, 0x00E9, 0x00C9,
};
constexpr std::size_t kAlphabetSize = sizeof kAlphabet / sizeof kAlphabet[0];

std::u16string make_name(Input& in, std::size_t max_len) {
    std::size_t len = in.u8() % (max_len + 1);
    std::u16string s;
    for (std::size_t i = 0; i < len && !in.empty(); ++i) {
        std::uint8_t b = in.u8();
        if (b >= 0xF0) s.push_back(static_cast<char16_t>(in.u16()));
        else if (b >= 0xE0) s.append(std::size_t(b - 0xDF) * 16, u'x');  // long names (limits)
        else s.push_back(kAlphabet[b % kAlphabetSize]);
    }
    return s;
}

// Mostly paths built from a few short components (so that names collide and
// parents exist), sometimes raw unit soup.
std::u16string make_path(Input& in) {
    std::uint8_t shape = in.u8();
    if (shape & 0x80) return make_name(in, 40);
    std::size_t comps = 1 + (shape & 3);
    std::u16string p;
    for (std::size_t i = 0; i < comps; ++i) {
        if (i) p += u'\\';
        p += make_name(in, 4);
    }
    return p;
}

Bytes symlink_reparse(const std::u16string& target) {
    // REPARSE_DATA_BUFFER, IO_REPARSE_TAG_SYMLINK, relative
    Bytes names;
    for (int twice = 0; twice < 2; ++twice)
        for (char16_t c : target) names += static_cast<char>(c & 0xff), names += static_cast<char>(c >> 8);
    std::uint16_t nbytes = static_cast<std::uint16_t>(target.size() * 2);
    Bytes b(20, '\0');
    auto put16 = [&](std::size_t at, std::uint16_t v) { b[at] = char(v & 0xff); b[at + 1] = char(v >> 8); };
    b[0] = char(0x0C); b[1] = 0; b[2] = 0; b[3] = char(0xA0);
    put16(4, static_cast<std::uint16_t>(12 + names.size()));
    put16(8, 0);            // substitute name offset
    put16(10, nbytes);      // substitute name length
    put16(12, nbytes);      // print name offset
    put16(14, nbytes);      // print name length
    b[16] = 1;              // SYMLINK_FLAG_RELATIVE
    return b + names;
}

Bytes one_ea(const std::string& name, const std::string& value) {
    Bytes b(8, '\0');
    b[5] = static_cast<char>(name.size());
    b[6] = static_cast<char>(value.size() & 0xff);
    b[7] = static_cast<char>(value.size() >> 8);
    b += name;
    b += '\0';
    b += value;
    while (b.size() % 4) b += '\0';
    return b;
}

FileMetadata make_meta(Input& in, bool directory) {
    FileMetadata m;
    std::uint8_t f = in.u8();
    m.attributes = (directory ? format::kAttrDirectory : 0) |
                   ((f & 1) ? format::kAttrReadOnly : 0) | ((f & 2) ? format::kAttrHidden : 0) |
                   ((f & 4) ? format::kAttrArchive : 0) | ((f & 8) ? format::kAttrSparseFile : 0);
    m.times.creation = std::uint64_t(in.u16()) << 40;
    m.times.last_write = m.times.creation + in.u8();
    if (f & 0x10) m.reparse_data = symlink_reparse(make_name(in, 8));
    if (f & 0x20) m.extended_attributes = one_ea("USER.X", std::string(in.u8(), 'v'));
    if (f & 0x40) m.security_descriptor = null_dacl_security_descriptor();
    if (f & 0x80) {
        // raw blobs straight from the input: the writer must validate them
        std::uint8_t which = in.u8();
        Bytes raw = in.bytes(in.u8());
        if (which % 3 == 0) m.security_descriptor = raw;
        else if (which % 3 == 1) m.extended_attributes = raw;
        else m.reparse_data = raw;
    }
    return m;
}

std::string pattern(std::size_t n, std::uint8_t seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 31 + (i >> 8));
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    cimfs_fuzz::scratch_dir();
    std::atexit(cimfs_fuzz::remove_scratch_dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string& dir = cimfs_fuzz::scratch_dir();
    cimfs_fuzz::clear_dir(dir);
    Input in{data, size};
    CreateOptions opt;
    opt.directory = dir;
    opt.name = "w0.cim";
    opt.format_major = (in.u8() & 1) ? 2 : 3;
    int generation = 0;
    std::unique_ptr<ImageWriter> w;
    try {
        w = create_portable_writer(opt);
    } catch (const Error& e) {
        fail(std::string("creating a writer failed: ") + e.what());
    }
    std::string image = w->image_path();
    auto attempt = [&](auto&& f) {
        try {
            f();
            return true;
        } catch (const Error& e) {
            cimfs_fuzz::check_error(e, image);
            if (e.code == Errc::corrupt_image) fail(std::string("the writer reports a corrupt image: ") + e.what());
            return false;
        }
    };
    int ops = 0;
    while (!in.empty() && ++ops < 200) {
        std::uint8_t op = in.u8() % 10;
        switch (op) {
            case 0: {  // small file, written in full or not
                std::u16string p = make_path(in);
                FileMetadata m = make_meta(in, false);
                std::uint8_t n = in.u8();
                m.size = n;
                if (attempt([&] { w->add_file(p, m); }) && n) {
                    std::size_t k = (in.u8() & 1) ? n : n / 2;
                    std::string d = pattern(k, n);
                    attempt([&] { w->write(d.data(), d.size()); });
                }
                break;
            }
            case 1: {  // directory (or the root's metadata, with an empty path)
                std::u16string p = make_path(in);
                FileMetadata m = make_meta(in, true);
                attempt([&] { w->add_file(p, m); });
                break;
            }
            case 2: {  // alternate stream "file:stream"
                std::u16string p = make_path(in);
                p += u':';
                p += make_name(in, 6);
                if (in.u8() & 1) p += u":$DATA";
                std::uint16_t n = in.u8();
                if (attempt([&] { w->add_alternate_stream(p, n); }) && n) {
                    std::string d = pattern(n, 7);
                    attempt([&] { w->write(d.data(), d.size()); });
                }
                break;
            }
            case 3: {
                std::u16string a = make_path(in), b = make_path(in);
                attempt([&] { w->add_hard_link(a, b); });
                break;
            }
            case 4: {
                std::u16string p = make_path(in);
                attempt([&] { w->remove(p); });
                break;
            }
            case 5: {  // stray write: more than declared, or with no stream open
                std::string d = pattern(in.u8(), 3);
                attempt([&] { w->write(d.data(), d.size()); });
                break;
            }
            case 6:
                attempt([&] { w->close_stream(); });
                break;
            case 7: {  // a large file: page-aligned data region
                std::u16string p = make_path(in);
                FileMetadata m = make_meta(in, false);
                m.size = 4096 + std::size_t(in.u16()) % 20000;
                if (attempt([&] { w->add_file(p, m); })) {
                    std::string d = pattern(static_cast<std::size_t>(m.size), 11);
                    attempt([&] { w->write(d.data(), d.size()); });
                }
                break;
            }
            case 8: {  // commit, then fork the committed image
                if (generation >= 3) break;
                bool ok = attempt([&] { w->commit(); });
                std::string committed = w->image_path();
                attempt([&] { w->close(); });
                if (!ok) return 0;
                cimfs_fuzz::check_committed(committed);
                CreateOptions f = opt;
                f.parent = opt.name;
                f.name = "w" + std::to_string(++generation) + ".cim";
                opt = f;
                try {
                    w = create_portable_writer(f);
                } catch (const Error& e) {
                    fail(std::string("forking a committed image failed: ") + e.what());
                }
                image = w->image_path();
                break;
            }
            default: {  // add_file with the same path twice, differing in kind / case
                std::u16string p = make_path(in);
                FileMetadata m = make_meta(in, in.u8() & 1);
                attempt([&] { w->add_file(p, m); });
                std::u16string q = upcase(p, windows_upcase_table());
                attempt([&] { w->add_file(q, m); });
                break;
            }
        }
    }
    bool ok = attempt([&] { w->commit(); });
    std::string committed = w->image_path();
    attempt([&] { w->close(); });
    if (ok) cimfs_fuzz::check_committed(committed);
    return 0;
}
