// Native-backend bindings (cimfs.dll): capabilities, mounting, block, merged
// and verified images. Off Windows the core throws Error(unsupported), which
// becomes cimfs.UnsupportedError.
#include <pybind11/stl.h>

#include "cimfs/native.hpp"
#include "convert.hpp"

namespace cimfs::bindings {

namespace {

using BlockTuple = std::tuple<std::uint32_t, py::object, std::string>;  // (type, block path, name)

native::BlockImage block_image(const BlockTuple& t) {
    native::BlockImage b;
    std::uint32_t type = std::get<0>(t);
    if (type > 2) throw py::value_error("block type must be 0 (none), 1 (single file) or 2 (device)");
    b.type = static_cast<native::BlockType>(type);
    b.block_path = host_path(std::get<1>(t));
    b.name = std::get<2>(t);
    return b;
}

std::vector<native::BlockImage> block_images(const std::vector<BlockTuple>& v) {
    std::vector<native::BlockImage> out;
    for (auto& t : v) out.push_back(block_image(t));
    return out;
}

std::optional<format::Guid> volume_guid(py::object volume) {
    if (volume.is_none()) return std::nullopt;
    format::Guid g;
    std::string text = py::cast<std::string>(py::str(volume));
    if (!native::parse_volume_path(text, g)) throw py::value_error("not a volume GUID or path: " + text);
    return g;
}

}  // namespace

void bind_native(py::module_& m) {
    m.def("native_capabilities", [] {
        native::Capabilities c;
        {
            py::gil_scoped_release nogil;
            c = native::capabilities();
        }
        py::dict d;
        d["supported"] = c.supported;
        d["block"] = c.block;
        d["merged"] = c.merged;
        d["verified"] = c.verified;
        d["build"] = c.build;
        d["revision"] = c.revision;
        d["reason"] = c.reason;
        d["cimfs_dll"] = c.cimfs_dll;
        d["cimwriter_dll"] = c.cimwriter_dll;
        return d;
    });
    m.def("mount", [](py::object image, std::uint32_t flags, py::object volume) {
        std::string p = host_path(image);
        auto g = volume_guid(volume);
        py::gil_scoped_release nogil;
        return native::mount(p, flags, g);
    }, py::arg("image"), py::arg("flags") = 0, py::arg("volume") = py::none());
    m.def("merge_mount", [](const BlockTuple& merged, const std::vector<BlockTuple>& sources, std::uint32_t flags,
                            py::object volume) {
        auto mb = block_image(merged);
        auto sb = block_images(sources);
        auto g = volume_guid(volume);
        py::gil_scoped_release nogil;
        return native::merge_mount(mb, sb, flags, g);
    }, py::arg("merged"), py::arg("sources"), py::arg("flags") = 0, py::arg("volume") = py::none());
    m.def("mount_verified", [](const BlockTuple& image, py::bytes root_hash, std::uint32_t flags, py::object volume) {
        auto b = block_image(image);
        std::string h = root_hash;
        auto g = volume_guid(volume);
        py::gil_scoped_release nogil;
        return native::mount_verified(b, h, flags, g);
    }, py::arg("image"), py::arg("root_hash"), py::arg("flags") = 0, py::arg("volume") = py::none());
    m.def("merge_mount_verified", [](const BlockTuple& merged, const std::vector<BlockTuple>& sources,
                                     py::bytes root_hash, std::uint32_t flags, py::object volume) {
        auto mb = block_image(merged);
        auto sb = block_images(sources);
        std::string h = root_hash;
        auto g = volume_guid(volume);
        py::gil_scoped_release nogil;
        return native::merge_mount_verified(mb, sb, h, flags, g);
    }, py::arg("merged"), py::arg("sources"), py::arg("root_hash"), py::arg("flags") = 0,
       py::arg("volume") = py::none());
    m.def("dismount", [](const std::string& volume) {
        py::gil_scoped_release nogil;
        native::dismount(volume);
    }, py::arg("volume"));
    m.def("create_block_writer", [](const BlockTuple& image, bool consistent, bool verified) {
        auto b = block_image(image);
        native::BlockOptions o;
        o.consistent = consistent;
        o.verified = verified;
        std::unique_ptr<ImageWriter> w;
        {
            py::gil_scoped_release nogil;
            w = native::create_block_image(b, o);
        }
        return std::make_unique<PyWriter>(std::move(w));
    }, py::arg("image"), py::arg("consistent") = true, py::arg("verified") = false);
    m.def("merge_block_images", [](const BlockTuple& merged, const std::vector<BlockTuple>& sources, bool consistent,
                                   bool verified) {
        auto mb = block_image(merged);
        auto sb = block_images(sources);
        native::BlockOptions o;
        o.consistent = consistent;
        o.verified = verified;
        py::gil_scoped_release nogil;
        native::merge_block_images(mb, sb, o);
    }, py::arg("merged"), py::arg("sources"), py::arg("consistent") = true, py::arg("verified") = false);
    m.def("add_fs_to_merged_image", [](PyWriter& w, py::object image, std::uint32_t flags) {
        std::string p = host_path(image);
        w.locked([&](ImageWriter& iw) { native::add_fs_to_merged_image(iw, p, flags); });
    }, py::arg("writer"), py::arg("image"), py::arg("flags") = 0);
    m.def("seal_image", [](py::object block_path) {
        std::string p = host_path(block_path);
        Bytes h;
        {
            py::gil_scoped_release nogil;
            h = native::seal_image(p);
        }
        return to_bytes(h);
    }, py::arg("block_path"));
    m.def("verification_info", [](py::object block_path) {
        std::string p = host_path(block_path);
        native::VerificationInfo v;
        {
            py::gil_scoped_release nogil;
            v = native::get_verification_information(p);
        }
        py::dict d;
        d["sealed"] = v.sealed;
        d["root_hash"] = to_bytes(v.root_hash);
        d["signature"] = to_bytes(v.signature);
        d["fixed_header_size"] = v.fixed_header_size;
        return d;
    }, py::arg("block_path"));
}

}  // namespace cimfs::bindings
