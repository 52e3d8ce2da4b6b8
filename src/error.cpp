#include "cimfs/error.hpp"

namespace cimfs {

std::string Error::format(const std::string& op, const std::string& image, ErrorSubject subject,
                          const std::string& path, const std::string& path2,
                          const std::string& reason) {
    std::string m = "cim " + op + " " + image;
    if (subject == ErrorSubject::link) {
        m += ": " + path + " -> " + path2;
    } else if (!path.empty() || subject == ErrorSubject::path) {
        m += ": " + (path.empty() ? std::string("\\") : path);
    }
    m += ": " + reason;
    return m;
}

Error::Error(Errc code_, ErrorSubject subject_, std::string op_, std::string image_,
             std::string path_, std::string path2_, std::string reason_, int sys_errno_,
             std::uint32_t winerror_)
    : std::runtime_error(format(op_, image_, subject_, path_, path2_, reason_)),
      code(code_), subject(subject_), op(std::move(op_)), image(std::move(image_)),
      path(std::move(path_)), path2(std::move(path2_)), reason(std::move(reason_)),
      sys_errno(sys_errno_), winerror(winerror_) {}

void throw_op_error(Errc code, const std::string& op, const std::string& image,
                    const std::string& reason, int sys_errno) {
    throw Error(code, ErrorSubject::op, op, image, "", "", reason, sys_errno);
}

void throw_path_error(Errc code, const std::string& op, const std::string& image,
                      const std::string& path, const std::string& reason, int sys_errno) {
    throw Error(code, ErrorSubject::path, op, image, path, "", reason, sys_errno);
}

void throw_link_error(Errc code, const std::string& op, const std::string& image,
                      const std::string& new_path, const std::string& existing,
                      const std::string& reason) {
    throw Error(code, ErrorSubject::link, op, image, new_path, existing, reason);
}

}  // namespace cimfs
