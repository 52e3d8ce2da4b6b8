// What a caller says about a file when adding it, and what a reader reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace cimfs {

// Raw bytes (security descriptors, EA blobs, reparse buffers).
using Bytes = std::string;

struct FileTimes {
    // FILETIME values: 100 ns intervals since 1601-01-01 UTC.
    std::uint64_t creation = 0;
    std::uint64_t last_write = 0;
    std::uint64_t change = 0;
    std::uint64_t last_access = 0;
};

// The CIMFS_FILE_METADATA of the Win32 API, owned.
struct FileMetadata {
    std::uint32_t attributes = 0;   // Win32 FILE_ATTRIBUTE_*; DIRECTORY makes a directory
    std::uint64_t size = 0;         // bytes of the default stream that will be written
    FileTimes times;
    // A self-relative SECURITY_DESCRIPTOR. nullopt: the NULL-DACL descriptor
    // hcsshim passes when a file has none (an empty one confuses Windows).
    std::optional<Bytes> security_descriptor;
    Bytes extended_attributes;      // FILE_FULL_EA_INFORMATION chain, may be empty
    Bytes reparse_data;             // REPARSE_DATA_BUFFER, may be empty
};

// hcsshim's NULL DACL: revision 1, SE_SELF_RELATIVE | SE_DACL_PRESENT, no owner,
// group, SACL or DACL.
Bytes null_dacl_security_descriptor();

struct FileStat {
    std::uint32_t file_id = 0;
    std::uint32_t parent_id = 0;
    std::uint32_t attributes = 0;
    std::uint64_t size = 0;
    FileTimes times;
    std::uint32_t reparse_tag = 0;
    std::uint32_t link_count = 1;
    std::uint16_t ea_length = 0;
    bool is_directory = false;
    bool has_security_descriptor = false;
    bool sparse = false;
    bool pe_image = false;
};

}  // namespace cimfs
