// Parsing of tar headers for the layer importer (src/layer_import.cpp):
// one 512-byte ustar/GNU header block, and the records of a pax extended
// header. Pure C++, no Python. Numbers follow Python's int() grammar so the
// importer behaves exactly as its pure-Python reference did; every error is a
// message (never an exception, never a read outside the given bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cimfs::tar {

constexpr std::size_t kBlock = 512;

// A numeric header field: octal text (NUL/space padded) or GNU base-256.
struct Number {
    enum Status { kOk, kWide, kBad };  // kWide: a base-256 value outside int64
    Status status = kOk;
    std::int64_t value = 0;
};

Number parse_number(const unsigned char* field, std::size_t len);

struct Header {
    bool end_block = false;         // an all-zero block (end of archive); nothing else is set
    unsigned char typeflag = 0;     // raw byte 156 (0 for an old-style regular file)
    std::string_view name;          // name field up to its first NUL
    std::string_view prefix;        // ustar prefix up to its first NUL; empty when none applies
    bool has_prefix = false;        // "ustar\0" magic and a non-empty prefix
    std::string_view linkname;      // linkname field up to its first NUL
    Number size;                    // never kBad on success
    Number mtime;                   // may be kBad: only an error when the entry has no pax mtime
};

// Parse `block` (which must be kBlock bytes long; views in `out` point into it).
// Checks, in order: the checksum field, the checksum (unsigned or signed byte sum,
// as tar does), the size field. Returns "" or the error message; `offset` is the
// block's offset in the archive, used in messages.
std::string parse_header(const unsigned char* block, std::size_t len, std::uint64_t offset, Header& out);

struct PaxRecord {
    std::string_view key;
    std::string_view value;
};

// The records "<len> <key>=<value>\n" of a pax extended header at archive
// `offset`, in order (a later record for the same key wins). Every length is
// checked; NUL padding ends the records. Returns "" or the error message.
std::string parse_pax(const unsigned char* data, std::size_t len, std::uint64_t offset,
                      std::vector<PaxRecord>& out);

// Python's int(text) (decimal; sign, '_' between digits, surrounding
// whitespace), saturating outside int64. False when int() would refuse it.
bool parse_decimal(std::string_view text, std::int64_t& out);

// One byte as Python's repr() of a bytes object shows it between `quote`s.
void append_repr_byte(std::string& out, unsigned char c, char quote);
// Python's repr() of a bytes object (for messages).
std::string bytes_repr(const unsigned char* data, std::size_t len);

}  // namespace cimfs::tar
