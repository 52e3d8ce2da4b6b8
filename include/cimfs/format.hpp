// On-disk structures of the CimFS format (see docs: cim-format.md). Everything is
// little-endian and packed; this header encodes and decodes explicitly instead of
// relying on struct layout, so it works on any host.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace cimfs::format {

inline constexpr char kMagic[8] = {'c', 'i', 'm', 'f', 'i', 'l', 'e', '0'};

inline constexpr std::uint32_t kCommonHeaderSize = 32;
inline constexpr std::uint32_t kFilesystemHeaderSize = 72;  // + parent RegionSets
inline constexpr std::uint32_t kRegionSetSize = 24;
inline constexpr std::uint32_t kRegionHeaderSize = 40;
inline constexpr std::uint32_t kObjectIdHeaderSize = 48;
inline constexpr std::uint32_t kObjectIdEntrySize = 40;
inline constexpr std::uint32_t kFilesystemObjectSize = 24;
inline constexpr std::uint32_t kFileTableDirectoryEntrySize = 16;
inline constexpr std::uint32_t kStreamSize = 16;
inline constexpr std::uint32_t kFileRecordSizeV2 = 96;
inline constexpr std::uint32_t kFileRecordSizeV3 = 104;
inline constexpr std::uint32_t kFilesPerTable = 1024;
inline constexpr std::uint32_t kUpcaseTableEntries = 65536;
inline constexpr std::uint32_t kUpcaseTableSize = kUpcaseTableEntries * 2;
inline constexpr std::uint32_t kDigestSize = 24;
inline constexpr std::uint32_t kLinkTableHeaderSize = 8;  // length u32, count u32
inline constexpr std::uint32_t kPeImageHeaderSize = 24;
inline constexpr std::uint32_t kPeMappingSize = 8;

inline constexpr std::uint32_t kMetadataAlignment = 8;
inline constexpr std::uint32_t kPageAlignment = 4096;
// Data objects shorter than this go to the small-data region (8-byte aligned),
// longer ones to the page-aligned data region. Windows' threshold is not public;
// one page is the natural choice and matches the fixture.
inline constexpr std::uint64_t kSmallDataLimit = 4096;

inline constexpr std::uint32_t kMaxNameUnits = 255;
inline constexpr std::uint32_t kMaxPathUnits = 32767;
inline constexpr std::uint32_t kMaxBlobSize = 65535;
inline constexpr std::uint32_t kMaxEaNameLength = 254;

enum class HeaderType : std::uint8_t { filesystem = 0, region = 1, object_id = 2 };
enum class RegionType : std::uint8_t { metadata = 0, page_data = 1, small_data = 2 };
enum class StreamType : std::uint8_t { data = 0, link_table = 1, pe_image = 2 };

// File record flags (u16) and the Win32 FILE_ATTRIBUTE_* values they stand for
// (named kAttr* so that they never collide with <windows.h>'s macros).
inline constexpr std::uint16_t kFlagReadOnly = 0x1;
inline constexpr std::uint16_t kFlagHidden = 0x2;
inline constexpr std::uint16_t kFlagSystem = 0x4;
inline constexpr std::uint16_t kFlagArchive = 0x8;
inline constexpr std::uint16_t kFlagSparse = 0x10;

inline constexpr std::uint32_t kAttrReadOnly = 0x1;
inline constexpr std::uint32_t kAttrHidden = 0x2;
inline constexpr std::uint32_t kAttrSystem = 0x4;
inline constexpr std::uint32_t kAttrDirectory = 0x10;
inline constexpr std::uint32_t kAttrArchive = 0x20;
inline constexpr std::uint32_t kAttrNormal = 0x80;
inline constexpr std::uint32_t kAttrSparseFile = 0x200;
inline constexpr std::uint32_t kAttrReparsePoint = 0x400;

std::uint16_t attributes_to_flags(std::uint32_t attributes);
// Attributes as Windows reports them: DIRECTORY and REPARSE_POINT derived from
// the record, NORMAL when nothing else is set.
std::uint32_t flags_to_attributes(std::uint16_t flags, bool directory, bool reparse_point);

// ---- little-endian helpers -------------------------------------------------
inline std::uint16_t ld16(const unsigned char* p) { return std::uint16_t(p[0] | (p[1] << 8)); }
inline std::uint32_t ld32(const unsigned char* p) {
    return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) |
           (std::uint32_t(p[3]) << 24);
}
inline std::uint64_t ld64(const unsigned char* p) {
    return std::uint64_t(ld32(p)) | (std::uint64_t(ld32(p + 4)) << 32);
}
inline void st16(unsigned char* p, std::uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
inline void st32(unsigned char* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (v >> (8 * i)) & 0xff;
}
inline void st64(unsigned char* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (v >> (8 * i)) & 0xff;
}

// ---- RegionOffset: region index in bits 48..63, byte offset in bits 0..47 ----
inline constexpr std::uint64_t kOffsetMask = (std::uint64_t(1) << 48) - 1;
inline std::uint64_t make_region_offset(std::uint16_t region, std::uint64_t offset) {
    return (std::uint64_t(region) << 48) | (offset & kOffsetMask);
}
inline std::uint16_t region_of(std::uint64_t ro) { return std::uint16_t(ro >> 48); }
inline std::uint64_t offset_of(std::uint64_t ro) { return ro & kOffsetMask; }

// ---- GUID ------------------------------------------------------------------
struct Guid {
    std::array<unsigned char, 16> bytes{};  // on-disk layout
    std::string to_string() const;          // lowercase 8-4-4-4-12
    static bool parse(const std::string& text, Guid& out);
    static Guid random();
    bool operator==(const Guid& o) const { return bytes == o.bytes; }
    bool operator!=(const Guid& o) const { return bytes != o.bytes; }
};

struct RegionSet {
    Guid guid;
    std::uint16_t count = 0;
};
void encode_region_set(unsigned char* p, const RegionSet& rs);
RegionSet decode_region_set(const unsigned char* p);

struct Version {
    std::uint32_t major = 3;
    std::uint32_t minor = 0;
};

void encode_common_header(unsigned char* p, std::uint32_t header_length, HeaderType type,
                          Version v);

// ---- Stream ------------------------------------------------------------------
struct Stream {
    std::uint64_t data = 0;    // RegionOffset
    std::uint64_t length = 0;  // 48 bits
    StreamType type = StreamType::data;
    bool sparse = false;
};
void encode_stream(unsigned char* p, const Stream& s);
Stream decode_stream(const unsigned char* p);

// ---- File record ---------------------------------------------------------------
struct FileRecord {
    std::uint16_t flags = 0;
    std::uint16_t ea_length = 0;
    std::uint32_t reparse_tag = 0;
    std::uint64_t creation_time = 0, last_write_time = 0, change_time = 0, last_access_time = 0;
    Stream default_stream;
    std::uint64_t security_descriptor = 0;  // RegionOffset
    std::uint64_t extended_attributes = 0;  // RegionOffset
    std::uint64_t reparse_data = 0;         // RegionOffset
    std::uint64_t stream_table = 0;         // RegionOffset (link table of Streams)
    std::uint32_t parent_file_id = 0;
    std::uint16_t base_region_index = 0;
    std::uint64_t links = 0;                // RegionOffset, format 3 only
};
void encode_file_record(unsigned char* p, const FileRecord& r, std::uint32_t entry_size);
FileRecord decode_file_record(const unsigned char* p, std::uint32_t entry_size);

}  // namespace cimfs::format
