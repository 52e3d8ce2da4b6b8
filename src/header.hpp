// Internal: parsing the filesystem header file of an image.
#pragma once

#include <string>
#include <vector>

#include "cimfs/format.hpp"

namespace cimfs::detail {

struct ParsedHeader {
    format::Version version;
    format::RegionSet own;
    std::vector<format::RegionSet> parents;  // in header order
    std::uint64_t filesystem_offset = 0;
};

// Throws Error(corrupt_image / io / not_found) naming `path` and `op`.
ParsedHeader read_header(const std::string& path, const char* op);

// Region / objectid file names of a region set.
std::string region_file_name(const format::RegionSet& set, unsigned index);
std::string objectid_file_name(const format::RegionSet& set, unsigned index);

}  // namespace cimfs::detail
