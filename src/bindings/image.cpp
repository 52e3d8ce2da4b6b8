// Reader bindings. The Image object is immutable once opened and safe to use
// from several threads; reads release the GIL and fill the caller's buffer.
#include <pybind11/stl.h>

#include "cimfs/error.hpp"
#include "cimfs/reader.hpp"
#include "convert.hpp"

namespace cimfs::bindings {

namespace {

py::tuple stat_tuple(const FileStat& s) {
    return py::make_tuple(s.file_id, s.parent_id, s.attributes, s.size, s.times.creation, s.times.last_write,
                          s.times.change, s.times.last_access, s.reparse_tag, s.link_count, s.ea_length,
                          s.is_directory, s.sparse, s.pe_image);
}

// Call a reader method on one file id with the GIL released.
template <class R>
R without_gil(R (Image::*method)(std::uint32_t) const, const Image& image, std::uint32_t id) {
    py::gil_scoped_release release;
    return (image.*method)(id);
}

py::list entries(const std::vector<DirEntry>& v) {
    py::list out;
    for (auto& e : v) out.append(py::make_tuple(from_u16(e.name), e.file_id));
    return out;
}

}  // namespace

void bind_image(py::module_& m) {
    py::class_<StreamHandle>(m, "StreamHandle")
        .def_readonly("file_id", &StreamHandle::file_id)
        .def_readonly("size", &StreamHandle::size);

    py::class_<Image>(m, "Image")
        .def(py::init([](py::handle path) {
            std::string p = host_path(path);
            py::gil_scoped_release nogil;
            return Image::open(p);
        }), py::arg("path"))
        .def_property_readonly("path", [](const Image& i) { return host_str(i.path()); })
        .def("info", [](const Image& i) {
            ImageInfo info = i.info();
            py::dict d;
            d["version"] = py::make_tuple(info.version.major, info.version.minor);
            py::list sets;
            for (auto& s : info.region_sets) sets.append(py::make_tuple(s.guid.to_string(), s.count));
            d["region_sets"] = sets;
            py::list files;
            for (auto& f : info.region_files) files.append(host_str(f));
            d["region_files"] = files;
            d["file_count"] = info.file_count;
            d["root_id"] = info.root_id;
            return d;
        })
        .def("lookup", [](const Image& i, py::handle path) {
            std::u16string p = to_u16(path);
            py::gil_scoped_release nogil;
            return i.lookup(p);
        })
        .def("stat", [](const Image& i, std::uint32_t id) { return stat_tuple(without_gil(&Image::stat, i, id)); })
        .def("listdir", [](const Image& i, std::uint32_t id) { return entries(without_gil(&Image::list_directory, i, id)); })
        .def("links", [](const Image& i, std::uint32_t id) { return entries(without_gil(&Image::links, i, id)); })
        .def("security_descriptor", [](const Image& i, std::uint32_t id) {
            return to_bytes(without_gil(&Image::security_descriptor, i, id));
        })
        .def("extended_attributes", [](const Image& i, std::uint32_t id) {
            return to_bytes(without_gil(&Image::extended_attributes, i, id));
        })
        .def("reparse_data", [](const Image& i, std::uint32_t id) {
            return to_bytes(without_gil(&Image::reparse_data, i, id));
        })
        .def("streams", [](const Image& i, std::uint32_t id) {
            std::vector<StreamInfo> v = without_gil(&Image::alternate_streams, i, id);
            py::list out;
            for (auto& s : v) out.append(py::make_tuple(from_u16(s.name), s.size));
            return out;
        })
        .def("open_stream", [](const Image& i, std::uint32_t id, py::object name) {
            if (name.is_none()) {
                py::gil_scoped_release nogil;
                return i.default_stream(id);
            }
            std::u16string n = to_u16(name);
            py::gil_scoped_release nogil;
            return i.alternate_stream(id, n);
        }, py::arg("file_id"), py::arg("name") = py::none())
        .def("readinto", [](const Image& i, const StreamHandle& s, std::uint64_t offset, py::handle buffer) {
            Py_buffer view;
            if (PyObject_GetBuffer(buffer.ptr(), &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0)
                throw py::error_already_set();
            std::size_t n = 0;
            try {
                py::gil_scoped_release nogil;
                n = i.read(s, offset, view.buf, static_cast<std::size_t>(view.len));
            } catch (...) {
                PyBuffer_Release(&view);
                throw;
            }
            PyBuffer_Release(&view);
            return n;
        })
        .def("read", [](const Image& i, const StreamHandle& s, std::uint64_t offset, std::size_t n) {
            std::uint64_t left = offset < s.size ? s.size - offset : 0;
            std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(n, left));
            py::bytes out(nullptr, want);
            char* dst = PyBytes_AS_STRING(out.ptr());
            std::size_t got;
            {
                py::gil_scoped_release nogil;
                got = i.read(s, offset, dst, want);
            }
            if (got != want) return py::bytes(dst, got);
            return out;
        })
        .def("verify", [](const Image& i) {
            py::gil_scoped_release nogil;
            return i.verify();
        });
}

}  // namespace cimfs::bindings
