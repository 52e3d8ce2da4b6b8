// Layer import bindings: translation only (see include/cimfs/layer_import.hpp).
// The import runs with the GIL released and the writer locked; the GIL is
// taken back only to call the Python read and log functions. Entry names go
// out decoded as UTF-8 with surrogateescape (bytes that are not UTF-8 stay
// visible in messages).
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "cimfs/layer_import.hpp"
#include "cimfs/layer_records.hpp"
#include "cimfs/reader.hpp"
#include "convert.hpp"

namespace cimfs::bindings {

namespace {

py::str decode(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

struct PyLayerImporter {
    PyWriter& writer;
    py::object writer_ref;  // keeps the writer alive
    std::unique_ptr<Image> parent;
    layer::LayerImporter importer;

    PyLayerImporter(py::object w, py::handle parent_path, std::size_t buffer_size)
        : writer(w.cast<PyWriter&>()),
          writer_ref(w),
          parent(open_parent(parent_path)),
          importer(*checked(writer.w_), parent.get(), buffer_size) {}

    static std::unique_ptr<Image> open_parent(py::handle p) {
        if (p.is_none()) return nullptr;
        std::string path = host_path(p);
        py::gil_scoped_release nogil;
        return Image::open(path);
    }
    static ImageWriter* checked(const std::unique_ptr<ImageWriter>& w) {
        if (!w) throw std::logic_error("writer is closed");
        return w.get();
    }

    void run(py::object readinto, py::object log) {
        layer::ReadFn read = [&readinto](unsigned char* buf, std::size_t n) -> std::size_t {
            py::gil_scoped_acquire gil;
            py::memoryview view = py::memoryview::from_memory(buf, static_cast<py::ssize_t>(n), false);
            py::object r = readinto(view);
            view.attr("release")();  // the buffer is C++'s: no view of it may outlive the call
            if (r.is_none()) return 0;
            auto got = r.cast<std::size_t>();
            if (got > n) throw py::value_error("readinto() returned more bytes than it was given room for");
            return got;
        };
        guarded(log, [&] { importer.run(read); });
    }

    // Run an import with the writer locked and the GIL released; ImportError
    // becomes LayerImportFailure(entry, record, reason).
    template <class F>
    void guarded(py::object log, F&& f) {
        if (!log.is_none())
            importer.set_log([log](const std::string& m) {
                py::gil_scoped_acquire gil;
                log(decode(m));
            });
        try {
            writer.locked([&](ImageWriter&) { f(); });
        } catch (const layer::ImportError& e) {
            importer.set_log(nullptr);
            py::object failure = py::module_::import("cimfs._core").attr("LayerImportFailure");
            PyErr_SetObject(failure.ptr(),
                            py::make_tuple(decode(e.entry), decode(e.record), decode(e.reason)).ptr());
            throw py::error_already_set();
        } catch (...) {
            importer.set_log(nullptr);
            throw;
        }
        importer.set_log(nullptr);
    }

    py::dict stats() const {
        const layer::ImportStats& s = importer.stats();
        py::dict d;
        d["entries"] = s.entries;
        d["files"] = s.files;
        d["directories"] = s.directories;
        d["implicit_directories"] = s.implicit_directories;
        d["links"] = s.links;
        d["symlinks"] = s.symlinks;
        d["streams"] = s.streams;
        d["whiteouts"] = s.whiteouts;
        d["bytes"] = s.bytes;
        return d;
    }
};

py::bytes checked_bytes(const std::string& why, const Bytes& out) {
    if (!why.empty()) throw py::value_error(why);
    return to_bytes(out);
}

}  // namespace

void bind_layer(py::module_& m) {
    py::exception<layer::ImportError>(m, "LayerImportFailure", PyExc_ValueError);
    py::class_<PyLayerImporter>(m, "LayerImporter")
        .def(py::init<py::object, py::handle, std::size_t>(), py::arg("writer"), py::arg("parent_path"),
             py::arg("buffer_size") = 1 << 20)
        .def("run", &PyLayerImporter::run, py::arg("readinto"), py::arg("log") = py::none(),
             "Import the tar that readinto(memoryview) -> int fills. Raises LayerImportFailure(entry, record, "
             "reason); exceptions of readinto and log pass through.")
        .def_property_readonly("entries", [](const PyLayerImporter& i) { return i.importer.stats().entries; })
        .def("stats", &PyLayerImporter::stats);
    m.def("encode_eas", [](const std::vector<std::pair<py::bytes, py::bytes>>& eas, std::uint8_t flags) {
        std::vector<std::pair<std::string, Bytes>> in;
        in.reserve(eas.size());
        for (auto& [name, value] : eas) in.emplace_back(std::string(name), std::string(value));
        Bytes out;
        std::string why = layer::encode_eas(in, flags, out);
        return checked_bytes(why, out);
    }, py::arg("eas"), py::arg("flags") = 0);
    m.def("encode_reparse_point", [](py::handle target, bool mount_point) {
        Bytes out;
        std::string why = layer::encode_reparse_point(to_u16(target), mount_point, out);
        return checked_bytes(why, out);
    }, py::arg("target"), py::arg("mount_point") = false);
}

}  // namespace cimfs::bindings
