// libFuzzer harness over the layer tar importer (cimfs::layer::LayerImporter).
//
// The input is the tar itself (seeds: fuzz/corpus/layer/*.bin, written by
// fuzz/make_layer_seeds.py; each is a plain tar that `tar tvf` lists). Its last
// byte, which in a whole archive is end-of-archive padding the importer never
// reads, picks the setting:
//
//   bit 0     clear: the writer forks a small fixed parent image (made once at
//             start; it holds the paths the seeds use: Files\Windows\a.txt, ...),
//             so whiteouts, opaque directories and streams of parent files run
//             against something; set: no parent
//   bit 1     image format 2 (set) or 3 (clear); the parent is in the same format
//   bit 2     clear: the read function hands out varying small pieces (below);
//             set: every read fills the importer's buffer as far as it can
//   bit 3     set: import a second time the other way, and require the same
//             outcome: the same ImportError, or images equal byte for byte (a
//             differential check of the buffering, which no sanitizer sees
//             when it hands the writer wrong bytes)
//
// A hash of the whole input seeds the sizes the read function hands out: 1..16
// bytes, around a block (500..524), up to 4 KiB, or all that is left, so that
// header, PAX and data boundaries fall everywhere in the importer's buffer (its
// smallest, 32 KiB).
//
// Each input gets a fresh directory (with a copy of the parent's files). The
// import must end in success or a cimfs::layer::ImportError with a reason; a
// cimfs::Error escaping the importer is a bug (it wraps the writer's). After a
// success the image is committed, and it must open, pass verify() and read back
// completely (our own writer produced it: any problem is a real bug). After a
// failure the uncommitted writer must leave nothing behind. Anything else (a
// crash, a sanitizer report, another exception type, a hang, a large
// allocation) is a bug.
//
// Mutations: a tar header carries a checksum, so nearly every mutation of a
// header field would only reach the checksum test. The custom mutator below
// runs libFuzzer's own and then, in 7 of 8 cases, recomputes the checksum of
// every 512-byte-aligned block that carries the ustar magic, so the importer
// sees mutated names, types, sizes and link names; the corpus stays valid tars.
//
// CIMFS_FUZZ_VERBOSE=1 prints how each input was fed and how its import ended.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cimfs/error.hpp"
#include "cimfs/format.hpp"
#include "cimfs/layer_import.hpp"
#include "cimfs/metadata.hpp"
#include "cimfs/reader.hpp"
#include "cimfs/writer.hpp"
#include "fuzz_support.hpp"

using namespace cimfs;
using cimfs_fuzz::fail;

namespace {

constexpr const char* kParentName = "parent.cim";
constexpr const char* kChildName = "layer.cim";

struct Parent {
    std::string dir;                 // master copy, never written after setup
    std::vector<std::string> files;  // its file names (header, region, objectid files)
    std::unique_ptr<Image> image;    // opened once; the importer only reads it
};
Parent g_parent[2];  // [0]: format 2, [1]: format 3
bool g_verbose = false;

std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

std::uint64_t splitmix(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

std::vector<std::string> list_dir(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string read_file(const std::string& path) {
    std::string out;
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
        char buf[65536];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
        std::fclose(f);
    } else {
        std::perror(path.c_str());
        std::abort();
    }
    return out;
}

void make_dir(const std::string& dir) {
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        std::perror(dir.c_str());
        std::abort();
    }
}

// A symlink reparse point (relative), as the importer writes them.
Bytes symlink_reparse(const std::u16string& target) {
    Bytes names;
    for (int twice = 0; twice < 2; ++twice)
        for (char16_t c : target) names += static_cast<char>(c & 0xff), names += static_cast<char>(c >> 8);
    auto nbytes = static_cast<std::uint16_t>(target.size() * 2);
    Bytes b(20, '\0');
    auto put16 = [&](std::size_t at, std::uint16_t v) {
        b[at] = static_cast<char>(v & 0xff);
        b[at + 1] = static_cast<char>(v >> 8);
    };
    b[0] = 0x0C;
    b[3] = static_cast<char>(0xA0);
    put16(4, static_cast<std::uint16_t>(12 + names.size()));
    put16(10, nbytes);
    put16(12, nbytes);
    put16(14, nbytes);
    b[16] = 1;
    return b + names;
}

// The fixed parent: what a base layer under the seeds' layers would hold.
void make_parent(Parent& p, std::uint32_t format_major) {
    p.dir = cimfs_fuzz::scratch_dir() + "/parent-v" + std::to_string(format_major);
    make_dir(p.dir);
    CreateOptions opt;
    opt.directory = p.dir;
    opt.name = kParentName;
    opt.format_major = format_major;
    format::Guid guid;  // a fixed GUID: the same files in every run
    for (std::size_t i = 0; i < guid.bytes.size(); ++i) guid.bytes[i] = static_cast<unsigned char>(0x11 * (i + 1) + format_major);
    opt.region_set = guid;
    try {
        std::unique_ptr<ImageWriter> w = create_portable_writer(opt);
        auto dir = [&](const std::u16string& path) {
            FileMetadata m;
            m.attributes = format::kAttrDirectory;
            m.security_descriptor = null_dacl_security_descriptor();
            w->add_file(path, m);
        };
        auto file = [&](const std::u16string& path, const std::string& data) {
            FileMetadata m;
            m.attributes = format::kAttrArchive;
            m.size = data.size();
            w->add_file(path, m);
            if (!data.empty()) w->write(data.data(), data.size());
        };
        dir(u"Files");
        dir(u"Files\\Windows");
        dir(u"Files\\Windows\\System32");
        dir(u"Files\\Empty");
        dir(u"Hives");
        file(u"Files\\Windows\\a.txt", "parent alpha\n");
        file(u"Files\\Windows\\b.txt", "parent beta\n");
        file(u"Files\\Windows\\System32\\k.dll", std::string(5000, 'k'));
        w->add_alternate_stream(u"Files\\Windows\\a.txt:Zone.Identifier", 5);
        w->write("zone\n", 5);
        w->add_hard_link(u"Files\\Windows\\a.txt", u"Files\\a-link.txt");
        FileMetadata s;
        s.attributes = format::kAttrReparsePoint;
        s.reparse_data = symlink_reparse(u"Windows\\b.txt");
        w->add_file(u"Files\\b.lnk", s);
        file(u"Hives\\Sam_Delta", "regf");
        file(u"top.txt", "");
        w->commit();
        w->close();
        p.image = Image::open(p.dir + "/" + kParentName);
    } catch (const Error& e) {
        fail(std::string("making the parent image failed: ") + e.what());
    }
    p.files = list_dir(p.dir);
    cimfs_fuzz::check_committed(p.dir + "/" + kParentName);
}

void remove_tree(const std::string& dir) {
    cimfs_fuzz::clear_dir(dir);
    rmdir(dir.c_str());
}

// Rewrite the checksum of each aligned block with the ustar magic ("ustar\0" or
// GNU's "ustar  "), as tar writes it: six octal digits, NUL, space.
void fix_checksums(std::uint8_t* data, std::size_t size) {
    for (std::size_t at = 0; at + 512 <= size; at += 512) {
        std::uint8_t* b = data + at;
        if (std::memcmp(b + 257, "ustar", 5) != 0) continue;
        std::memset(b + 148, ' ', 8);
        unsigned sum = 0;
        for (std::size_t i = 0; i < 512; ++i) sum += b[i];
        std::snprintf(reinterpret_cast<char*>(b + 148), 8, "%06o", sum & 0777777);
        b[155] = ' ';
    }
}

}  // namespace

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
    size = LLVMFuzzerMutate(data, size, max_size);
    if (seed % 8 != 0) fix_checksums(data, size);
    return size;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* v = std::getenv("CIMFS_FUZZ_VERBOSE");
    g_verbose = v && *v && *v != '0';
    cimfs_fuzz::scratch_dir();
    make_parent(g_parent[0], 2);
    make_parent(g_parent[1], 3);
    std::atexit([] {
        for (auto& p : g_parent) {
            p.image.reset();
            remove_tree(p.dir);
        }
        remove_tree(cimfs_fuzz::scratch_dir() + "/run");
        cimfs_fuzz::remove_scratch_dir();
    });
    return 0;
}

namespace {

// How one import ended: its error (empty after a success) and, when it
// committed, the image's files (name -> bytes).
struct Outcome {
    bool committed = false;
    std::string error;
    std::vector<std::pair<std::string, std::string>> files;
};

Outcome import_once(const std::uint8_t* data, std::size_t size, const std::string& dir, bool with_parent,
                    std::uint32_t format_major, bool whole, bool keep_files) {
    Parent& parent = g_parent[format_major == 3];
    std::uint64_t rng = fnv1a(data, size);
    Outcome out;

    // A fresh directory, holding a copy of the parent when there is one.
    remove_tree(dir);  // a crashed previous run leaves it behind
    make_dir(dir);
    std::vector<std::string> before;
    if (with_parent) {
        for (const std::string& f : parent.files) {
            std::string bytes = read_file(parent.dir + "/" + f);
            cimfs_fuzz::write_file(dir + "/" + f, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
        }
        before = parent.files;
    }

    CreateOptions opt;
    opt.directory = dir;
    opt.name = kChildName;
    opt.format_major = format_major;
    format::Guid guid;  // fixed, so that two imports of one tar can be compared byte for byte
    for (std::size_t i = 0; i < guid.bytes.size(); ++i) guid.bytes[i] = static_cast<unsigned char>(0xA0 + i);
    opt.region_set = guid;
    if (with_parent) opt.parent = kParentName;
    std::unique_ptr<ImageWriter> w;
    try {
        w = create_portable_writer(opt);
    } catch (const Error& e) {
        fail(std::string("creating the writer failed: ") + e.what());
    }
    const std::string image = w->image_path();

    std::size_t pos = 0;
    std::uint64_t reads = 0;
    layer::ReadFn read = [&](unsigned char* buf, std::size_t n) -> std::size_t {
        if (++reads > (std::uint64_t{1} << 24)) fail("the importer keeps reading past the end of its input");
        if (pos >= size || n == 0) return 0;
        std::uint64_t r = splitmix(rng);
        std::size_t k;
        switch (whole ? 3 : r & 3) {
            case 0: k = 1 + ((r >> 2) & 15); break;            // 1..16
            case 1: k = 500 + ((r >> 2) % 25); break;          // around a block
            case 2: k = 1 + ((r >> 2) & 4095); break;          // up to 4 KiB
            default: k = size - pos; break;                    // all that is left
        }
        k = std::min({k, n, size - pos});
        std::memcpy(buf, data + pos, k);
        pos += k;
        return k;
    };

    const char* how = with_parent ? (whole ? " +parent whole" : " +parent") : (whole ? " whole" : "");
    bool imported = false;
    {
        layer::LayerImporter importer(*w, with_parent ? parent.image.get() : nullptr, 0);
        importer.set_log([](const std::string& m) {
            if (m.empty()) fail("an empty log message");
        });
        try {
            importer.run(read);
            imported = true;
            if (g_verbose) {
                const layer::ImportStats& st = importer.stats();
                std::fprintf(stderr, "[v%u%s] imported: %llu entries, %llu files, %llu dirs (%llu implicit), "
                             "%llu links, %llu symlinks, %llu streams, %llu whiteouts, %llu bytes\n",
                             format_major, how, (unsigned long long)st.entries,
                             (unsigned long long)st.files, (unsigned long long)st.directories,
                             (unsigned long long)st.implicit_directories, (unsigned long long)st.links,
                             (unsigned long long)st.symlinks, (unsigned long long)st.streams,
                             (unsigned long long)st.whiteouts, (unsigned long long)st.bytes);
            }
        } catch (const layer::ImportError& e) {
            if (e.reason.empty() || std::string(e.what()).empty()) fail("an ImportError without a reason");
            out.error = "entry '" + e.entry + "' record '" + e.record + "': " + e.what();
            if (g_verbose) std::fprintf(stderr, "[v%u%s] ImportError: %s\n", format_major, how, out.error.c_str());
        } catch (const Error& e) {
            fail(std::string("a cimfs::Error escaped the importer: ") + e.what());
        }
    }

    if (imported) {
        try {
            w->commit();
            out.committed = true;
        } catch (const Error& e) {
            cimfs_fuzz::check_error(e, image);
            fail(std::string("commit after a successful import failed: ") + e.what());
        }
    }
    try {
        w->close();
    } catch (const Error& e) {
        cimfs_fuzz::check_error(e, image);
        fail(std::string("closing the writer failed: ") + e.what());
    }
    w.reset();

    if (out.committed) {
        cimfs_fuzz::check_committed(image);
        if (keep_files)
            for (const std::string& f : list_dir(dir)) out.files.emplace_back(f, read_file(dir + "/" + f));
    } else {
        std::vector<std::string> after = list_dir(dir);
        if (after != before) {
            std::string extra;
            for (const auto& f : after)
                if (!std::binary_search(before.begin(), before.end(), f)) extra += " " + f;
            fail("a failed import left files behind:" + (extra.empty() ? std::string(" (parent files missing)") : extra));
        }
    }
    remove_tree(dir);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t setting = data[size - 1];
    const bool with_parent = !(setting & 1);
    const std::uint32_t format_major = (setting & 2) ? 2 : 3;
    const bool whole = (setting & 4) != 0;
    const bool compare = (setting & 8) != 0;
    const std::string dir = cimfs_fuzz::scratch_dir() + "/run";
    Outcome a = import_once(data, size, dir, with_parent, format_major, whole, compare);
    if (compare) {
        // The same tar read the other way must end the same way and,
        // on success, give the same image byte for byte.
        Outcome b = import_once(data, size, dir, with_parent, format_major, !whole, true);
        if (a.committed != b.committed || a.error != b.error)
            fail("piecewise and whole reads disagree:\n  " + (a.committed ? std::string("ok") : a.error) + "\n  " +
                 (b.committed ? std::string("ok") : b.error));
        if (a.files.size() != b.files.size()) fail("piecewise and whole reads write different files");
        for (std::size_t i = 0; i < a.files.size(); ++i)
            if (a.files[i] != b.files[i]) fail("piecewise and whole reads write different bytes to " + a.files[i].first);
    }
    return 0;
}
