// platform::FileLock: the one piece of the OS layer shared by both platform
// files' users that needs its own #ifdef (kept here so each side stays small).
#include "cimfs/error.hpp"
#include "cimfs/platform.hpp"

#ifdef _WIN32
#include "windows_h.hpp"
#else
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#endif

namespace cimfs::platform {

FileLock::~FileLock() { release(); }
FileLock::FileLock(FileLock&& o) noexcept : handle_(o.handle_), path_(std::move(o.path_)) { o.handle_ = -1; }
FileLock& FileLock::operator=(FileLock&& o) noexcept {
    if (this != &o) {
        release();
        handle_ = o.handle_;
        path_ = std::move(o.path_);
        o.handle_ = -1;
    }
    return *this;
}

#ifdef _WIN32

static std::wstring widen(const std::string& s) {
    int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
    std::wstring w(static_cast<std::size_t>(n), L'\0');
    MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), &w[0], n);
    return w;
}

FileLock FileLock::try_acquire(const std::string& lock_path) {
    HANDLE h = CreateFileW(widen(lock_path).c_str(), GENERIC_READ | GENERIC_WRITE,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_ALWAYS,
                           FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        throw Error(Errc::io, ErrorSubject::op, "lock", lock_path, "", "", "cannot open the lock file",
                    0, static_cast<std::uint32_t>(e));
    }
    OVERLAPPED ov = {};
    FileLock l;
    if (!LockFileEx(h, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov)) {
        CloseHandle(h);
        return l;
    }
    l.handle_ = reinterpret_cast<std::intptr_t>(h);
    l.path_ = lock_path;
    return l;
}

void FileLock::release() {
    if (handle_ != -1) {
        CloseHandle(reinterpret_cast<HANDLE>(handle_));  // closing drops the lock
        handle_ = -1;
        DeleteFileW(widen(path_).c_str());  // fails harmlessly while another holder has it open
    }
}

#else

// The lock file is removed on release, so a directory holds no trace of a
// writer once it is done. A holder that locked a file some other process has
// just removed would hold nothing: after locking, check that the path still
// names the locked file, and start over if it does not.
FileLock FileLock::try_acquire(const std::string& lock_path) {
    for (int attempt = 0; attempt < 100; ++attempt) {
        int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            throw Error(Errc::io, ErrorSubject::op, "lock", lock_path, "", "", std::strerror(e), e);
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd);
            return FileLock();
        }
        struct stat held, named;
        if (::fstat(fd, &held) == 0 && ::stat(lock_path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
            held.st_dev == named.st_dev) {
            FileLock l;
            l.handle_ = fd;
            l.path_ = lock_path;
            return l;
        }
        ::close(fd);
    }
    throw Error(Errc::busy, ErrorSubject::op, "lock", lock_path, "", "", "the lock file keeps changing", EBUSY);
}

void FileLock::release() {
    if (handle_ != -1) {
        ::unlink(path_.c_str());                 // while still locked: nobody holds the new one yet
        ::close(static_cast<int>(handle_));      // closing drops the flock
        handle_ = -1;
    }
}

#endif

}  // namespace cimfs::platform
