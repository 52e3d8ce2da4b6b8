// libFuzzer harness over the portable reader (cimfs::Image).
//
// The reader opens images from files, so an input is a small container of files
// (the format is described in tests/should_fail/README.md; fuzz/make_seeds.py
// writes it and tests/test_should_fail.py reads it):
//
//   input  := record*
//   record := op:u8  length:u32le  payload[length]   (the last record may be short)
//   op & 3:   0  start the next file, then append the payload to it
//             1  append the payload to the current file
//             2  append the standard 131072-byte upcase table, then the payload
//             3  same as 1
//
// File 0 is the header (image.cim). The following files are the region files in
// RegionOffset index order (each parent's region set as listed in the header,
// then the image's own set), named region_<guid>_<i> as the header asks; after
// them come the own set's objectid_<guid>_<i> files. Missing files stay missing.
//
// The harness opens the image and then does everything a user can: walks the tree
// from the root (visited set, caps), stats every file, reads every default and
// alternate stream (whole, in chunks, and at odd offsets), reads SD/EA/reparse
// blobs and links, looks paths up again by name, and runs verify(). A cimfs::Error
// is an acceptable outcome; anything else (a crash, a sanitizer report, another
// exception type escaping, an error without the image name, a read that returns
// more than asked, a hang or a large allocation) is a bug.
//
// CIMFS_FUZZ_STRICT=1 adds one more rule: when verify() reports no problem, no
// operation of the walk may fail with corrupt_image (verify must see all damage
// the reader can trip over).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "cimfs/error.hpp"
#include "cimfs/format.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/reader.hpp"
#include "cimfs/upcase.hpp"
#include "fuzz_support.hpp"

using namespace cimfs;
using cimfs_fuzz::fail;

namespace {

constexpr std::size_t kMaxFiles = 64;
constexpr std::size_t kMaxVisited = 512;         // files visited by the walk
constexpr std::size_t kMaxEntries = 1 << 16;     // directory entries looked at
constexpr std::uint64_t kMaxReadPerStream = 1 << 20;
constexpr std::size_t kMaxLookups = 512;
constexpr std::size_t kGuard = 64;

bool g_strict = false;

std::string g_upcase_bytes;  // the standard table, little-endian

struct Files {
    std::vector<std::string> files;
};

Files unpack(const std::uint8_t* data, std::size_t size) {
    Files out;
    std::size_t pos = 0;
    while (pos < size) {
        std::uint8_t op = data[pos++];
        std::uint32_t len = 0;
        for (int i = 0; i < 4 && pos < size; ++i) len |= std::uint32_t(data[pos++]) << (8 * i);
        std::size_t n = std::min<std::size_t>(len, size - pos);
        if ((op & 3) == 0 || out.files.empty()) {
            if (out.files.size() >= kMaxFiles) break;
            out.files.emplace_back();
        }
        std::string& f = out.files.back();
        if ((op & 3) == 2) f += g_upcase_bytes;
        f.append(reinterpret_cast<const char*>(data + pos), n);
        pos += n;
    }
    return out;
}

// Names the header asks for, in RegionOffset order, then the own objectid files.
// Parsed here independently of the reader (only what naming needs).
std::vector<std::string> file_names(const std::string& header, std::size_t nfiles) {
    std::vector<std::string> names{"image.cim"};
    if (header.size() < format::kFilesystemHeaderSize) return names;
    auto p = reinterpret_cast<const unsigned char*>(header.data());
    std::vector<format::RegionSet> sets;
    std::uint16_t parents = format::ld16(p + 70);
    for (unsigned i = 0; i < parents; ++i) {
        std::size_t at = format::kFilesystemHeaderSize + std::size_t(i) * format::kRegionSetSize;
        if (at + format::kRegionSetSize > header.size()) break;
        sets.push_back(format::decode_region_set(p + at));
    }
    format::RegionSet own = format::decode_region_set(p + 32);
    sets.push_back(own);
    for (const auto& s : sets)
        for (unsigned i = 0; i < s.count && names.size() < nfiles; ++i)
            names.push_back("region_" + s.guid.to_string() + "_" + std::to_string(i));
    for (unsigned i = 0; i < own.count && names.size() < nfiles; ++i)
        names.push_back("objectid_" + own.guid.to_string() + "_" + std::to_string(i));
    return names;
}

struct Walker {
    const Image& img;
    const std::string& path;
    std::uint64_t image_bytes = 0;  // all files written for this input
    bool corrupt_seen = false;
    std::vector<unsigned char> buf = std::vector<unsigned char>(8192);

    template <class F>
    bool attempt(F&& f) {
        try {
            f();
            return true;
        } catch (const Error& e) {
            cimfs_fuzz::check_error(e, path);
            if (e.code == Errc::corrupt_image) corrupt_seen = true;
            return false;
        }
    }

    void read_checked(const StreamHandle& h, std::uint64_t off, std::size_t n) {
        std::size_t want = off >= h.size ? 0 : static_cast<std::size_t>(std::min<std::uint64_t>(n, h.size - off));
        // guard bytes after the requested range: the reader must not write past n
        static const std::vector<unsigned char> guard(kGuard, 0xA5);
        std::memcpy(buf.data() + n, guard.data(), kGuard);
        std::size_t got = img.read(h, off, buf.data(), n);
        if (got != want)
            fail("read at " + std::to_string(off) + " of " + std::to_string(n) + " returned " + std::to_string(got) +
                 ", expected " + std::to_string(want) + " (stream size " + std::to_string(h.size) + ")");
        if (std::memcmp(buf.data() + n, guard.data(), kGuard) != 0) fail("read wrote past the requested length");
    }

    // A stream that is neither sparse nor empty reads stored bytes: its size cannot
    // exceed what the image holds (callers size buffers by it, as Python's read_bytes does).
    void check_backed(const StreamHandle& h) {
        if (!h.stream.sparse && h.stream.data && h.size > image_bytes)
            fail("stream handle of " + std::to_string(h.size) + " bytes from an image of " +
                 std::to_string(image_bytes) + " bytes");
    }

    void read_stream(const StreamHandle& h) {
        // whole stream (capped) in chunks
        std::uint64_t end = std::min<std::uint64_t>(h.size, kMaxReadPerStream);
        if (!attempt([&] {
                for (std::uint64_t o = 0; o < end; o += 4096) read_checked(h, o, 4096);
            }))
            return;
        // odd offsets and lengths, the end, and past the end
        const std::uint64_t s = h.size;
        const std::uint64_t offs[] = {1, 7, s / 2 + 3, s > 13 ? s - 13 : 0, s > 0 ? s - 1 : 0, s, s + 1,
                                      s + 4096, ~std::uint64_t(0) - 3};
        for (std::uint64_t o : offs) attempt([&] { read_checked(h, o, 13); });
        attempt([&] { read_checked(h, 4095, 4097); });
        attempt([&] { read_checked(h, 0, 0); });
    }

    void visit_file(std::uint32_t id, const FileStat* st) {
        attempt([&] { img.security_descriptor(id); });
        attempt([&] {
            Bytes ea = img.extended_attributes(id);
            if (st && !ea.empty() && ea.size() != st->ea_length) fail("EA blob size differs from stat().ea_length");
        });
        attempt([&] { img.reparse_data(id); });
        attempt([&] { img.links(id); });
        attempt([&] { img.record(id); });  // raw access (forks, tools)
        attempt([&] { img.stream_table(id); });
        if (!st || !st->is_directory) {
            attempt([&] {
                StreamHandle h = img.default_stream(id);
                if (st && h.size != st->size) fail("default stream size differs from stat().size");
                check_backed(h);
                read_stream(h);
            });
        }
        std::vector<StreamInfo> streams;
        attempt([&] { streams = img.alternate_streams(id); });
        std::size_t k = 0;
        for (const auto& si : streams) {
            if (++k > 64) break;
            attempt([&] {
                StreamHandle h = img.alternate_stream(id, si.name);
                check_backed(h);
                read_stream(h);
            });
        }
        attempt([&] { img.alternate_stream(id, u"no such stream"); });
    }

    void walk() {
        ImageInfo info;
        if (!attempt([&] { info = img.info(); })) return;
        struct Item {
            std::uint32_t id;
            std::u16string path;
        };
        std::deque<Item> queue{{info.root_id, u""}};
        std::unordered_set<std::uint32_t> visited{info.root_id};
        std::size_t entries = 0, lookups = 0;
        while (!queue.empty()) {
            Item it = queue.front();
            queue.pop_front();
            FileStat st;
            bool have_stat = attempt([&] { st = img.stat(it.id); });
            visit_file(it.id, have_stat ? &st : nullptr);
            std::vector<DirEntry> children;
            if (!attempt([&] { children = img.list_directory(it.id); })) continue;
            for (const auto& c : children) {
                if (++entries > kMaxEntries) return;
                std::u16string cpath = it.path.empty() ? c.name : it.path + u"\\" + c.name;
                // the name found by listing must look up to the same file (when the
                // name is a valid path component at all)
                if (lookups < kMaxLookups && cpath.size() <= format::kMaxPathUnits) {
                    ++lookups;
                    attempt([&] {
                        std::uint32_t got = img.lookup(cpath);
                        (void)got;  // duplicates / unsorted tables may resolve elsewhere
                    });
                    std::u16string upper = upcase(cpath, windows_upcase_table());
                    attempt([&] { img.lookup(upper); });
                }
                if (visited.size() < kMaxVisited && visited.insert(c.file_id).second)
                    queue.push_back({c.file_id, cpath});
            }
        }
        // ids nobody links to, a few beyond the end, and id 0 (corrupt_image for an id
        // that does not exist says nothing about the image: not counted in strict mode)
        const bool corrupt_before = corrupt_seen;
        for (std::uint32_t id : {0u, 1u, 2u, info.file_count, info.file_count + 1, 0xFFFFFFFFu}) {
            if (visited.count(id)) continue;
            attempt([&] { img.stat(id); });
            attempt([&] { img.list_directory(id); });
            visit_file(id, nullptr);
        }
        corrupt_seen = corrupt_before;
        attempt([&] { img.lookup(u"no\\such\\path"); });
    }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const std::uint16_t* t = windows_upcase_table();
    g_upcase_bytes.resize(format::kUpcaseTableSize);
    for (std::uint32_t c = 0; c < format::kUpcaseTableEntries; ++c) {
        g_upcase_bytes[2 * c] = static_cast<char>(t[c] & 0xff);
        g_upcase_bytes[2 * c + 1] = static_cast<char>(t[c] >> 8);
    }
    const char* s = std::getenv("CIMFS_FUZZ_STRICT");
    g_strict = s && *s && *s != '0';
    cimfs_fuzz::scratch_dir();
    std::atexit(cimfs_fuzz::remove_scratch_dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Files in = unpack(data, size);
    if (in.files.empty()) return 0;
    const std::string& dir = cimfs_fuzz::scratch_dir();
    cimfs_fuzz::clear_dir(dir);
    std::vector<std::string> names = file_names(in.files[0], in.files.size());
    for (std::size_t i = 0; i < names.size() && i < in.files.size(); ++i)
        cimfs_fuzz::write_file(dir + "/" + names[i], reinterpret_cast<const unsigned char*>(in.files[i].data()),
                               in.files[i].size());
    const std::string header = dir + "/image.cim";
    std::uint64_t image_bytes = 0;
    for (const auto& f : in.files) image_bytes += f.size();

    std::unique_ptr<Image> img;
    try {
        img = Image::open(header);
    } catch (const Error& e) {
        cimfs_fuzz::check_error(e, header);
        return 0;
    }
    Walker w{*img, header, image_bytes};
    std::vector<std::string> problems;
    bool verified = w.attempt([&] { problems = img->verify(); });
    for (const auto& p : problems)
        if (p.empty()) fail("verify() reported an empty problem");
    w.corrupt_seen = false;
    w.walk();
    if (g_strict && verified && problems.empty() && w.corrupt_seen)
        fail("verify() found no problem, but reading the image failed with corrupt_image");
    return 0;
}
