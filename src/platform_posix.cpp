// POSIX implementation of the OS layer (Linux, macOS).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "cimfs/error.hpp"
#include "cimfs/platform.hpp"

namespace cimfs::platform {

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
    throw Error(Errc::io, ErrorSubject::op, what, path, "", "", std::strerror(err), err);
}
int fd_of(std::intptr_t h) { return static_cast<int>(h); }
}  // namespace

OsError last_os_error() { return OsError{errno, std::strerror(errno)}; }

File::~File() {
    if (handle_ >= 0) ::close(fd_of(handle_));
}
File::File(File&& o) noexcept : handle_(o.handle_), path_(std::move(o.path_)) { o.handle_ = -1; }
File& File::operator=(File&& o) noexcept {
    if (this != &o) {
        if (handle_ >= 0) ::close(fd_of(handle_));
        handle_ = o.handle_;
        path_ = std::move(o.path_);
        o.handle_ = -1;
    }
    return *this;
}

File File::create_exclusive(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) fail("create", path, errno);
    File f;
    f.handle_ = fd;
    f.path_ = path;
    return f;
}

File File::open_read(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open", path, errno);
    File f;
    f.handle_ = fd;
    f.path_ = path;
    return f;
}

bool File::is_open() const { return handle_ >= 0; }

void File::pwrite_all(const void* data, std::size_t n, std::uint64_t offset) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        std::size_t chunk = n > (std::size_t(1) << 30) ? (std::size_t(1) << 30) : n;
        ssize_t w = ::pwrite(fd_of(handle_), p, chunk, static_cast<off_t>(offset));
        if (w < 0) {
            if (errno == EINTR) continue;
            fail("write", path_, errno);
        }
        if (w == 0) fail("write", path_, EIO);
        p += w;
        n -= static_cast<std::size_t>(w);
        offset += static_cast<std::uint64_t>(w);
    }
}

std::size_t File::pread(void* data, std::size_t n, std::uint64_t offset) const {
    char* p = static_cast<char*>(data);
    std::size_t total = 0;
    while (total < n) {
        ssize_t r = ::pread(fd_of(handle_), p + total, n - total, static_cast<off_t>(offset + total));
        if (r < 0) {
            if (errno == EINTR) continue;
            fail("read", path_, errno);
        }
        if (r == 0) break;
        total += static_cast<std::size_t>(r);
    }
    return total;
}

void File::pread_exact(void* data, std::size_t n, std::uint64_t offset) const {
    if (pread(data, n, offset) != n) fail("read", path_, EIO);
}

std::uint64_t File::size() const {
    struct stat st;
    if (::fstat(fd_of(handle_), &st) != 0) fail("stat", path_, errno);
    return static_cast<std::uint64_t>(st.st_size);
}

void File::truncate(std::uint64_t size) {
    if (::ftruncate(fd_of(handle_), static_cast<off_t>(size)) != 0) fail("truncate", path_, errno);
}

void File::start_writeback(std::uint64_t offset, std::uint64_t n) {
#if defined(__linux__)
    ::sync_file_range(fd_of(handle_), static_cast<off_t>(offset), static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE);
#else
    (void)offset;
    (void)n;
#endif
}

void File::sync() {
#if defined(__APPLE__)
    if (::fcntl(fd_of(handle_), F_FULLFSYNC) != 0 && ::fsync(fd_of(handle_)) != 0)
        fail("fsync", path_, errno);
#else
    if (::fsync(fd_of(handle_)) != 0) fail("fsync", path_, errno);
#endif
}

void File::close() {
    if (handle_ >= 0) {
        int rc = ::close(fd_of(handle_));
        handle_ = -1;
        if (rc != 0 && errno != EINTR) fail("close", path_, errno);
    }
}

MappedFile::~MappedFile() { reset(); }
MappedFile::MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_), mapping_(o.mapping_) {
    o.data_ = nullptr;
    o.size_ = 0;
}
MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        reset();
        data_ = o.data_;
        size_ = o.size_;
        o.data_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}
void MappedFile::reset() {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), static_cast<std::size_t>(size_));
    data_ = nullptr;
    size_ = 0;
}

MappedFile MappedFile::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open", path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        fail("stat", path, e);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("open", path, EINVAL);
    }
    MappedFile m;
    if (st.st_size > 0) {
        void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            ::close(fd);
            fail("mmap", path, e);
        }
        m.data_ = static_cast<const unsigned char*>(p);
        m.size_ = static_cast<std::uint64_t>(st.st_size);
    }
    ::close(fd);
    return m;
}

bool exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

bool remove_file(const std::string& path, OsError* err) {
    if (::unlink(path.c_str()) == 0) return true;
    if (err) *err = last_os_error();
    return false;
}

void rename_replace(const std::string& from, const std::string& to) {
    if (::rename(from.c_str(), to.c_str()) != 0) fail("rename", to, errno);
}

std::uint64_t file_size(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) fail("stat", path, errno);
    return static_cast<std::uint64_t>(st.st_size);
}

std::vector<std::string> list_directory(const std::string& dir) {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (!d) fail("list", dir, errno);
    while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    return names;
}

void sync_directory(const std::string& dir) {
    int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("fsync", dir, errno);
    int rc = ::fsync(fd);
    int e = errno;
    ::close(fd);
    if (rc != 0 && e != EINVAL) fail("fsync", dir, e);
}

std::string join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    if (dir.back() == '/') return dir + name;
    return dir + "/" + name;
}

std::string dirname(const std::string& path) {
    auto pos = path.find_last_of('/');
    if (pos == std::string::npos) return ".";
    if (pos == 0) return "/";
    return path.substr(0, pos);
}

std::string basename(const std::string& path) {
    auto pos = path.find_last_of('/');
    return pos == std::string::npos ? path : path.substr(pos + 1);
}

void random_bytes(void* out, std::size_t n) {
    int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        std::size_t got = 0;
        while (got < n) {
            ssize_t r = ::read(fd, static_cast<char*>(out) + got, n - got);
            if (r <= 0) break;
            got += static_cast<std::size_t>(r);
        }
        ::close(fd);
        if (got == n) return;
    }
    std::random_device rd;
    for (std::size_t i = 0; i < n; ++i) static_cast<unsigned char*>(out)[i] = static_cast<unsigned char>(rd());
}

unsigned hardware_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n ? n : 1;
}

}  // namespace cimfs::platform
