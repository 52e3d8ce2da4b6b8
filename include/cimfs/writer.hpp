// Writing images. One interface, two backends: the portable writer that
// serializes the format itself, and (on Windows) the native one over cimfs.dll.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "cimfs/format.hpp"
#include "cimfs/metadata.hpp"

namespace cimfs {

struct CreateOptions {
    std::string directory;          // where the header, region and objectid files go
    std::string name;               // header file name, e.g. "layer.cim"
    std::string parent;             // optional: name of an image in `directory` to fork
    std::optional<format::Guid> region_set;  // fixed GUID for reproducible output
    std::uint32_t format_major = 3; // 2 or 3
    bool durable = false;           // fsync files and the directory at commit
};

// Writer operations, mirroring CimCreateFile & co. Paths are image-relative,
// backslash-separated (forward slashes accepted). At most one stream is open at
// a time; starting any other operation closes it and fails (naming the path) if
// fewer bytes than declared were written.
class ImageWriter {
public:
    virtual ~ImageWriter() = default;

    // Add a file or (with FILE_ATTRIBUTE_DIRECTORY) a directory. A file of
    // size > 0 leaves its default stream open for write(). Adding an existing
    // directory again updates its metadata and keeps its children; adding an
    // existing file replaces it.
    virtual void add_file(const std::u16string& path, const FileMetadata& meta) = 0;
    // Append to the open stream. The bytes go straight to the region file.
    virtual void write(const void* data, std::size_t n) = 0;
    // Close the open stream (an error if it is short of its declared size).
    virtual void close_stream() = 0;
    // "file:stream" with a declared size; the stream is left open for write().
    virtual void add_alternate_stream(const std::u16string& path, std::uint64_t size) = 0;
    // New name `new_path` for the existing file `existing_path`.
    virtual void add_hard_link(const std::u16string& existing_path, const std::u16string& new_path) = 0;
    // Remove a path; a directory goes with everything below it.
    virtual void remove(const std::u16string& path) = 0;
    // Native backend only (merged images): record a tombstone / merge link.
    virtual void add_tombstone(const std::u16string& path) = 0;
    virtual void add_merge_link(const std::u16string& existing_path, const std::u16string& new_path) = 0;
    // Write all metadata and make the image visible under its name.
    virtual void commit() = 0;
    // Release resources; an image that was not committed leaves no files behind.
    virtual void close() = 0;

    virtual const std::string& image_path() const = 0;
    virtual bool committed() const = 0;
};

std::unique_ptr<ImageWriter> create_portable_writer(const CreateOptions& options);

}  // namespace cimfs
