// Errors raised by the cimfs core. One exception type carries everything the
// Python layer needs to build the right OSError subclass: what kind of failure,
// which operation on which image, which path(s), and the system error if any.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace cimfs {

enum class Errc {
    not_found,          // ENOENT
    exists,             // EEXIST
    not_a_directory,    // ENOTDIR
    is_a_directory,     // EISDIR
    invalid_argument,   // EINVAL
    name_too_long,      // ENAMETOOLONG
    corrupt_image,      // damaged or hostile image data (EIO)
    io,                 // the operating system refused (errno/winerror set)
    unsupported,        // needs the native backend / Windows (ENOTSUP)
    busy,               // locked by another writer (EBUSY)
    bad_state,          // API misuse: write with no open stream, use after close
};

// Which subject an error is about; decides the Python exception class.
enum class ErrorSubject { op, path, link, mount };

class Error : public std::runtime_error {
public:
    Errc code;
    ErrorSubject subject;
    std::string op;      // "create", "write", "open", "read", "commit", ...
    std::string image;   // the image (header file) path
    std::string path;    // path inside the image (or the volume, for mount)
    std::string path2;   // for links: the existing path
    std::string reason;  // human text without the prefix
    int sys_errno = 0;         // POSIX errno when the OS refused
    std::uint32_t winerror = 0; // Windows error / HRESULT when the OS refused

    Error(Errc code, ErrorSubject subject, std::string op, std::string image,
          std::string path, std::string path2, std::string reason,
          int sys_errno = 0, std::uint32_t winerror = 0);

    // "cim <op> <image>: <path>: <reason>" (path part omitted when empty;
    // links show "<new> -> <existing>").
    static std::string format(const std::string& op, const std::string& image,
                              ErrorSubject subject, const std::string& path,
                              const std::string& path2, const std::string& reason);
};

// Convenience constructors.
[[noreturn]] void throw_op_error(Errc code, const std::string& op, const std::string& image,
                                 const std::string& reason, int sys_errno = 0);
[[noreturn]] void throw_path_error(Errc code, const std::string& op, const std::string& image,
                                   const std::string& path, const std::string& reason,
                                   int sys_errno = 0);
[[noreturn]] void throw_link_error(Errc code, const std::string& op, const std::string& image,
                                   const std::string& new_path, const std::string& existing,
                                   const std::string& reason);

// Thrown by the reader's bounds checks; converted to Error(corrupt_image) with the
// image name by the reader's public entry points.
class CorruptImage : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace cimfs
