#include "cimfs/format.hpp"

#include <cstdio>

#include "cimfs/platform.hpp"

namespace cimfs::format {

std::uint16_t attributes_to_flags(std::uint32_t a) {
    std::uint16_t f = 0;
    if (a & kAttrReadOnly) f |= kFlagReadOnly;
    if (a & kAttrHidden) f |= kFlagHidden;
    if (a & kAttrSystem) f |= kFlagSystem;
    if (a & kAttrArchive) f |= kFlagArchive;
    if (a & kAttrSparseFile) f |= kFlagSparse;
    return f;
}

std::uint32_t flags_to_attributes(std::uint16_t f, bool directory, bool reparse_point) {
    std::uint32_t a = 0;
    if (f & kFlagReadOnly) a |= kAttrReadOnly;
    if (f & kFlagHidden) a |= kAttrHidden;
    if (f & kFlagSystem) a |= kAttrSystem;
    if (f & kFlagArchive) a |= kAttrArchive;
    if (f & kFlagSparse) a |= kAttrSparseFile;
    if (directory) a |= kAttrDirectory;
    if (reparse_point) a |= kAttrReparsePoint;
    if (a == 0) a = kAttrNormal;
    return a;
}

std::string Guid::to_string() const {
    const unsigned char* b = bytes.data();
    char buf[40];
    std::snprintf(buf, sizeof buf,
                  "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", ld32(b), ld16(b + 4),
                  ld16(b + 6), b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return buf;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool Guid::parse(const std::string& text_in, Guid& out) {
    std::string text = text_in;
    if (text.size() == 38 && text.front() == '{' && text.back() == '}')
        text = text.substr(1, 36);
    if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' ||
        text[23] != '-')
        return false;
    std::string hex;
    for (char c : text)
        if (c != '-') hex += c;
    if (hex.size() != 32) return false;
    unsigned char v[16];
    for (int i = 0; i < 16; ++i) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        v[i] = static_cast<unsigned char>(hi * 16 + lo);
    }
    // Text order: Data1 (4, big-endian text), Data2 (2), Data3 (2), Data4 (8 bytes in order).
    unsigned char* b = out.bytes.data();
    b[0] = v[3]; b[1] = v[2]; b[2] = v[1]; b[3] = v[0];
    b[4] = v[5]; b[5] = v[4];
    b[6] = v[7]; b[7] = v[6];
    for (int i = 8; i < 16; ++i) b[i] = v[i];
    return true;
}

Guid Guid::random() {
    Guid g;
    platform::random_bytes(g.bytes.data(), g.bytes.size());
    // RFC 4122 version 4 in Data3, variant bits in Data4[0].
    g.bytes[7] = static_cast<unsigned char>((g.bytes[7] & 0x0f) | 0x40);
    g.bytes[8] = static_cast<unsigned char>((g.bytes[8] & 0x3f) | 0x80);
    return g;
}

void encode_region_set(unsigned char* p, const RegionSet& rs) {
    std::memcpy(p, rs.guid.bytes.data(), 16);
    st16(p + 16, rs.count);
    st16(p + 18, 0);
    st32(p + 20, 0);
}

RegionSet decode_region_set(const unsigned char* p) {
    RegionSet rs;
    std::memcpy(rs.guid.bytes.data(), p, 16);
    rs.count = ld16(p + 16);
    return rs;
}

void encode_common_header(unsigned char* p, std::uint32_t header_length, HeaderType type,
                          Version v) {
    std::memset(p, 0, kCommonHeaderSize);
    std::memcpy(p, kMagic, 8);
    st32(p + 8, header_length);
    p[12] = static_cast<unsigned char>(type);
    st32(p + 16, v.major);
    st32(p + 20, v.minor);
}

void encode_stream(unsigned char* p, const Stream& s) {
    st64(p, s.data);
    std::uint64_t lt = (s.length & kOffsetMask) | (std::uint64_t(static_cast<std::uint8_t>(s.type)) << 48) |
                       (std::uint64_t(s.sparse ? 1 : 0) << 56);
    st64(p + 8, lt);
}

Stream decode_stream(const unsigned char* p) {
    Stream s;
    s.data = ld64(p);
    std::uint64_t lt = ld64(p + 8);
    s.length = lt & kOffsetMask;
    s.type = static_cast<StreamType>((lt >> 48) & 0xff);
    s.sparse = ((lt >> 56) & 1) != 0;
    return s;
}

void encode_file_record(unsigned char* p, const FileRecord& r, std::uint32_t entry_size) {
    std::memset(p, 0, entry_size);
    st16(p + 0, r.flags);
    st16(p + 2, r.ea_length);
    st32(p + 4, r.reparse_tag);
    st64(p + 8, r.creation_time);
    st64(p + 16, r.last_write_time);
    st64(p + 24, r.change_time);
    st64(p + 32, r.last_access_time);
    encode_stream(p + 40, r.default_stream);
    st64(p + 56, r.security_descriptor);
    st64(p + 64, r.extended_attributes);
    st64(p + 72, r.reparse_data);
    st64(p + 80, r.stream_table);
    st32(p + 88, r.parent_file_id);
    st16(p + 92, r.base_region_index);
    if (entry_size >= kFileRecordSizeV3) st64(p + 96, r.links);
}

FileRecord decode_file_record(const unsigned char* p, std::uint32_t entry_size) {
    FileRecord r;
    r.flags = ld16(p + 0);
    r.ea_length = ld16(p + 2);
    r.reparse_tag = ld32(p + 4);
    r.creation_time = ld64(p + 8);
    r.last_write_time = ld64(p + 16);
    r.change_time = ld64(p + 24);
    r.last_access_time = ld64(p + 32);
    r.default_stream = decode_stream(p + 40);
    r.security_descriptor = ld64(p + 56);
    r.extended_attributes = ld64(p + 64);
    r.reparse_data = ld64(p + 72);
    r.stream_table = ld64(p + 80);
    r.parent_file_id = ld32(p + 88);
    r.base_region_index = ld16(p + 92);
    if (entry_size >= kFileRecordSizeV3) r.links = ld64(p + 96);
    return r;
}

}  // namespace cimfs::format
