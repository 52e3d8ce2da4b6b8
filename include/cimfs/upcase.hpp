// The upcase table CimFS images carry, and name comparison through it.
#pragma once

#include <cstdint>
#include <string>

namespace cimfs {

// Windows' upcase table (65536 entries), generated from a compact run list that
// reproduces the table cimfs.dll writes, byte for byte.
const std::uint16_t* windows_upcase_table();

// Upcase a name code unit by code unit through `table`.
std::u16string upcase(const std::u16string& name, const std::uint16_t* table);

// Order of names in link tables: code unit by code unit after upcasing, the
// shorter name first when one is a prefix of the other. Returns <0, 0, >0.
int compare_names(const char16_t* a, std::size_t alen, const char16_t* b, std::size_t blen,
                  const std::uint16_t* table);

}  // namespace cimfs
