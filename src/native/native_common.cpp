// Parts of the native backend's API that need no Windows: volume paths and
// block-image names. Compiled on every platform.
#include <cctype>

#include "cimfs/native.hpp"

namespace cimfs::native {

std::string BlockImage::path() const {
    if (block_path.empty()) return name;
    char last = block_path.back();
    if (last == '\\' || last == '/') return block_path + name;
    return block_path + "\\" + name;
}

std::string volume_path(const format::Guid& volume) {
    return "\\\\?\\Volume{" + volume.to_string() + "}\\";
}

bool parse_volume_path(const std::string& text, format::Guid& out) {
    std::string s = text;
    static const std::string kPrefix = "\\\\?\\volume";
    std::string head = s.substr(0, kPrefix.size());
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (head == kPrefix) {
        s = s.substr(kPrefix.size());
        if (!s.empty() && s.back() == '\\') s.pop_back();
        if (s.size() < 2 || s.front() != '{' || s.back() != '}') return false;
    }
    if (s.size() >= 2 && s.front() == '{' && s.back() == '}') s = s.substr(1, s.size() - 2);
    return format::Guid::parse(s, out);
}

}  // namespace cimfs::native
