// Tar header parsing for cimfs._tarstream: translation only (see
// include/cimfs/tar_header.hpp). Buffers come in through the buffer protocol;
// names and pax strings go out decoded as UTF-8 with surrogateescape, as the
// pure-Python reader did; errors are ValueError with the core's message.
#include "cimfs/tar_header.hpp"
#include "convert.hpp"

namespace cimfs::bindings {

namespace {

py::str decode(std::string_view s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

py::object number(const tar::Number& n) {
    if (n.status != tar::Number::kOk) return py::none();  // the caller's Python path decides
    return py::int_(n.value);
}

struct Bytes {
    const unsigned char* data;
    std::size_t size;
    py::buffer_info info;
    explicit Bytes(const py::buffer& b) : info(b.request()) {
        if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1)
            throw py::type_error("expected a contiguous byte buffer");
        data = static_cast<const unsigned char*>(info.ptr);
        size = static_cast<std::size_t>(info.size);
    }
};

}  // namespace

void bind_tar(py::module_& m) {
    m.def("tar_header", [](py::buffer buf, std::size_t pos, std::uint64_t offset) -> py::object {
        Bytes b(buf);
        if (pos > b.size || b.size - pos < tar::kBlock) throw py::value_error("a tar header block is 512 bytes");
        tar::Header h;
        std::string err = tar::parse_header(b.data + pos, tar::kBlock, offset, h);
        if (!err.empty()) throw py::value_error(err);
        if (h.end_block) return py::none();
        py::str name = decode(h.name);
        if (h.has_prefix) {  // decoded apart and joined, as the Python reader did
            PyObject* o = PyUnicode_FromFormat("%U/%U", decode(h.prefix).ptr(), name.ptr());
            if (!o) throw py::error_already_set();
            name = py::reinterpret_steal<py::str>(o);
        }
        PyObject* type = PyUnicode_FromOrdinal(h.typeflag ? h.typeflag : '0');
        if (!type) throw py::error_already_set();
        return py::make_tuple(name, py::reinterpret_steal<py::str>(type), number(h.size), decode(h.linkname),
                              number(h.mtime));
    }, py::arg("buffer"), py::arg("pos"), py::arg("offset"),
       "Parse the header block at buffer[pos:pos+512]: (name, type, size, linkname, mtime), or None for an "
       "all-zero block. size/mtime are None when the field needs Python (a huge base-256 value, or a bad "
       "mtime). ValueError on a bad checksum or size field.");
    m.def("tar_pax", [](py::buffer buf, std::uint64_t offset) {
        Bytes b(buf);
        std::vector<tar::PaxRecord> records;
        std::string err = tar::parse_pax(b.data, b.size, offset, records);
        if (!err.empty()) throw py::value_error(err);
        py::dict out;
        for (auto& r : records) out[decode(r.key)] = decode(r.value);
        return out;
    }, py::arg("data"), py::arg("offset"),
       "The records of a pax extended header as a dict of str (surrogateescape). ValueError when malformed.");
}

}  // namespace cimfs::bindings
