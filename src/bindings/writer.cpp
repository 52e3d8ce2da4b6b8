// Writer bindings. write() takes any C-contiguous buffer and hands its memory
// to the core with the GIL released: the bytes go from the caller's object to
// the region file without a copy. A mutex serializes calls from several threads.
#include <pybind11/stl.h>

#include "cimfs/native.hpp"
#include "cimfs/writer.hpp"
#include "convert.hpp"

namespace cimfs::bindings {

PyWriter::PyWriter(std::unique_ptr<ImageWriter> w) : w_(std::move(w)) {}

PyWriter::PyWriter(py::handle directory, const std::string& name, const std::string& parent,
                   py::object region_set, std::uint32_t format_major, bool durable, const std::string& backend,
                   std::uint32_t create_flags) {
    CreateOptions o;
    o.directory = host_path(directory);
    o.name = name;
    o.parent = parent;
    o.format_major = format_major;
    o.durable = durable;
    if (!region_set.is_none()) {
        format::Guid g;
        std::string text = py::cast<std::string>(py::str(region_set));
        if (!format::Guid::parse(text, g)) throw py::value_error("region_set is not a GUID: " + text);
        o.region_set = g;
    }
    if (backend != "portable" && backend != "native")
        throw py::value_error("backend must be 'portable' or 'native'");
    py::gil_scoped_release nogil;
    w_ = backend == "native" ? native::create_writer(o, create_flags) : create_portable_writer(o);
}

namespace {

void add_file(PyWriter& w, py::handle path, std::uint32_t attributes, std::uint64_t size, std::uint64_t creation,
              std::uint64_t last_write, std::uint64_t change, std::uint64_t last_access, std::optional<py::bytes> sd,
              py::bytes ea, py::bytes reparse) {
    std::u16string p = to_u16(path);
    FileMetadata meta;
    meta.attributes = attributes;
    meta.size = size;
    meta.times = FileTimes{creation, last_write, change, last_access};
    if (sd) meta.security_descriptor = std::string(*sd);
    meta.extended_attributes = std::string(ea);
    meta.reparse_data = std::string(reparse);
    w.locked([&](ImageWriter& iw) { iw.add_file(p, meta); });
}

void write(PyWriter& w, py::handle data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
    try {
        w.locked([&](ImageWriter& iw) { iw.write(view.buf, static_cast<std::size_t>(view.len)); });
    } catch (...) {
        PyBuffer_Release(&view);
        throw;
    }
    PyBuffer_Release(&view);
}

void close(PyWriter& w) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(w.mu_);
    if (w.w_) w.w_->close();
}

}  // namespace

void bind_writer(py::module_& m) {
    py::class_<PyWriter>(m, "Writer")
        .def(py::init<py::handle, const std::string&, const std::string&, py::object, std::uint32_t, bool,
                      const std::string&, std::uint32_t>(),
             py::arg("directory"), py::arg("name"), py::arg("parent") = "", py::arg("region_set") = py::none(),
             py::arg("format_major") = 3, py::arg("durable") = false, py::arg("backend") = "portable",
             py::arg("create_flags") = 0)
        .def("add_file", &add_file, py::arg("path"), py::arg("attributes"), py::arg("size"),
             py::arg("creation_time"), py::arg("last_write_time"), py::arg("change_time"),
             py::arg("last_access_time"), py::arg("security_descriptor"), py::arg("extended_attributes"),
             py::arg("reparse_data"))
        .def("write", &write, py::arg("data"))
        .def("close_stream", [](PyWriter& w) { w.locked([](ImageWriter& iw) { iw.close_stream(); }); })
        .def("add_stream", [](PyWriter& w, py::handle path, std::uint64_t size) {
            std::u16string p = to_u16(path);
            w.locked([&](ImageWriter& iw) { iw.add_alternate_stream(p, size); });
        }, py::arg("path"), py::arg("size"))
        .def("add_link", [](PyWriter& w, py::handle existing, py::handle new_path) {
            std::u16string e = to_u16(existing), n = to_u16(new_path);
            w.locked([&](ImageWriter& iw) { iw.add_hard_link(e, n); });
        }, py::arg("existing"), py::arg("new_path"))
        .def("remove", [](PyWriter& w, py::handle path) {
            std::u16string p = to_u16(path);
            w.locked([&](ImageWriter& iw) { iw.remove(p); });
        }, py::arg("path"))
        .def("add_tombstone", [](PyWriter& w, py::handle path) {
            std::u16string p = to_u16(path);
            w.locked([&](ImageWriter& iw) { iw.add_tombstone(p); });
        }, py::arg("path"))
        .def("add_merge_link", [](PyWriter& w, py::handle existing, py::handle new_path) {
            std::u16string e = to_u16(existing), n = to_u16(new_path);
            w.locked([&](ImageWriter& iw) { iw.add_merge_link(e, n); });
        }, py::arg("existing"), py::arg("new_path"))
        .def("commit", [](PyWriter& w) { w.locked([](ImageWriter& iw) { iw.commit(); }); })
        .def("close", &close)
        .def_property_readonly("image_path", [](PyWriter& w) {
            std::lock_guard<std::mutex> lock(w.mu_);
            return host_str(w.w_->image_path());
        })
        .def_property_readonly("committed", [](PyWriter& w) {
            std::lock_guard<std::mutex> lock(w.mu_);
            return w.w_->committed();
        });
}

}  // namespace cimfs::bindings
