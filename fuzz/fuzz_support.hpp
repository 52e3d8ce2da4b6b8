// Shared pieces of the libFuzzer harnesses (fuzz_reader.cpp, fuzz_writer_paths.cpp,
// fuzz_layer_import.cpp): a private scratch directory per process, a checked abort,
// the read-back check of a committed image, and heap-backed file mappings so that
// AddressSanitizer sees every out-of-range read.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cimfs/error.hpp"
#include "cimfs/reader.hpp"

namespace cimfs_fuzz {

// A harness-level invariant failed: print why and abort, which libFuzzer reports
// as a crash and saves the input.
[[noreturn]] inline void fail(const std::string& why) {
    std::fprintf(stderr, "\n*** cimfs fuzz invariant violated: %s\n", why.c_str());
    std::fflush(stderr);
    std::abort();
}

// Every error the reader or writer throws must say which image and what went
// wrong; a corrupt_image error must carry the image path it was opened with.
inline void check_error(const cimfs::Error& e, const std::string& image) {
    if (e.reason.empty()) fail(std::string("error without a reason: ") + e.what());
    if (std::string(e.what()).empty()) fail("error with an empty message");
    if (e.code == cimfs::Errc::corrupt_image && e.image != image)
        fail("corrupt_image error names '" + e.image + "', not the image '" + image + "': " + e.what());
}

// A directory of our own on tmpfs (/dev/shm when there is one), removed at exit.
inline const std::string& scratch_dir() {
    static std::string dir = [] {
        const char* base = std::getenv("CIMFS_FUZZ_TMP");
        std::string tmpl;
        if (base && *base) tmpl = base;
        else if (access("/dev/shm", W_OK) == 0) tmpl = "/dev/shm";
        else tmpl = "/tmp";
        tmpl += "/cimfs-fuzz-XXXXXX";
        if (!mkdtemp(&tmpl[0])) {
            std::perror("mkdtemp");
            std::abort();
        }
        return tmpl;
    }();
    return dir;
}

// Remove every file in `dir` (not recursive: the harnesses write flat directories).
inline void clear_dir(const std::string& dir) {
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
            unlink((dir + "/" + e->d_name).c_str());
        }
        closedir(d);
    }
}

inline void remove_scratch_dir() {
    clear_dir(scratch_dir());
    rmdir(scratch_dir().c_str());
}

inline void write_file(const std::string& path, const unsigned char* data, std::size_t n) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        std::perror(path.c_str());
        std::abort();
    }
    std::size_t done = 0;
    while (done < n) {
        ssize_t w = ::write(fd, data + done, n - done);
        if (w <= 0) {
            std::perror(path.c_str());
            std::abort();
        }
        done += static_cast<std::size_t>(w);
    }
    close(fd);
}

// Read back a committed image: it must be sound in every respect (verify() finds
// no problem; every file, directory and stream can be listed, stat'ed and read).
inline void check_committed(const std::string& path) {
    using namespace cimfs;
    std::unique_ptr<Image> img;
    try {
        img = Image::open(path);
    } catch (const Error& e) {
        fail(std::string("a committed image does not open: ") + e.what());
    }
    std::vector<std::string> problems = img->verify();
    if (!problems.empty()) fail("verify() of a committed image: " + problems.front());
    try {
        ImageInfo info = img->info();
        std::vector<std::pair<std::uint32_t, std::u16string>> stack{{info.root_id, u""}};
        std::unordered_set<std::uint32_t> seen{info.root_id};
        std::vector<unsigned char> buf(65536);
        while (!stack.empty()) {
            auto [id, where] = stack.back();
            stack.pop_back();
            FileStat st = img->stat(id);
            img->security_descriptor(id);
            img->extended_attributes(id);
            img->reparse_data(id);
            img->links(id);
            if (!where.empty() && img->lookup(where) != id) fail("lookup of a listed path gives another file");
            if (st.is_directory) {
                for (const auto& c : img->list_directory(id))
                    if (seen.insert(c.file_id).second || !img->stat(c.file_id).is_directory)
                        stack.push_back({c.file_id, where.empty() ? c.name : where + u"\\" + c.name});
                    else
                        fail("a committed image has a directory reached twice");
            } else {
                StreamHandle h = img->default_stream(id);
                for (std::uint64_t o = 0; o < h.size; o += buf.size()) img->read(h, o, buf.data(), buf.size());
            }
            for (const auto& s : img->alternate_streams(id)) {
                StreamHandle h = img->alternate_stream(id, s.name);
                if (h.size != s.size) fail("alternate stream size differs from its listing");
                for (std::uint64_t o = 0; o < h.size; o += buf.size()) img->read(h, o, buf.data(), buf.size());
            }
        }
    } catch (const Error& e) {
        fail(std::string("reading a committed image failed: ") + e.what());
    }
}

}  // namespace cimfs_fuzz

// ---- heap-backed mappings ----------------------------------------------------------
// The reader maps region files read-only (platform::MappedFile). AddressSanitizer
// does not guard mmap'ed memory: a read a few bytes past the end of a mapping lands
// in the zero-filled rest of the page and goes unnoticed. The fuzz targets are
// linked with -Wl,--wrap=mmap,--wrap=munmap (CMakeLists.txt), so the core's
// read-only file mappings are replaced by exact-size heap copies, whose redzones
// ASan checks. Every other mmap passes through unchanged.
extern "C" void* __real_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off);
extern "C" int __real_munmap(void* addr, size_t len);

namespace cimfs_fuzz {
inline std::mutex& heap_maps_mutex() {
    static std::mutex m;
    return m;
}
inline std::unordered_map<void*, size_t>& heap_maps() {
    static auto* m = new std::unordered_map<void*, size_t>();
    return *m;
}
}  // namespace cimfs_fuzz

extern "C" void* __wrap_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (addr == nullptr && prot == PROT_READ && (flags & MAP_SHARED) && fd >= 0 && off == 0 && len > 0) {
        void* p = std::malloc(len);
        if (!p) return MAP_FAILED;
        size_t done = 0;
        while (done < len) {
            ssize_t r = pread(fd, static_cast<char*>(p) + done, len - done, static_cast<off_t>(done));
            if (r < 0) {
                std::free(p);
                return MAP_FAILED;
            }
            if (r == 0) {  // the file shrank: mmap would give SIGBUS; zero-fill like the page tail
                std::memset(static_cast<char*>(p) + done, 0, len - done);
                break;
            }
            done += static_cast<size_t>(r);
        }
        std::lock_guard<std::mutex> g(cimfs_fuzz::heap_maps_mutex());
        cimfs_fuzz::heap_maps()[p] = len;
        return p;
    }
    return __real_mmap(addr, len, prot, flags, fd, off);
}

extern "C" int __wrap_munmap(void* addr, size_t len) {
    {
        std::lock_guard<std::mutex> g(cimfs_fuzz::heap_maps_mutex());
        auto it = cimfs_fuzz::heap_maps().find(addr);
        if (it != cimfs_fuzz::heap_maps().end()) {
            if (it->second != len) cimfs_fuzz::fail("munmap of a mapping with a different length");
            cimfs_fuzz::heap_maps().erase(it);
            std::free(addr);
            return 0;
        }
    }
    return __real_munmap(addr, len);
}
