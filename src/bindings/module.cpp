// The cimfs._core extension module: translation only. Every call that does I/O
// releases the GIL; see writer.cpp and image.cpp.
#include <pybind11/stl.h>

#include "cimfs/format.hpp"
#include "cimfs/metadata.hpp"
#include "cimfs/reader.hpp"
#include "cimfs/upcase.hpp"
#include "convert.hpp"

#ifndef CIMFS_VERSION
#define CIMFS_VERSION "0.0.0"
#endif

namespace cimfs::bindings {

std::u16string to_u16(py::handle s) {
    if (!PyUnicode_Check(s.ptr())) throw py::type_error("image paths must be str");
    PyObject* b = PyUnicode_AsEncodedString(s.ptr(), "utf-16-le", "surrogatepass");
    if (!b) throw py::error_already_set();
    char* data;
    Py_ssize_t len;
    PyBytes_AsStringAndSize(b, &data, &len);
    std::u16string out(static_cast<std::size_t>(len / 2), u'\0');
    for (Py_ssize_t i = 0; i < len / 2; ++i)
        out[i] = static_cast<char16_t>(static_cast<unsigned char>(data[2 * i]) |
                                       (static_cast<unsigned char>(data[2 * i + 1]) << 8));
    Py_DECREF(b);
    return out;
}

py::str from_u16(const std::u16string& s) {
    std::string le(s.size() * 2, '\0');
    for (std::size_t i = 0; i < s.size(); ++i) {
        le[2 * i] = static_cast<char>(s[i] & 0xff);
        le[2 * i + 1] = static_cast<char>(s[i] >> 8);
    }
    int order = -1;  // little-endian
    PyObject* o = PyUnicode_DecodeUTF16(le.data(), static_cast<Py_ssize_t>(le.size()), "surrogatepass", &order);
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

std::string host_path(py::handle p) {
    py::object fs = py::module_::import("os").attr("fspath")(p);
#ifdef _WIN32
    if (PyBytes_Check(fs.ptr())) return std::string(py::bytes(fs));
    return py::cast<std::string>(fs);  // UTF-8; the Win32 layer widens it
#else
    if (PyBytes_Check(fs.ptr())) return std::string(py::bytes(fs));
    PyObject* b = PyUnicode_EncodeFSDefault(fs.ptr());
    if (!b) throw py::error_already_set();
    std::string out(PyBytes_AS_STRING(b), static_cast<std::size_t>(PyBytes_GET_SIZE(b)));
    Py_DECREF(b);
    return out;
#endif
}

py::str host_str(const std::string& s) {
#ifdef _WIN32
    return py::str(s);
#else
    PyObject* o = PyUnicode_DecodeFSDefaultAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
#endif
}

py::bytes to_bytes(const std::string& b) { return py::bytes(b.data(), b.size()); }

}  // namespace cimfs::bindings

namespace py = pybind11;
using namespace cimfs;
using namespace cimfs::bindings;

namespace {
// Run `f` (returning host paths) without the GIL; hand back a list of str.
template <class F>
py::list host_paths(F&& f) {
    std::vector<std::string> v;
    {
        py::gil_scoped_release nogil;
        v = f();
    }
    py::list out;
    for (auto& p : v) out.append(host_str(p));
    return out;
}
}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "cimfs C++ core (format engine); use the cimfs package instead";
    m.attr("__version__") = CIMFS_VERSION;
    register_errors(m);
    bind_writer(m);
    bind_image(m);
    bind_native(m);
    bind_layer(m);

    m.def("upcase_table", [] {
        const std::uint16_t* t = windows_upcase_table();
        std::string b(format::kUpcaseTableSize, '\0');
        for (std::uint32_t c = 0; c < format::kUpcaseTableEntries; ++c) {
            b[2 * c] = static_cast<char>(t[c] & 0xff);
            b[2 * c + 1] = static_cast<char>(t[c] >> 8);
        }
        return to_bytes(b);
    }, "Windows' upcase table as CimFS stores it (65536 little-endian u16).");
    m.def("null_dacl_security_descriptor", [] { return to_bytes(null_dacl_security_descriptor()); },
          "The NULL-DACL descriptor written when a file has none (as hcsshim does).");
    m.def("region_files", [](py::handle path, bool own_only) {
        std::string p = host_path(path);
        return host_paths([&] { return image_region_files(p, own_only); });
    }, py::arg("path"), py::arg("own_only") = false);
    m.def("usage", [](py::handle path, bool whole_chain) {
        std::string p = host_path(path);
        py::gil_scoped_release nogil;
        return image_usage(p, whole_chain);
    }, py::arg("path"), py::arg("whole_chain") = false);
    m.def("child_images", [](py::handle path) {
        std::string p = host_path(path);
        return host_paths([&] { return image_children(p); });
    }, py::arg("path"));
    m.def("collect_garbage", [](py::handle dir) {
        std::string d = host_path(dir);
        return host_paths([&] { return collect_garbage(d); });
    }, py::arg("directory"));
    m.def("destroy", [](py::handle path, bool force) {
        std::string p = host_path(path);
        py::gil_scoped_release nogil;
        destroy_image(p, force);
    }, py::arg("path"), py::arg("force") = false);
}
