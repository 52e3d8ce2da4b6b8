// Win32 implementation of the OS layer (include/cimfs/platform.hpp).
//
// Paths arrive as UTF-8 and go to the "W" functions as UTF-16. Files are opened
// with FILE_SHARE_DELETE so that a file we hold open can still be renamed over
// (rename_replace) the way POSIX allows. Positioned I/O uses ReadFile/WriteFile
// with an OVERLAPPED offset on a synchronous handle: the call completes before
// returning and the handle's file pointer is never relied on.
#include "windows_h.hpp"
#include <bcrypt.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cwchar>
#include <thread>

#include "cimfs/error.hpp"
#include "cimfs/platform.hpp"
#include "win32_util.hpp"

#ifndef BCRYPT_USE_SYSTEM_PREFERRED_RNG
#define BCRYPT_USE_SYSTEM_PREFERRED_RNG 0x00000002
#endif

// ---- shared helpers (win32_util.hpp) ------------------------------------------
namespace cimfs::win32 {

std::wstring widen(const std::string& utf8, const char* what) {
    if (utf8.empty()) return std::wstring();
    if (utf8.find('\0') != std::string::npos)
        throw Error(Errc::invalid_argument, ErrorSubject::op, "convert", utf8, "", "",
                    std::string(what) + " contains a NUL character");
    if (utf8.size() > static_cast<std::size_t>(INT_MAX))
        throw Error(Errc::name_too_long, ErrorSubject::op, "convert", "", "", "",
                    std::string(what) + " is too long");
    int n = ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8.data(),
                                  static_cast<int>(utf8.size()), nullptr, 0);
    if (n <= 0)
        throw Error(Errc::invalid_argument, ErrorSubject::op, "convert", utf8, "", "",
                    std::string(what) + " is not valid UTF-8");
    std::wstring out(static_cast<std::size_t>(n), L'\0');
    ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8.data(), static_cast<int>(utf8.size()),
                          &out[0], n);
    return out;
}

std::wstring widen_path(const std::string& utf8) {
    std::wstring w = widen(utf8, "path");
    // Below MAX_PATH (with room for "\8.3" expansions) the classic form is fine and
    // keeps relative paths and forward slashes working as users expect.
    if (w.size() < 240) return w;
    if (w.compare(0, 4, L"\\\\?\\") == 0 || w.compare(0, 4, L"\\\\.\\") == 0) return w;
    DWORD need = ::GetFullPathNameW(w.c_str(), 0, nullptr, nullptr);
    if (need == 0) return w;
    std::wstring full(need, L'\0');
    DWORD got = ::GetFullPathNameW(w.c_str(), need, &full[0], nullptr);
    if (got == 0 || got >= need) return w;
    full.resize(got);
    if (full.compare(0, 2, L"\\\\") == 0) return L"\\\\?\\UNC\\" + full.substr(2);
    return L"\\\\?\\" + full;
}

std::string narrow(const wchar_t* s, std::size_t n) {
    if (n == 0) return std::string();
    int len = ::WideCharToMultiByte(CP_UTF8, 0, s, static_cast<int>(n), nullptr, 0, nullptr, nullptr);
    if (len <= 0) return std::string();
    std::string out(static_cast<std::size_t>(len), '\0');
    ::WideCharToMultiByte(CP_UTF8, 0, s, static_cast<int>(n), &out[0], len, nullptr, nullptr);
    return out;
}

std::string error_text(std::uint32_t code) {
    DWORD lookup = code;
    // HRESULT_FROM_WIN32(x): the system message table knows x.
    if ((code & 0xFFFF0000u) == 0x80070000u) lookup = code & 0xFFFFu;
    wchar_t* buf = nullptr;
    DWORD n = ::FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS |
                                   FORMAT_MESSAGE_ALLOCATE_BUFFER,
                               nullptr, lookup, 0, reinterpret_cast<wchar_t*>(&buf), 0, nullptr);
    std::string text;
    if (n && buf) {
        while (n > 0 && (buf[n - 1] == L'\r' || buf[n - 1] == L'\n' || buf[n - 1] == L' ')) --n;
        if (n > 0 && buf[n - 1] == L'.') --n;
        text = narrow(buf, n);
    }
    if (buf) ::LocalFree(buf);
    if (text.empty()) {
        char tmp[32];
        std::snprintf(tmp, sizeof tmp, "error 0x%08lx", static_cast<unsigned long>(code));
        text = tmp;
    }
    return text;
}

int errno_of(std::uint32_t e) {
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_BAD_NETPATH:
    case ERROR_BAD_NET_NAME:
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
        return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
    case ERROR_WRITE_PROTECT:
    case ERROR_CURRENT_DIRECTORY:
    case ERROR_USER_MAPPED_FILE:
        return EACCES;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
        return EEXIST;
    case ERROR_DIRECTORY:
        return ENOTDIR;
    case ERROR_DIR_NOT_EMPTY:
        return ENOTEMPTY;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
        return ENOSPC;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
        return ENOMEM;
    case ERROR_INVALID_HANDLE:
        return EBADF;
    case ERROR_INVALID_PARAMETER:
        return EINVAL;
    case ERROR_FILENAME_EXCED_RANGE:
        return ENAMETOOLONG;
    case ERROR_NOT_SUPPORTED:
        return ENOTSUP;
    case ERROR_BUSY:
        return EBUSY;
    case ERROR_TOO_MANY_OPEN_FILES:
        return EMFILE;
    default:
        return EIO;
    }
}

}  // namespace cimfs::win32

// ---- the OS layer -----------------------------------------------------------------
namespace cimfs::platform {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, DWORD err) {
    throw Error(Errc::io, ErrorSubject::op, what, path, "", "", win32::error_text(err),
                win32::errno_of(err), err);
}
[[noreturn]] void fail_last(const std::string& what, const std::string& path) {
    fail(what, path, ::GetLastError());
}

HANDLE h_of(std::intptr_t h) { return reinterpret_cast<HANDLE>(h); }
std::intptr_t to_int(HANDLE h) { return reinterpret_cast<std::intptr_t>(h); }
const std::intptr_t kInvalid = -1;  // INVALID_HANDLE_VALUE

constexpr DWORD kShareAll = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;
constexpr std::size_t kMaxChunk = std::size_t(1) << 30;  // ReadFile/WriteFile take a DWORD

bool is_sep(char c) { return c == '\\' || c == '/'; }

}  // namespace

OsError last_os_error() {
    DWORD e = ::GetLastError();
    return OsError{static_cast<int>(e), win32::error_text(e)};
}

// ---- File --------------------------------------------------------------------------
File::~File() {
    if (handle_ != kInvalid) ::CloseHandle(h_of(handle_));
}
File::File(File&& o) noexcept : handle_(o.handle_), path_(std::move(o.path_)) { o.handle_ = kInvalid; }
File& File::operator=(File&& o) noexcept {
    if (this != &o) {
        if (handle_ != kInvalid) ::CloseHandle(h_of(handle_));
        handle_ = o.handle_;
        path_ = std::move(o.path_);
        o.handle_ = kInvalid;
    }
    return *this;
}

File File::create_exclusive(const std::string& path) {
    std::wstring w = win32::widen_path(path);
    HANDLE h = ::CreateFileW(w.c_str(), GENERIC_READ | GENERIC_WRITE,
                             FILE_SHARE_READ | FILE_SHARE_DELETE, nullptr, CREATE_NEW,
                             FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h == INVALID_HANDLE_VALUE) fail_last("create", path);
    File f;
    f.handle_ = to_int(h);
    f.path_ = path;
    return f;
}

File File::open_read(const std::string& path) {
    std::wstring w = win32::widen_path(path);
    HANDLE h = ::CreateFileW(w.c_str(), GENERIC_READ, kShareAll, nullptr, OPEN_EXISTING,
                             FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h == INVALID_HANDLE_VALUE) fail_last("open", path);
    File f;
    f.handle_ = to_int(h);
    f.path_ = path;
    return f;
}

bool File::is_open() const { return handle_ != kInvalid; }

void File::pwrite_all(const void* data, std::size_t n, std::uint64_t offset) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        DWORD chunk = static_cast<DWORD>(n > kMaxChunk ? kMaxChunk : n);
        OVERLAPPED ov{};
        ov.Offset = static_cast<DWORD>(offset);
        ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
        DWORD written = 0;
        if (!::WriteFile(h_of(handle_), p, chunk, &written, &ov)) fail_last("write", path_);
        if (written == 0) fail("write", path_, ERROR_WRITE_FAULT);
        p += written;
        n -= written;
        offset += written;
    }
}

std::size_t File::pread(void* data, std::size_t n, std::uint64_t offset) const {
    char* p = static_cast<char*>(data);
    std::size_t total = 0;
    while (total < n) {
        std::size_t left = n - total;
        DWORD chunk = static_cast<DWORD>(left > kMaxChunk ? kMaxChunk : left);
        std::uint64_t at = offset + total;
        OVERLAPPED ov{};
        ov.Offset = static_cast<DWORD>(at);
        ov.OffsetHigh = static_cast<DWORD>(at >> 32);
        DWORD got = 0;
        if (!::ReadFile(h_of(handle_), p + total, chunk, &got, &ov)) {
            DWORD e = ::GetLastError();
            if (e == ERROR_HANDLE_EOF) break;
            fail("read", path_, e);
        }
        if (got == 0) break;
        total += got;
    }
    return total;
}

void File::pread_exact(void* data, std::size_t n, std::uint64_t offset) const {
    if (pread(data, n, offset) != n) fail("read", path_, ERROR_HANDLE_EOF);
}

std::uint64_t File::size() const {
    LARGE_INTEGER sz;
    if (!::GetFileSizeEx(h_of(handle_), &sz)) fail_last("stat", path_);
    return static_cast<std::uint64_t>(sz.QuadPart);
}

void File::truncate(std::uint64_t size) {
    FILE_END_OF_FILE_INFO info;
    info.EndOfFile.QuadPart = static_cast<LONGLONG>(size);
    if (!::SetFileInformationByHandle(h_of(handle_), FileEndOfFileInfo, &info, sizeof info))
        fail_last("truncate", path_);
}

void File::sync() {
    if (!::FlushFileBuffers(h_of(handle_))) fail_last("fsync", path_);
}

void File::start_writeback(std::uint64_t, std::uint64_t) {
    // The cache manager writes behind on its own (lazy writer).
}

void File::close() {
    if (handle_ != kInvalid) {
        HANDLE h = h_of(handle_);
        handle_ = kInvalid;
        if (!::CloseHandle(h)) fail_last("close", path_);
    }
}

// ---- MappedFile ----------------------------------------------------------------------
MappedFile::~MappedFile() { reset(); }
MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(o.data_), size_(o.size_), mapping_(o.mapping_) {
    o.data_ = nullptr;
    o.size_ = 0;
    o.mapping_ = 0;
}
MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        reset();
        data_ = o.data_;
        size_ = o.size_;
        mapping_ = o.mapping_;
        o.data_ = nullptr;
        o.size_ = 0;
        o.mapping_ = 0;
    }
    return *this;
}
void MappedFile::reset() {
    if (data_) ::UnmapViewOfFile(data_);
    if (mapping_) ::CloseHandle(h_of(mapping_));
    data_ = nullptr;
    size_ = 0;
    mapping_ = 0;
}

MappedFile MappedFile::open(const std::string& path) {
    std::wstring w = win32::widen_path(path);
    HANDLE file = ::CreateFileW(w.c_str(), GENERIC_READ, kShareAll, nullptr, OPEN_EXISTING,
                                FILE_ATTRIBUTE_NORMAL, nullptr);
    if (file == INVALID_HANDLE_VALUE) fail_last("open", path);
    LARGE_INTEGER sz;
    if (!::GetFileSizeEx(file, &sz)) {
        DWORD e = ::GetLastError();
        ::CloseHandle(file);
        fail("stat", path, e);
    }
    MappedFile m;
    if (sz.QuadPart > 0) {
        if (static_cast<std::uint64_t>(sz.QuadPart) > static_cast<std::uint64_t>(SIZE_MAX)) {
            ::CloseHandle(file);
            fail("mmap", path, ERROR_NOT_ENOUGH_MEMORY);
        }
        HANDLE map = ::CreateFileMappingW(file, nullptr, PAGE_READONLY, 0, 0, nullptr);
        if (!map) {
            DWORD e = ::GetLastError();
            ::CloseHandle(file);
            fail("mmap", path, e);
        }
        void* view = ::MapViewOfFile(map, FILE_MAP_READ, 0, 0, 0);
        if (!view) {
            DWORD e = ::GetLastError();
            ::CloseHandle(map);
            ::CloseHandle(file);
            fail("mmap", path, e);
        }
        m.data_ = static_cast<const unsigned char*>(view);
        m.size_ = static_cast<std::uint64_t>(sz.QuadPart);
        m.mapping_ = to_int(map);
    }
    ::CloseHandle(file);  // the mapping keeps the file open
    return m;
}

// ---- paths and directories -------------------------------------------------------------
bool exists(const std::string& path) {
    std::wstring w;
    try {
        w = win32::widen_path(path);
    } catch (const Error&) {
        return false;
    }
    return ::GetFileAttributesW(w.c_str()) != INVALID_FILE_ATTRIBUTES;
}

bool remove_file(const std::string& path, OsError* err) {
    std::wstring w = win32::widen_path(path);
    if (::DeleteFileW(w.c_str())) return true;
    if (err) *err = last_os_error();
    return false;
}

void rename_replace(const std::string& from, const std::string& to) {
    std::wstring wf = win32::widen_path(from);
    std::wstring wt = win32::widen_path(to);
    if (!::MoveFileExW(wf.c_str(), wt.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH))
        fail_last("rename", to);
}

std::uint64_t file_size(const std::string& path) {
    std::wstring w = win32::widen_path(path);
    WIN32_FILE_ATTRIBUTE_DATA data;
    if (!::GetFileAttributesExW(w.c_str(), GetFileExInfoStandard, &data)) fail_last("stat", path);
    return (static_cast<std::uint64_t>(data.nFileSizeHigh) << 32) | data.nFileSizeLow;
}

std::vector<std::string> list_directory(const std::string& dir) {
    std::string pattern = dir.empty() ? std::string(".") : dir;
    if (!is_sep(pattern.back())) pattern += '\\';
    pattern += '*';
    std::wstring w = win32::widen_path(pattern);
    WIN32_FIND_DATAW fd;
    HANDLE h = ::FindFirstFileExW(w.c_str(), FindExInfoBasic, &fd, FindExSearchNameMatch, nullptr,
                                  FIND_FIRST_EX_LARGE_FETCH);
    std::vector<std::string> names;
    if (h == INVALID_HANDLE_VALUE) {
        DWORD e = ::GetLastError();
        if (e == ERROR_FILE_NOT_FOUND) return names;  // an existing directory with no entries
        fail("list", dir, e);
    }
    do {
        const wchar_t* n = fd.cFileName;
        if ((n[0] == L'.' && n[1] == 0) || (n[0] == L'.' && n[1] == L'.' && n[2] == 0)) continue;
        names.push_back(win32::narrow(n, wcslen(n)));
    } while (::FindNextFileW(h, &fd));
    DWORD e = ::GetLastError();
    ::FindClose(h);
    if (e != ERROR_NO_MORE_FILES) fail("list", dir, e);
    return names;
}

void sync_directory(const std::string& dir) {
    // NTFS journals directory changes and MoveFileExW(MOVEFILE_WRITE_THROUGH) does
    // not return before the rename is on disk. Flushing a directory handle needs
    // write access that ordinary users often lack, so this is best effort.
    std::wstring w = win32::widen_path(dir.empty() ? std::string(".") : dir);
    HANDLE h = ::CreateFileW(w.c_str(), GENERIC_READ | GENERIC_WRITE, kShareAll, nullptr,
                             OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, nullptr);
    if (h == INVALID_HANDLE_VALUE) return;
    ::FlushFileBuffers(h);
    ::CloseHandle(h);
}

std::string join(const std::string& dir, const std::string& name) {
    if (dir.empty()) return name;
    if (is_sep(dir.back()) || (dir.size() == 2 && dir[1] == ':')) return dir + name;
    return dir + "\\" + name;
}

std::string dirname(const std::string& path) {
    auto pos = path.find_last_of("\\/");
    bool drive = path.size() >= 2 && path[1] == ':';
    if (pos == std::string::npos) return drive ? path.substr(0, 2) : std::string(".");
    std::size_t end = pos;
    while (end > 0 && is_sep(path[end - 1])) --end;  // "a\\\\b" -> "a"
    if (end == 0) return path.substr(0, 1);           // "\x" -> "\"
    if (drive && end == 2) return path.substr(0, 3);  // "C:\x" -> "C:\"
    return path.substr(0, end);
}

std::string basename(const std::string& path) {
    auto pos = path.find_last_of("\\/");
    if (pos != std::string::npos) return path.substr(pos + 1);
    if (path.size() >= 2 && path[1] == ':') return path.substr(2);
    return path;
}

void random_bytes(void* out, std::size_t n) {
    unsigned char* p = static_cast<unsigned char*>(out);
    while (n > 0) {
        ULONG chunk = static_cast<ULONG>(n > kMaxChunk ? kMaxChunk : n);
        NTSTATUS st = ::BCryptGenRandom(nullptr, p, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
        if (st < 0) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "BCryptGenRandom failed: NTSTATUS 0x%08lx",
                          static_cast<unsigned long>(st));
            throw Error(Errc::io, ErrorSubject::op, "random", "", "", "", buf, EIO,
                        static_cast<std::uint32_t>(st));
        }
        p += chunk;
        n -= chunk;
    }
}

unsigned hardware_threads() {
    DWORD n = ::GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    if (n == 0) n = std::thread::hardware_concurrency();
    return n ? static_cast<unsigned>(n) : 1u;
}

}  // namespace cimfs::platform
