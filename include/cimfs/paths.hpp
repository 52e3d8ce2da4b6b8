// Paths inside an image: UTF-16, backslash separated, relative, no trailing
// separator. Conversion helpers between UTF-8 (for messages) and UTF-16.
#pragma once

#include <string>
#include <vector>

namespace cimfs {

// Split "a\b\c" (forward slashes accepted) into checked components. The empty
// path, "\" and "." name the root (no components). Rejects "." / ".." components,
// empty components, NUL and names longer than 255 units or paths longer than
// 32767 units; `what` is the reason prefix used in errors thrown as
// invalid_argument / name_too_long by the caller (see validate_path).
struct PathProblem {
    bool ok = true;
    bool too_long = false;
    std::string reason;
};
PathProblem split_path(const std::u16string& path, std::vector<std::u16string>& out);

// Split "file:stream" (or "file:stream:$DATA") into its parts; returns false
// when the path has no stream part.
bool split_stream_path(const std::u16string& path, std::u16string& file, std::u16string& stream);

// Canonical backslash form.
std::u16string join_path(const std::vector<std::u16string>& components);

// Lossy UTF-16 -> UTF-8 for messages (unpaired surrogates become U+FFFD).
std::string to_utf8(const std::u16string& s);
// Strict UTF-8 -> UTF-16; returns false on invalid UTF-8.
bool from_utf8(const std::string& s, std::u16string& out);

}  // namespace cimfs
