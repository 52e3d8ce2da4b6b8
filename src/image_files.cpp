// The files that make up an image on disk: header parsing, listing, usage and
// removal (the portable counterparts of GetCimUsage and DestroyCim).
#include <cerrno>
#include <cstring>

#include "cimfs/error.hpp"
#include "cimfs/platform.hpp"
#include "cimfs/reader.hpp"
#include "header.hpp"

namespace cimfs {

namespace detail {

using namespace format;

std::string region_file_name(const RegionSet& set, unsigned index) {
    return "region_" + set.guid.to_string() + "_" + std::to_string(index);
}

std::string objectid_file_name(const RegionSet& set, unsigned index) {
    return "objectid_" + set.guid.to_string() + "_" + std::to_string(index);
}

ParsedHeader read_header(const std::string& path, const char* op) {
    if (!platform::exists(path))
        throw_op_error(Errc::not_found, op, path, "no such image", ENOENT);
    platform::File f = platform::File::open_read(path);
    std::uint64_t size = f.size();
    if (size < kFilesystemHeaderSize)
        throw_op_error(Errc::corrupt_image, op, path, "not a CIM image: file shorter than its 72-byte header", EIO);
    unsigned char h[kFilesystemHeaderSize];
    f.pread_exact(h, sizeof h, 0);
    if (std::memcmp(h, kMagic, 8) != 0)
        throw_op_error(Errc::corrupt_image, op, path, "not a CIM image: bad magic", EIO);
    if (h[12] != static_cast<unsigned char>(HeaderType::filesystem))
        throw_op_error(Errc::corrupt_image, op, path, "not a filesystem header (a region or objectid file?)", EIO);
    ParsedHeader ph;
    ph.version.major = ld32(h + 16);
    ph.version.minor = ld32(h + 20);
    if (ph.version.major < 2 || ph.version.major > 3)
        throw_op_error(Errc::corrupt_image, op, path,
                       "unsupported format version " + std::to_string(ph.version.major) + "." +
                           std::to_string(ph.version.minor) + " (2.x and 3.x are known)", EIO);
    std::uint32_t header_length = ld32(h + 8);
    if (header_length < kFilesystemHeaderSize)
        throw_op_error(Errc::corrupt_image, op, path, "header length field too small", EIO);
    ph.own = decode_region_set(h + 32);
    ph.filesystem_offset = ld64(h + 56);
    std::uint16_t parents = ld16(h + 70);
    if (size < kFilesystemHeaderSize + std::uint64_t(parents) * kRegionSetSize)
        throw_op_error(Errc::corrupt_image, op, path, "header lists more parent region sets than it holds", EIO);
    std::vector<unsigned char> ps(std::size_t(parents) * kRegionSetSize);
    if (!ps.empty()) f.pread_exact(ps.data(), ps.size(), kFilesystemHeaderSize);
    std::uint32_t total = ph.own.count;
    for (unsigned i = 0; i < parents; ++i) {
        ph.parents.push_back(decode_region_set(&ps[i * kRegionSetSize]));
        total += ph.parents.back().count;
    }
    if (total > 0xFFFF)
        throw_op_error(Errc::corrupt_image, op, path, "more than 65535 region files", EIO);
    return ph;
}

}  // namespace detail

std::vector<std::string> image_region_files(const std::string& header_path, bool own_only) {
    auto ph = detail::read_header(header_path, "list regions");
    std::string dir = platform::dirname(header_path);
    std::vector<std::string> files;
    auto add_set = [&](const format::RegionSet& s, bool with_objectids) {
        for (unsigned i = 0; i < s.count; ++i) {
            files.push_back(platform::join(dir, detail::region_file_name(s, i)));
            if (with_objectids) files.push_back(platform::join(dir, detail::objectid_file_name(s, i)));
        }
    };
    if (!own_only)
        for (auto& p : ph.parents) add_set(p, false);
    add_set(ph.own, own_only);
    return files;
}

std::uint64_t image_usage(const std::string& header_path, bool whole_chain) {
    auto ph = detail::read_header(header_path, "usage");
    std::string dir = platform::dirname(header_path);
    std::uint64_t total = platform::file_size(header_path);
    std::vector<format::RegionSet> sets{ph.own};
    if (whole_chain) sets.insert(sets.end(), ph.parents.begin(), ph.parents.end());
    for (const auto& set : sets) {
        for (unsigned i = 0; i < set.count; ++i) {
            for (auto name : {detail::region_file_name(set, i), detail::objectid_file_name(set, i)}) {
                std::string p = platform::join(dir, name);
                if (platform::exists(p)) total += platform::file_size(p);
            }
        }
    }
    return total;
}

std::vector<std::string> image_children(const std::string& header_path) {
    auto ph = detail::read_header(header_path, "list children");
    std::string dir = platform::dirname(header_path);
    std::string self = platform::basename(header_path);
    std::vector<std::string> children;
    for (const std::string& name : platform::list_directory(dir)) {
        if (name == self || name.rfind("region_", 0) == 0 || name.rfind("objectid_", 0) == 0 ||
            name.rfind(".cimfs-tmp-", 0) == 0)
            continue;
        std::string p = platform::join(dir, name);
        try {
            auto other = detail::read_header(p, "list children");
            for (const auto& parent : other.parents)
                if (parent.guid == ph.own.guid) {
                    children.push_back(p);
                    break;
                }
        } catch (const Error&) {
            // not an image header: ignore
        }
    }
    return children;
}

platform::FileLock lock_directory(const std::string& dir, const char* op, const std::string& image) {
    try {
        return platform::FileLock::try_acquire(platform::join(dir, platform::kWriterLockName));
    } catch (const Error& e) {
        throw Error(e.code, ErrorSubject::op, op, image, "", "",
                    "cannot take the writer lock in " + dir + ": " + e.reason, e.sys_errno, e.winerror);
    }
}

std::vector<std::string> collect_garbage(const std::string& directory) {
    std::string dir = directory.empty() ? "." : directory;
    if (!platform::exists(dir))
        throw_op_error(Errc::not_found, "gc", dir, "no such directory", ENOENT);
    platform::FileLock lock = lock_directory(dir, "gc", dir);
    if (!lock.locked())
        throw_op_error(Errc::busy, "gc", dir, "a writer is working in this directory; try again when it is done", EBUSY);
    std::vector<std::string> names = platform::list_directory(dir);
    // Region sets some header still needs (its own or a parent's).
    std::vector<format::Guid> needed;
    for (const std::string& name : names) {
        if (name.rfind("region_", 0) == 0 || name.rfind("objectid_", 0) == 0 ||
            name.rfind(platform::kTempPrefix, 0) == 0 || name == platform::kWriterLockName)
            continue;
        try {
            auto ph = detail::read_header(platform::join(dir, name), "gc");
            needed.push_back(ph.own.guid);
            for (auto& p : ph.parents) needed.push_back(p.guid);
        } catch (const Error&) {
        }
    }
    std::vector<std::string> removed;
    for (const std::string& name : names) {
        bool orphan = false;
        if (name.rfind(platform::kTempPrefix, 0) == 0) {
            orphan = true;  // left by a writer that died before commit
        } else {
            std::string rest;
            if (name.rfind("region_", 0) == 0) rest = name.substr(7);
            else if (name.rfind("objectid_", 0) == 0) rest = name.substr(9);
            format::Guid g;
            if (rest.size() > 37 && rest[36] == '_' && format::Guid::parse(rest.substr(0, 36), g)) {
                orphan = true;
                for (auto& n : needed)
                    if (n == g) orphan = false;
            }
        }
        if (!orphan) continue;
        std::string p = platform::join(dir, name);
        platform::OsError err;
        if (!platform::remove_file(p, &err)) throw_op_error(Errc::io, "gc", dir, p + ": " + err.message, err.code);
        removed.push_back(p);
    }
    return removed;
}

void destroy_image(const std::string& header_path, bool force) {
    auto ph = detail::read_header(header_path, "destroy");
    std::string dir = platform::dirname(header_path);
    if (!force) {
        auto children = image_children(header_path);
        if (!children.empty())
            throw_op_error(Errc::busy, "destroy", header_path,
                           "image " + children.front() + (children.size() > 1 ? " and others fork" : " forks") +
                               " it (its regions are shared); destroy the children first or force",
                           EBUSY);
    }
    // The header goes first: once it is gone no reader can open a half-removed image.
    platform::OsError err;
    if (!platform::remove_file(header_path, &err))
        throw_op_error(Errc::io, "destroy", header_path, err.message, err.code);
    for (unsigned i = 0; i < ph.own.count; ++i) {
        for (auto name : {detail::region_file_name(ph.own, i), detail::objectid_file_name(ph.own, i)}) {
            std::string p = platform::join(dir, name);
            if (platform::exists(p) && !platform::remove_file(p, &err))
                throw_op_error(Errc::io, "destroy", header_path, p + ": " + err.message, err.code);
        }
    }
}

}  // namespace cimfs
