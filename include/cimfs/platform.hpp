// The small operating-system layer the portable backend needs: files written at
// offsets, read-only mappings, and directory operations. POSIX and Win32 each
// implement it in one source file; nothing else in the core includes OS headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cimfs::platform {

// Throws cimfs::Error(io) with the OS error on failure; `op` and `image` feed the message.
class File {
public:
    File() = default;
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    File(File&& o) noexcept;
    File& operator=(File&& o) noexcept;

    static File create_exclusive(const std::string& path);  // O_CREAT|O_EXCL, rw
    static File open_read(const std::string& path);

    bool is_open() const;
    void pwrite_all(const void* data, std::size_t n, std::uint64_t offset);
    std::size_t pread(void* data, std::size_t n, std::uint64_t offset) const;
    void pread_exact(void* data, std::size_t n, std::uint64_t offset) const;
    std::uint64_t size() const;
    void truncate(std::uint64_t size);
    void sync();
    // Hand [offset, offset+n) to the disk now, without waiting for it (Linux
    // sync_file_range; elsewhere nothing): data written in bulk reaches the disk
    // while the writer goes on instead of all at the next flush. Best effort.
    void start_writeback(std::uint64_t offset, std::uint64_t n);
    void close();
    const std::string& path() const { return path_; }

private:
    std::intptr_t handle_ = -1;
    std::string path_;
};

// A read-only mapping of a whole file. Empty files map to (nullptr, 0).
class MappedFile {
public:
    MappedFile() = default;
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& o) noexcept;
    MappedFile& operator=(MappedFile&& o) noexcept;

    static MappedFile open(const std::string& path);
    const unsigned char* data() const { return data_; }
    std::uint64_t size() const { return size_; }

private:
    void reset();
    const unsigned char* data_ = nullptr;
    std::uint64_t size_ = 0;
    std::intptr_t mapping_ = 0;  // Win32 mapping handle
};

// An exclusive, advisory lock on a lock file (flock / LockFileEx), released by
// the destructor or when the process dies. try_acquire returns an unlocked
// object (locked() == false) when another holder has it.
class FileLock {
public:
    FileLock() = default;
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    FileLock(FileLock&& o) noexcept;
    FileLock& operator=(FileLock&& o) noexcept;

    static FileLock try_acquire(const std::string& lock_path);
    bool locked() const { return handle_ != -1; }
    void release();

private:
    std::intptr_t handle_ = -1;
    std::string path_;
};

// Name of the lock file a writer holds in an image directory.
inline constexpr const char* kWriterLockName = ".cimfs-lock";
// Prefix of the files a writer creates before commit renames them.
inline constexpr const char* kTempPrefix = ".cimfs-tmp-";

// Raw OS errors, for callers that build their own messages.
struct OsError {
    int code = 0;             // errno or GetLastError()
    std::string message;
};
OsError last_os_error();

bool exists(const std::string& path);
bool remove_file(const std::string& path, OsError* err = nullptr);  // false if it failed
void rename_replace(const std::string& from, const std::string& to);  // throws io Error
std::uint64_t file_size(const std::string& path);                     // throws io Error
std::vector<std::string> list_directory(const std::string& dir);     // names only
void sync_directory(const std::string& dir);
std::string join(const std::string& dir, const std::string& name);
std::string dirname(const std::string& path);
std::string basename(const std::string& path);
void random_bytes(void* out, std::size_t n);
unsigned hardware_threads();

}  // namespace cimfs::platform
