// Type translation between Python and the core, shared by the binding files:
// image paths (str <-> UTF-16, lone surrogates kept), host paths (os.fsencode
// rules), and byte blobs.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace cimfs::bindings {

namespace py = pybind11;

std::u16string to_u16(py::handle s);
py::str from_u16(const std::u16string& s);
std::string host_path(py::handle p);
py::str host_str(const std::string& s);
py::bytes to_bytes(const std::string& b);

// Register the translator that turns cimfs::Error into cimfs.errors classes.
void register_errors(py::module_& m);
void bind_writer(py::module_& m);
void bind_image(py::module_& m);

}  // namespace cimfs::bindings
