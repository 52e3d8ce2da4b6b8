#include "cimfs/paths.hpp"

#include "cimfs/format.hpp"

namespace cimfs {

static bool forbidden_unit(char16_t c) {
    if (c < 0x20) return true;
    switch (c) {
        case u':': case u'*': case u'?': case u'"': case u'<': case u'>': case u'|':
            return true;
        default:
            return false;
    }
}

PathProblem split_path(const std::u16string& path, std::vector<std::u16string>& out) {
    out.clear();
    PathProblem p;
    if (path.size() > format::kMaxPathUnits) {
        p.ok = false;
        p.too_long = true;
        p.reason = "path longer than 32767 UTF-16 code units";
        return p;
    }
    std::size_t begin = 0, end = path.size();
    auto is_sep = [](char16_t c) { return c == u'\\' || c == u'/'; };
    while (begin < end && is_sep(path[begin])) ++begin;  // "\a" == "a"
    while (end > begin && is_sep(path[end - 1])) --end;   // "a\" == "a"
    if (begin == end) return p;                           // the root
    if (end - begin == 1 && path[begin] == u'.') return p;
    std::size_t i = begin;
    while (i <= end) {
        std::size_t j = i;
        while (j < end && !is_sep(path[j])) ++j;
        std::u16string comp = path.substr(i, j - i);
        if (comp.empty()) {
            p.ok = false;
            p.reason = "empty path component";
            return p;
        }
        if (comp == u"." || comp == u"..") {
            p.ok = false;
            p.reason = "'.' and '..' are not allowed in image paths";
            return p;
        }
        if (comp.size() > format::kMaxNameUnits) {
            p.ok = false;
            p.too_long = true;
            p.reason = "name longer than 255 UTF-16 code units";
            return p;
        }
        for (char16_t c : comp) {
            if (forbidden_unit(c)) {
                p.ok = false;
                p.reason = c < 0x20 ? "control character in name"
                                    : std::string("character '") + char(c) + "' is not allowed in a name";
                return p;
            }
        }
        out.push_back(std::move(comp));
        i = j + 1;
    }
    return p;
}

bool split_stream_path(const std::u16string& path, std::u16string& file, std::u16string& stream) {
    // The stream separator is the first colon after the last path separator.
    std::size_t last_sep = path.find_last_of(u"\\/");
    std::size_t colon = path.find(u':', last_sep == std::u16string::npos ? 0 : last_sep + 1);
    if (colon == std::u16string::npos) return false;
    file = path.substr(0, colon);
    stream = path.substr(colon + 1);
    static const std::u16string kData = u":$DATA";
    if (stream.size() >= kData.size()) {
        std::u16string tail = stream.substr(stream.size() - kData.size());
        bool match = true;
        for (std::size_t k = 0; k < kData.size(); ++k) {
            char16_t a = tail[k], b = kData[k];
            if (a >= u'a' && a <= u'z') a = char16_t(a - 32);
            if (a != b) { match = false; break; }
        }
        if (match) stream.resize(stream.size() - kData.size());
    }
    return true;
}

std::u16string join_path(const std::vector<std::u16string>& components) {
    std::u16string s;
    for (std::size_t i = 0; i < components.size(); ++i) {
        if (i) s += u'\\';
        s += components[i];
    }
    return s;
}

std::string to_utf8(const std::u16string& s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        std::uint32_t c = s[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.size() && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (std::uint32_t(s[i + 1]) - 0xDC00);
            ++i;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = 0xFFFD;
        }
        if (c < 0x80) {
            out += char(c);
        } else if (c < 0x800) {
            out += char(0xC0 | (c >> 6));
            out += char(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out += char(0xE0 | (c >> 12));
            out += char(0x80 | ((c >> 6) & 0x3F));
            out += char(0x80 | (c & 0x3F));
        } else {
            out += char(0xF0 | (c >> 18));
            out += char(0x80 | ((c >> 12) & 0x3F));
            out += char(0x80 | ((c >> 6) & 0x3F));
            out += char(0x80 | (c & 0x3F));
        }
    }
    return out;
}

bool from_utf8(const std::string& s, std::u16string& out) {
    out.clear();
    std::size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char b = static_cast<unsigned char>(s[i]);
        std::uint32_t c;
        int extra;
        if (b < 0x80) { c = b; extra = 0; }
        else if ((b & 0xE0) == 0xC0) { c = b & 0x1F; extra = 1; }
        else if ((b & 0xF0) == 0xE0) { c = b & 0x0F; extra = 2; }
        else if ((b & 0xF8) == 0xF0) { c = b & 0x07; extra = 3; }
        else return false;
        for (int k = 1; k <= extra; ++k) {
            if (i + k >= n) return false;
            unsigned char cb = static_cast<unsigned char>(s[i + k]);
            if ((cb & 0xC0) != 0x80) return false;
            c = (c << 6) | (cb & 0x3F);
        }
        static const std::uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
        if (c < kMin[extra] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
        if (c >= 0x10000) {
            c -= 0x10000;
            out += char16_t(0xD800 + (c >> 10));
            out += char16_t(0xDC00 + (c & 0x3FF));
        } else {
            out += char16_t(c);
        }
        i += extra + 1;
    }
    return true;
}

}  // namespace cimfs
