// What the PAX records of a Windows layer tar hold, and the Windows structures
// they become (docs/cim-format.md §7): FILETIMEs from PAX time text, base64,
// FILE_FULL_EA_INFORMATION chains and REPARSE_DATA_BUFFERs for symlinks and
// mount points. Pure C++; every function reports bad input as a message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cimfs/metadata.hpp"

namespace cimfs::layer {

// FILETIME of the Unix epoch.
constexpr std::uint64_t kUnixEpochFiletime = 116444736000000000ULL;

constexpr std::uint32_t kReparseTagMountPoint = 0xA0000003;
constexpr std::uint32_t kReparseTagSymlink = 0xA000000C;

// A PAX time record ("<seconds since 1970>[.<fraction>]", optional sign) as a
// FILETIME, exact to 100 ns (further digits are cut). Times before 1601 become 0.
// Returns "" or the reason ("not a PAX time: ...", or beyond the FILETIME range).
std::string filetime_from_pax(std::string_view text, std::uint64_t& out);
// FILETIME of whole POSIX seconds (a ustar mtime field); before 1601 becomes 0.
std::string filetime_from_unix_seconds(std::int64_t seconds, std::uint64_t& out);

// Strict base64 (RFC 4648 alphabet, '=' padding required as usual); leading and
// trailing whitespace is ignored. Returns "" or the reason.
std::string base64_decode(std::string_view text, Bytes& out);

// A FILE_FULL_EA_INFORMATION chain for (name, value) pairs in the given order:
// NextEntryOffset u32 (4-byte aligned entries; 0 on the last), Flags u8,
// EaNameLength u8, EaValueLength u16, name, NUL, value. Names are kept byte for
// byte and must be 1..254 ASCII bytes without NUL; the chain must fit 65535 bytes.
std::string encode_eas(const std::vector<std::pair<std::string, Bytes>>& eas, std::uint8_t flags, Bytes& out);

// REPARSE_DATA_BUFFER of a symlink (tag 0xA000000C with a flags word, 1 =
// relative) or mount point (0xA0000003) to a Windows path ('/' becomes '\').
// The path buffer holds the substitute name (NT form "\??\C:\..." for absolute
// targets) and then the print name, each followed by a NUL the lengths don't count.
std::string encode_reparse_point(const std::u16string& target, bool mount_point, Bytes& out);

// Python's repr() of a str given as UTF-8 (for messages).
std::string str_repr(std::string_view utf8);

}  // namespace cimfs::layer
