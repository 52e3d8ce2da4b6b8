// Reading images with the portable reader: every offset and length that comes
// from disk is checked before use; damage raises Error(corrupt_image).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cimfs/format.hpp"
#include "cimfs/metadata.hpp"
#include "cimfs/platform.hpp"

namespace cimfs {

struct DirEntry {
    std::u16string name;
    std::uint32_t file_id;
};

// A readable stream (default or alternate) resolved from a file record.
struct StreamHandle {
    std::uint32_t file_id = 0;
    format::Stream stream;   // as stored
    std::uint64_t size = 0;  // logical size (PE images: the file length)
};

struct StreamInfo {
    std::u16string name;
    std::uint64_t size = 0;
};

struct ImageInfo {
    format::Version version;
    std::vector<format::RegionSet> region_sets;  // parents first, own set last
    std::vector<std::string> region_files;       // in RegionOffset index order
    std::uint32_t file_count = 0;
    std::uint32_t root_id = 1;
};

class Image {
public:
    virtual ~Image() = default;
    static std::unique_ptr<Image> open(const std::string& header_path);

    virtual const std::string& path() const = 0;
    virtual ImageInfo info() const = 0;

    // Path -> file id (case-insensitive, through the image's upcase table).
    virtual std::uint32_t lookup(const std::u16string& path) const = 0;
    virtual FileStat stat(std::uint32_t file_id) const = 0;
    virtual std::vector<DirEntry> list_directory(std::uint32_t file_id) const = 0;
    virtual Bytes security_descriptor(std::uint32_t file_id) const = 0;
    virtual Bytes extended_attributes(std::uint32_t file_id) const = 0;
    virtual Bytes reparse_data(std::uint32_t file_id) const = 0;
    // The names this file has (format 3 links table): (parent id, name) pairs.
    virtual std::vector<DirEntry> links(std::uint32_t file_id) const = 0;
    virtual std::vector<StreamInfo> alternate_streams(std::uint32_t file_id) const = 0;

    virtual StreamHandle default_stream(std::uint32_t file_id) const = 0;
    virtual StreamHandle alternate_stream(std::uint32_t file_id, const std::u16string& name) const = 0;
    // Read up to n bytes at `offset`; returns the count (0 at end).
    virtual std::size_t read(const StreamHandle& s, std::uint64_t offset, void* out,
                             std::size_t n) const = 0;

    // Structural check of the whole image; returns problems found (empty: fine).
    virtual std::vector<std::string> verify() const = 0;

    // Raw access, for forking an image and for tools: the file record as stored
    // (RegionOffsets index info().region_files) and the alternate-stream table.
    virtual format::FileRecord record(std::uint32_t file_id) const = 0;
    virtual std::vector<std::pair<std::u16string, format::Stream>> stream_table(std::uint32_t file_id) const = 0;
};

// Image files on disk (DestroyCim / GetCimUsage of the Win32 API, portable).
// region files in RegionOffset order (parents first); own_only: the image's own
// region and objectid files.
std::vector<std::string> image_region_files(const std::string& header_path, bool own_only);
// Bytes of the header plus the image's own region and objectid files; with
// `whole_chain`, plus the region and objectid files of every parent region set.
std::uint64_t image_usage(const std::string& header_path, bool whole_chain = false);
// Images in the same directory whose headers list this image's region set as a parent.
std::vector<std::string> image_children(const std::string& header_path);
// Remove the header and the image's own region/objectid files. Refuses (busy)
// while another image in the directory forks it, unless `force`.
void destroy_image(const std::string& header_path, bool force = false);
// Remove what interrupted writers left in `directory`: temporary files and
// region/objectid files that no image header there refers to. Takes the
// directory's writer lock (busy while a writer works). Returns what it removed.
std::vector<std::string> collect_garbage(const std::string& directory);
// The writer lock of an image directory (unlocked when another writer holds
// it); a failure to open the lock file is reported as `op` on `image`.
platform::FileLock lock_directory(const std::string& dir, const char* op, const std::string& image);

}  // namespace cimfs
