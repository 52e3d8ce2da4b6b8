// Type translation between Python and the core, shared by the binding files:
// image paths (str <-> UTF-16, lone surrogates kept), host paths (os.fsencode
// rules), and byte blobs.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <mutex>
#include <string>

#include "cimfs/writer.hpp"

namespace cimfs::bindings {

namespace py = pybind11;

std::u16string to_u16(py::handle s);
py::str from_u16(const std::u16string& s);
std::string host_path(py::handle p);
py::str host_str(const std::string& s);
py::bytes to_bytes(const std::string& b);

// The writer object Python holds (either backend). Calls run with the GIL
// released, one at a time.
class PyWriter {
public:
    explicit PyWriter(std::unique_ptr<ImageWriter> w);
    PyWriter(py::handle directory, const std::string& name, const std::string& parent, py::object region_set,
             std::uint32_t format_major, bool durable, const std::string& backend, std::uint32_t create_flags);

    template <class F>
    void locked(F&& f) {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(mu_);
        if (!w_) throw std::logic_error("writer is closed");
        f(*w_);
    }

    std::unique_ptr<ImageWriter> w_;
    std::mutex mu_;
};

// Register the translator that turns cimfs::Error into cimfs.errors classes.
void register_errors(py::module_& m);
void bind_writer(py::module_& m);
void bind_image(py::module_& m);
void bind_native(py::module_& m);
void bind_layer(py::module_& m);

}  // namespace cimfs::bindings
