// cimfs_selftest: a small end-to-end check of the C++ core that needs neither
// Python nor a test framework, so that it also runs in a cross-compiled Windows
// build under Wine (.ci/cross-windows.sh).
//
// It writes an image with the portable writer (a directory, files with small and
// page-aligned data, a duplicate, an alternate data stream, a hard link), reads
// it back with cimfs::Image, checks SHA-512 / object IDs (OpenSSL or CNG), the OS
// layer, and the native backend: where cimfs.dll is missing (Linux, macOS, Wine)
// every native call must fail cleanly with Errc::unsupported; where it exists the
// same tree is written through cimfs.dll and read back with the portable reader.
//
// Prints one line per check and finally "N passed, M failed"; exits 1 on failure.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cimfs/error.hpp"
#include "cimfs/native.hpp"
#include "cimfs/object_id.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/platform.hpp"
#include "cimfs/reader.hpp"
#include "cimfs/writer.hpp"

namespace fs = std::filesystem;
using namespace cimfs;

namespace {

int g_passed = 0;
int g_failed = 0;

struct Failure : std::exception {
    std::string what_;
    explicit Failure(std::string w) : what_(std::move(w)) {}
    const char* what() const noexcept override { return what_.c_str(); }
};

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) throw Failure(std::string(__FILE__ ":") + std::to_string(__LINE__) +    \
                                   ": CHECK(" #cond ") failed");                             \
    } while (0)

void run(const char* name, const std::function<void()>& fn) {
    try {
        fn();
        ++g_passed;
        std::printf("PASSED %s\n", name);
    } catch (const Failure& f) {
        ++g_failed;
        std::printf("FAILED %s: %s\n", name, f.what());
    } catch (const Error& e) {
        ++g_failed;
        std::printf("FAILED %s: cimfs::Error(code %d, winerror %lu, errno %d): %s\n", name,
                    static_cast<int>(e.code), static_cast<unsigned long>(e.winerror), e.sys_errno, e.what());
    } catch (const std::exception& e) {
        ++g_failed;
        std::printf("FAILED %s: %s\n", name, e.what());
    }
    std::fflush(stdout);
}

std::string hex(const unsigned char* p, std::size_t n) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        s += d[p[i] >> 4];
        s += d[p[i] & 15];
    }
    return s;
}

// Expect `fn` to throw cimfs::Error with code `code`; returns the message.
std::string expect_error(Errc code, const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        if (e.code != code)
            throw Failure("expected error code " + std::to_string(static_cast<int>(code)) + ", got " +
                          std::to_string(static_cast<int>(e.code)) + ": " + e.what());
        return e.what();
    }
    throw Failure("expected an error, none was thrown");
}

std::string make_temp_dir(const char* tag) {
    std::random_device rd;
    fs::path p = fs::temp_directory_path() /
                 (std::string("cimfs-selftest-") + tag + "-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(p);
    return p.u8string();
}

// The content written to every test image.
struct Content {
    std::string hello = "Hello world!";
    std::string big;          // > 4096 bytes: page-aligned data region
    std::string ads = "alternate stream data";
    Content() {
        std::mt19937 rng(12345);
        big.resize(3 * 4096 + 123);
        for (char& c : big) c = static_cast<char>(rng() & 0xff);
    }
};

void write_tree(ImageWriter& w, const Content& c) {
    FileMetadata dir;
    dir.attributes = format::kAttrDirectory;
    dir.times.creation = dir.times.last_write = dir.times.change = dir.times.last_access =
        132000000000000000ull;
    w.add_file(u"dir", dir);

    FileMetadata f;
    f.attributes = format::kAttrArchive;
    f.times = dir.times;
    f.size = c.hello.size();
    w.add_file(u"dir\\hello.txt", f);
    w.write(c.hello.data(), c.hello.size());
    w.close_stream();

    f.size = c.big.size();
    w.add_file(u"dir/big.bin", f);  // forward slashes are accepted
    w.write(c.big.data(), 5000);
    w.write(c.big.data() + 5000, c.big.size() - 5000);
    w.close_stream();

    w.add_file(u"big-copy.bin", f);  // same content: deduplicated
    w.write(c.big.data(), c.big.size());
    w.close_stream();

    FileMetadata empty;
    empty.attributes = format::kAttrNormal;
    w.add_file(u"empty", empty);

    w.add_alternate_stream(u"dir\\hello.txt:extra", c.ads.size());
    w.write(c.ads.data(), c.ads.size());
    w.close_stream();

    w.add_hard_link(u"dir\\hello.txt", u"hello-link.txt");
    w.commit();
    w.close();
}

std::string read_all(const Image& img, const StreamHandle& s) {
    std::string out(static_cast<std::size_t>(s.size), '\0');
    std::size_t got = 0;
    while (got < out.size()) {
        std::size_t n = img.read(s, got, &out[got], std::min<std::size_t>(out.size() - got, 1000));
        if (n == 0) break;
        got += n;
    }
    out.resize(got);
    return out;
}

void check_tree(const std::string& header, const Content& c, bool portable) {
    auto img = Image::open(header);
    ImageInfo info = img->info();
    CHECK(info.version.major == 2 || info.version.major == 3);

    std::uint32_t root = img->lookup(u"");
    CHECK(img->stat(root).is_directory);
    std::vector<std::string> names;
    for (const auto& e : img->list_directory(root)) names.push_back(to_utf8(e.name));
    // Link tables are sorted case-insensitively by the upcase table.
    std::vector<std::string> want = {"big-copy.bin", "dir", "empty", "hello-link.txt"};
    CHECK(names == want);

    std::uint32_t dir = img->lookup(u"DIR");  // case-insensitive lookup
    CHECK(img->stat(dir).is_directory);

    std::uint32_t hello = img->lookup(u"dir\\hello.txt");
    FileStat st = img->stat(hello);
    CHECK(!st.is_directory);
    CHECK(st.size == c.hello.size());
    CHECK((st.attributes & format::kAttrArchive) != 0);
    CHECK(read_all(*img, img->default_stream(hello)) == c.hello);

    // Hard link: same file record, two names.
    CHECK(img->lookup(u"hello-link.txt") == hello);
    if (info.version.major >= 3) CHECK(img->links(hello).size() == 2);

    // Alternate data stream.
    auto streams = img->alternate_streams(hello);
    CHECK(streams.size() == 1);
    CHECK(to_utf8(streams[0].name) == "extra");
    CHECK(streams[0].size == c.ads.size());
    CHECK(read_all(*img, img->alternate_stream(hello, u"extra")) == c.ads);

    // Page-aligned data and its deduplicated copy.
    std::uint32_t big = img->lookup(u"dir\\big.bin");
    std::uint32_t copy = img->lookup(u"big-copy.bin");
    StreamHandle sb = img->default_stream(big), sc = img->default_stream(copy);
    CHECK(read_all(*img, sb) == c.big);
    CHECK(read_all(*img, sc) == c.big);
    if (portable) CHECK(sb.stream.data == sc.stream.data);

    std::string part(100, '\0');
    CHECK(img->read(sb, 4090, &part[0], part.size()) == part.size());
    CHECK(part == c.big.substr(4090, 100));
    CHECK(img->read(sb, sb.size, &part[0], part.size()) == 0);

    std::uint32_t empty = img->lookup(u"empty");
    CHECK(img->stat(empty).size == 0);
    CHECK(read_all(*img, img->default_stream(empty)).empty());

    expect_error(Errc::not_found, [&] { img->lookup(u"dir\\missing"); });
    std::vector<std::string> problems = img->verify();
    if (!problems.empty()) throw Failure("verify(): " + problems.front());
}

}  // namespace

int main() {
    Content content;
    std::string work;

    run("sha512 known answers", [] {
        Sha512 h;
        Digest d = h.finish();  // empty message
        CHECK(hex(d.data(), d.size()) == "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc");
        h.update("abc", 3);
        d = h.finish();
        CHECK(hex(d.data(), d.size()) == "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea2");
        h.update("xyz", 3);
        h.reset();  // discards "xyz"
        h.update("a", 1);
        h.update("bc", 2);
        d = h.finish();
        CHECK(hex(d.data(), d.size()) == "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea2");
    });

    run("object ids", [] {
        ObjectId small = object_id_of("abc", 3);
        CHECK(small.length == 3 && small.digest[0] == 'a' && small.digest[3] == 0);
        std::string m(1000, 'x');
        ObjectId big = object_id_of(m.data(), m.size());
        Sha512 h;
        h.update(m.data(), m.size());
        CHECK(big.length == 1000 && big.digest == h.finish());
    });

    run("platform layer", [&] {
        work = make_temp_dir("os");
        std::string a = platform::join(work, "a.bin");
        {
            auto f = platform::File::create_exclusive(a);
            f.pwrite_all("0123456789", 10, 0);
            f.pwrite_all("AB", 2, 20);  // leaves a hole of zeros
            CHECK(f.size() == 22);
            char buf[8] = {};
            CHECK(f.pread(buf, 4, 3) == 4 && std::memcmp(buf, "3456", 4) == 0);
            CHECK(f.pread(buf, 8, 20) == 2);
            f.truncate(12);
            CHECK(f.size() == 12);
            f.sync();
            f.close();
            CHECK(!f.is_open());
        }
        expect_error(Errc::io, [&] { platform::File::create_exclusive(a); });
        CHECK(platform::file_size(a) == 12);
        {
            auto m = platform::MappedFile::open(a);
            CHECK(m.size() == 12 && std::memcmp(m.data(), "0123456789", 10) == 0);
            auto r = platform::File::open_read(a);
            char buf[4];
            expect_error(Errc::io, [&] { r.pread_exact(buf, 4, 10); });
        }
        std::string b = platform::join(work, "b.bin");
        platform::File::create_exclusive(b).close();
        CHECK(platform::MappedFile::open(b).data() == nullptr);
        platform::rename_replace(a, b);  // replaces an existing file
        CHECK(!platform::exists(a) && platform::file_size(b) == 12);
        auto names = platform::list_directory(work);
        CHECK(names.size() == 1 && names[0] == "b.bin");
        platform::sync_directory(work);
        CHECK(platform::remove_file(b));
        platform::OsError err;
        CHECK(!platform::remove_file(b, &err) && err.code != 0 && !err.message.empty());
        try {
            platform::File::open_read(b);
            throw Failure("open_read of a missing file succeeded");
        } catch (const Error& e) {
            CHECK(e.code == Errc::io && e.sys_errno == ENOENT);
#ifdef _WIN32
            CHECK(e.winerror == 2);  // ERROR_FILE_NOT_FOUND
#endif
        }
        CHECK(platform::basename(platform::join("x", "y.cim")) == "y.cim");
        CHECK(platform::dirname(platform::join("x", "y.cim")) == "x");
#ifdef _WIN32
        CHECK(platform::dirname("C:\\dir\\f.cim") == "C:\\dir");
        CHECK(platform::dirname("C:/dir/f.cim") == "C:/dir");
        CHECK(platform::dirname("C:\\f.cim") == "C:\\");
        CHECK(platform::basename("C:f.cim") == "f.cim");
        CHECK(platform::join("C:\\", "f") == "C:\\f");
        // A path longer than MAX_PATH works through the \\?\ prefix.
        std::string deep = work;
        for (int i = 0; i < 6; ++i) {
            deep = platform::join(deep, std::string(50, char('a' + i)));
            fs::create_directory(fs::u8path(deep));
        }
        std::string long_file = platform::join(deep, "long.bin");
        CHECK(long_file.size() > 300);
        platform::File::create_exclusive(long_file).close();
        CHECK(platform::exists(long_file) && platform::file_size(long_file) == 0);
        CHECK(platform::remove_file(long_file));
#endif
        // Non-ASCII names go through UTF-16 and back.
        std::string u = platform::join(work, "\xc3\xa9t\xc3\xa9-\xe2\x82\xac.bin");
        platform::File::create_exclusive(u).close();
        names = platform::list_directory(work);
        bool found = false;
        for (auto& n : names) found |= n == "\xc3\xa9t\xc3\xa9-\xe2\x82\xac.bin";
        CHECK(found);
        unsigned char r1[32] = {}, r2[32] = {};
        platform::random_bytes(r1, sizeof r1);
        platform::random_bytes(r2, sizeof r2);
        CHECK(std::memcmp(r1, r2, sizeof r1) != 0);
        CHECK(platform::hardware_threads() >= 1);
    });

    std::string header;
    run("portable writer: write image", [&] {
        if (work.empty()) work = make_temp_dir("os");
        std::string dir = platform::join(work, "images");
        fs::create_directories(fs::u8path(dir));
        CreateOptions o;
        o.directory = dir;
        o.name = "test.cim";
        auto w = create_portable_writer(o);
        write_tree(*w, content);
        header = w->image_path();
        CHECK(w->committed());
        CHECK(platform::exists(header));
    });

    run("portable reader: read back", [&] {
        CHECK(!header.empty());
        check_tree(header, content, true);
    });

    run("image files: usage and destroy", [&] {
        CHECK(!header.empty());
        auto files = image_region_files(header, true);
        CHECK(!files.empty());
        CHECK(image_usage(header) > content.big.size());
        destroy_image(header);
        CHECK(!platform::exists(header));
        for (auto& f : files) CHECK(!platform::exists(f));
    });

    run("writer errors", [&] {
        CreateOptions o;
        o.directory = platform::join(work, "images");
        o.name = "errors.cim";
        auto w = create_portable_writer(o);
        FileMetadata f;
        f.size = 4;
        w->add_file(u"a", f);
        w->write("ab", 2);
        // A stream closed short of its declared size names the path.
        std::string msg = expect_error(Errc::invalid_argument, [&] { w->close_stream(); });
        CHECK(msg.find("a") != std::string::npos);
        expect_error(Errc::bad_state, [&] { w->write("x", 1); });
        expect_error(Errc::invalid_argument, [&] { w->add_file(u"..\\x", FileMetadata{}); });
        w->close();  // not committed: no files left behind
        CHECK(!platform::exists(platform::join(o.directory, "errors.cim")));
    });

    native::Capabilities caps;
    run("native: capabilities", [&] {
        caps = native::capabilities();
        std::printf("  native capabilities: supported=%d block=%d merged=%d verified=%d build=%lu.%lu "
                    "cimfs.dll=%d cimwriter.dll=%d\n  reason: %s\n",
                    caps.supported, caps.block, caps.merged, caps.verified,
                    static_cast<unsigned long>(caps.build), static_cast<unsigned long>(caps.revision),
                    caps.cimfs_dll, caps.cimwriter_dll, caps.reason.c_str());
#ifndef _WIN32
        CHECK(!caps.supported && !caps.block && !caps.merged && !caps.verified);
        CHECK(caps.reason == "not Windows");
#else
        CHECK(caps.build > 0);
        if (!caps.cimfs_dll) {
            CHECK(!caps.supported && !caps.block && !caps.merged && !caps.verified);
            CHECK(caps.reason.find("cimfs.dll not available") == 0);
        }
#endif
    });

    run("native: volume paths", [] {
        format::Guid g;
        CHECK(format::Guid::parse("2cf2ae9f-8556-4421-9f2f-d9ca60534d62", g));
        std::string v = native::volume_path(g);
        CHECK(v == "\\\\?\\Volume{2cf2ae9f-8556-4421-9f2f-d9ca60534d62}\\");
        format::Guid back;
        CHECK(native::parse_volume_path(v, back) && back == g);
        CHECK(native::parse_volume_path("\\\\?\\Volume{2CF2AE9F-8556-4421-9F2F-D9CA60534D62}", back) &&
              back == g);
        CHECK(native::parse_volume_path("{2cf2ae9f-8556-4421-9f2f-d9ca60534d62}", back) && back == g);
        CHECK(!native::parse_volume_path("C:\\", back));
        native::BlockImage b{native::BlockType::single_file, "C:\\layers\\block.bcim", "layer.cim"};
        CHECK(b.path() == "C:\\layers\\block.bcim\\layer.cim");
    });

    if (!caps.cimfs_dll) {
        run("native: unavailable is a clean error", [&] {
            CreateOptions o;
            o.directory = platform::join(work, "images");
            o.name = "native.cim";
            std::string msg = expect_error(Errc::unsupported, [&] { native::create_writer(o); });
            std::printf("  create_writer: %s\n", msg.c_str());
#ifdef _WIN32
            CHECK(msg.find("cimfs.dll not available") != std::string::npos);
#else
            CHECK(msg.find("Windows") != std::string::npos);
#endif
            CHECK(msg.find("20348") != std::string::npos);
            msg = expect_error(Errc::unsupported, [&] { native::mount(platform::join(o.directory, "x.cim")); });
            std::printf("  mount: %s\n", msg.c_str());
            native::BlockImage b{native::BlockType::single_file, platform::join(work, "b.bcim"), "x.cim"};
            expect_error(Errc::unsupported, [&] { native::create_block_image(b); });
            expect_error(Errc::unsupported, [&] { native::merge_block_images(b, {b, b}); });
            expect_error(Errc::unsupported, [&] { native::seal_image(b.block_path); });
            expect_error(Errc::unsupported, [&] { native::get_verification_information(b.block_path); });
            expect_error(Errc::unsupported, [&] { native::mount_verified(b, "0123"); });
            expect_error(Errc::unsupported, [&] { native::merge_mount(b, {b, b}); });
            expect_error(Errc::unsupported, [&] { native::merge_mount_verified(b, {b, b}, "0123"); });
            expect_error(Errc::unsupported, [&] { native::dismount(format::Guid::random()); });
            expect_error(Errc::unsupported,
                         [&] { native::dismount("\\\\?\\Volume{2cf2ae9f-8556-4421-9f2f-d9ca60534d62}\\"); });
        });
    } else {
        // Real Windows with CimFS: write the same tree through cimfs.dll and read
        // it back with the portable reader. (Mounting needs administrator rights
        // and is left to the Python tests.)
        run("native: cimfs.dll writes, portable reader reads", [&] {
            CreateOptions o;
            o.directory = platform::join(work, "native");
            fs::create_directories(fs::u8path(o.directory));
            o.name = "native.cim";
            auto w = native::create_writer(o);
            write_tree(*w, content);
            check_tree(platform::join(o.directory, o.name), content, false);
        });
        // Only against tools/mock_cimfs_dll.cpp (installed as cimfs.dll in a Wine
        // prefix by .ci/cross-windows.sh): error mapping and mount plumbing.
        if (std::getenv("CIMFS_SELFTEST_MOCK")) run("native: errors and mounts (mock cimfs.dll)", [&] {
            CreateOptions o;
            o.directory = platform::join(work, "native");
            o.name = "errors.cim";
            auto w = native::create_writer(o);
            FileMetadata f;
            f.size = 3;
            try {
                w->add_file(u"missing\\x", f);
                throw Failure("add_file under a missing directory succeeded");
            } catch (const Error& e) {
                CHECK(e.code == Errc::not_found && e.subject == ErrorSubject::path);
                CHECK(e.winerror == 3 && e.sys_errno == ENOENT);  // ERROR_PATH_NOT_FOUND
                CHECK(e.path == "missing\\x");
                CHECK(std::string(e.what()).find("0x80070003") != std::string::npos);
            }
            w->add_file(u"short", f);
            expect_error(Errc::invalid_argument, [&] { w->write("abcd", 4); });  // past the size
            w->write("ab", 2);
            expect_error(Errc::invalid_argument, [&] { w->close_stream(); });  // short
            expect_error(Errc::bad_state, [&] { w->write("c", 1); });
            std::string msg = expect_error(Errc::unsupported, [&] { w->add_tombstone(u"short"); });
            CHECK(msg.find("CimTombstoneFile") != std::string::npos);
            expect_error(Errc::invalid_argument, [&] { w->add_file(u"a\\..\\b", FileMetadata{}); });
            w->close();
            expect_error(Errc::bad_state, [&] { w->commit(); });

            // Block CIMs need a newer build (or cimwriter.dll) than Wine reports.
            native::BlockImage b{native::BlockType::single_file, platform::join(work, "b.bcim"), "x.cim"};
            msg = expect_error(Errc::unsupported, [&] { native::create_block_image(b); });
            CHECK(msg.find("27766") != std::string::npos);
            msg = expect_error(Errc::unsupported, [&] { native::seal_image(b.block_path); });
            CHECK(msg.find("CimSealImage") != std::string::npos);

            std::string image = platform::join(o.directory, "native.cim");
            std::string volume = native::mount(image);
            format::Guid g;
            CHECK(native::parse_volume_path(volume, g));
            native::dismount(volume);
            try {
                native::dismount(g);
                throw Failure("second dismount succeeded");
            } catch (const Error& e) {
                CHECK(e.subject == ErrorSubject::mount && e.winerror == 1168);  // ERROR_NOT_FOUND
                CHECK(e.path == volume);
            }
            format::Guid fixed;
            CHECK(format::Guid::parse("0badc0de-0000-4000-8000-000000000001", fixed));
            CHECK(native::mount(image, native::kMountNone, fixed) == native::volume_path(fixed));
            native::dismount(fixed);
            try {
                native::mount(platform::join(o.directory, "missing.cim"));
                throw Failure("mount of a missing image succeeded");
            } catch (const Error& e) {
                CHECK(e.code == Errc::not_found && e.subject == ErrorSubject::mount && e.winerror == 2);
            }
        });
    }

    if (!work.empty()) {
        std::error_code ec;
        fs::remove_all(fs::u8path(work), ec);
    }
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
