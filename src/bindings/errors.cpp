// cimfs::Error -> the Python exception hierarchy defined in cimfs/errors.py.
#include <cerrno>

#include "cimfs/error.hpp"
#include "convert.hpp"

namespace cimfs::bindings {

namespace {
const char* errc_name(Errc c) {
    switch (c) {
        case Errc::not_found: return "not_found";
        case Errc::exists: return "exists";
        case Errc::not_a_directory: return "not_a_directory";
        case Errc::is_a_directory: return "is_a_directory";
        case Errc::invalid_argument: return "invalid_argument";
        case Errc::name_too_long: return "name_too_long";
        case Errc::corrupt_image: return "corrupt_image";
        case Errc::io: return "io";
        case Errc::unsupported: return "unsupported";
        case Errc::busy: return "busy";
        case Errc::bad_state: return "bad_state";
    }
    return "io";
}
const char* subject_name(ErrorSubject s) {
    switch (s) {
        case ErrorSubject::op: return "op";
        case ErrorSubject::path: return "path";
        case ErrorSubject::link: return "link";
        case ErrorSubject::mount: return "mount";
    }
    return "op";
}
py::str text(const std::string& s) {
    // Messages may carry host paths (bytes in the filesystem encoding) or
    // lossy UTF-8; never fail while reporting a failure.
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
    if (!o) {
        PyErr_Clear();
        o = PyUnicode_FromString("?");
    }
    return py::reinterpret_steal<py::str>(o);
}
}  // namespace

void register_errors(py::module_& m) {
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Error& e) {
            py::object make = py::module_::import("cimfs.errors").attr("_from_core");
            py::object exc = make(errc_name(e.code), subject_name(e.subject), text(e.op), text(e.image),
                                  text(e.path), text(e.path2), text(e.reason), e.sys_errno, e.winerror);
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
        } catch (const std::bad_alloc&) {
            PyErr_NoMemory();
        }
    });
}

}  // namespace cimfs::bindings
