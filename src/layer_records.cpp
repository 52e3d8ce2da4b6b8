// PAX record values and the Windows structures of a layer; see
// include/cimfs/layer_records.hpp.
#include "cimfs/layer_records.hpp"

#include <array>
#include <cstring>
#include <limits>

#include "cimfs/tar_header.hpp"

namespace cimfs::layer {

namespace {

constexpr std::uint64_t kTicksPerSecond = 10000000ULL;
constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
const char* const kBeyondFiletime = "a time is beyond the FILETIME range (year 60056)";

inline bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view strip(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

bool all_digits(std::string_view s) {
    for (char c : s)
        if (!is_digit(c)) return false;
    return true;
}

void put16(Bytes& b, std::uint16_t v) {
    b += static_cast<char>(v & 0xff);
    b += static_cast<char>(v >> 8);
}

void put32(Bytes& b, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b += static_cast<char>((v >> (8 * i)) & 0xff);
}

void put_u16_text(Bytes& b, const std::u16string& s) {
    for (char16_t c : s) put16(b, static_cast<std::uint16_t>(c));
}

}  // namespace

std::string filetime_from_pax(std::string_view text, std::uint64_t& out) {
    std::string_view s = strip(text);
    bool negative = false;
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
        negative = s.front() == '-';
        s.remove_prefix(1);
    }
    std::size_t dot = s.find('.');
    std::string_view whole = s.substr(0, dot);
    std::string_view frac = dot == std::string_view::npos ? std::string_view{} : s.substr(dot + 1);
    if ((whole.empty() && frac.empty()) || !all_digits(whole) || !all_digits(frac))
        return "not a PAX time: " + str_repr(text);
    while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
    // ticks = whole * 10^7 + the first 7 fraction digits; anything past 2^64 is out of range
    std::uint64_t seconds = 0;
    bool huge = false;
    for (char c : whole) {
        std::uint64_t d = static_cast<std::uint64_t>(c - '0');
        if (seconds > (kU64Max - d) / 10) {
            huge = true;
            break;
        }
        seconds = seconds * 10 + d;
    }
    std::uint64_t fraction = 0;
    for (std::size_t i = 0; i < 7; ++i) fraction = fraction * 10 + (i < frac.size() ? static_cast<std::uint64_t>(frac[i] - '0') : 0);
    std::uint64_t ticks = 0;
    if (!huge) {
        if (seconds > (kU64Max - fraction) / kTicksPerSecond) huge = true;
        else ticks = seconds * kTicksPerSecond + fraction;
    }
    if (negative) {
        out = (!huge && ticks <= kUnixEpochFiletime) ? kUnixEpochFiletime - ticks : 0;  // before 1601: 0
        return {};
    }
    if (huge || ticks > kU64Max - kUnixEpochFiletime) return kBeyondFiletime;
    out = ticks + kUnixEpochFiletime;
    return {};
}

std::string filetime_from_unix_seconds(std::int64_t seconds, std::uint64_t& out) {
    if (seconds < 0) {
        std::uint64_t back = static_cast<std::uint64_t>(-(seconds + 1)) + 1;  // |seconds| without overflow
        out = back <= kUnixEpochFiletime / kTicksPerSecond ? kUnixEpochFiletime - back * kTicksPerSecond : 0;
        return {};
    }
    std::uint64_t s = static_cast<std::uint64_t>(seconds);
    if (s > (kU64Max - kUnixEpochFiletime) / kTicksPerSecond) return kBeyondFiletime;
    out = s * kTicksPerSecond + kUnixEpochFiletime;
    return {};
}

std::string base64_decode(std::string_view text, Bytes& out) {
    static const auto table = [] {
        std::array<signed char, 256> t{};
        t.fill(-1);
        const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
        return t;
    }();
    std::string_view s = strip(text);
    std::size_t pad = 0;
    while (pad < 2 && pad < s.size() && s[s.size() - 1 - pad] == '=') ++pad;
    std::string_view data = s.substr(0, s.size() - pad);
    for (std::size_t i = 0; i < data.size(); ++i)
        if (table[static_cast<unsigned char>(data[i])] < 0)
            return "not valid base64 (byte " + std::to_string(i) + " is not in the base64 alphabet)";
    std::size_t rest = data.size() % 4;
    if (rest == 1 || (rest == 0 && pad) || (rest == 2 && pad != 2) || (rest == 3 && pad != 1))
        return "not valid base64 (incorrect length or padding)";
    out.clear();
    out.reserve(data.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : data) {
        acc = (acc << 6) | static_cast<std::uint32_t>(table[static_cast<unsigned char>(c)]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return "not valid base64 (non-zero bits after the last byte)";
    return {};
}

std::string encode_eas(const std::vector<std::pair<std::string, Bytes>>& eas, std::uint8_t flags, Bytes& out) {
    out.clear();
    for (std::size_t i = 0; i < eas.size(); ++i) {
        const std::string& name = eas[i].first;
        const Bytes& value = eas[i].second;
        bool ascii = true;
        for (char c : name)
            if (static_cast<unsigned char>(c) >= 0x80 || c == '\0') ascii = false;
        if (name.empty() || name.size() > 254 || !ascii)
            return "extended attribute name " + str_repr(name) + ": must be 1..254 ASCII bytes without NUL";
        if (value.size() > 0xFFFF)
            return "extended attribute " + str_repr(name) + ": value of " + std::to_string(value.size()) +
                   " bytes exceeds 65535";
        std::size_t body = 8 + name.size() + 1 + value.size();
        bool last = i + 1 == eas.size();
        std::size_t padded = last ? body : (body + 3) & ~std::size_t{3};
        if (out.size() + padded > 0xFFFF)
            return "extended attributes take more than 65535 bytes, the most the format allows";
        put32(out, last ? 0 : static_cast<std::uint32_t>(padded));
        out += static_cast<char>(flags);
        out += static_cast<char>(name.size());
        put16(out, static_cast<std::uint16_t>(value.size()));
        out += name;
        out += '\0';
        out += value;
        out.append(padded - body, '\0');
    }
    return {};
}

std::string encode_reparse_point(const std::u16string& target_in, bool mount_point, Bytes& out) {
    std::u16string target = target_in;
    for (char16_t& c : target) {
        if (c == u'/') c = u'\\';
        if (c == 0) return "a link target cannot contain a NUL character";
    }
    // The substitute (NT) name: "\??\" for drive and "\\?\" paths, "\??\UNC\" for shares.
    std::u16string sub;
    bool relative = false;
    auto starts = [&](const char16_t* p) { return target.compare(0, std::char_traits<char16_t>::length(p), p) == 0; };
    if (starts(u"\\\\?\\")) {
        sub = u"\\??\\" + target.substr(4);
    } else if (starts(u"\\\\")) {
        sub = u"\\??\\UNC\\" + target.substr(2);
    } else if (target.size() >= 2 && target[1] == u':' &&
               ((target[0] >= u'A' && target[0] <= u'Z') || (target[0] >= u'a' && target[0] <= u'z'))) {
        sub = u"\\??\\" + target;
    } else {
        sub = target;
        relative = true;
    }
    std::size_t sub_bytes = sub.size() * 2, print_bytes = target.size() * 2;
    std::size_t body = 8 + (mount_point ? 0 : 4) + sub_bytes + 2 + print_bytes + 2;
    if (sub_bytes + print_bytes + 4 + 12 > 0xFFFF - 8 || body > 0xFFFF - 8)
        return "link target of " + std::to_string(target.size()) + " characters is too long for a reparse point";
    out.clear();
    out.reserve(8 + body);
    put32(out, mount_point ? kReparseTagMountPoint : kReparseTagSymlink);
    put16(out, static_cast<std::uint16_t>(body));
    put16(out, 0);
    put16(out, 0);                                             // SubstituteNameOffset
    put16(out, static_cast<std::uint16_t>(sub_bytes));         // SubstituteNameLength
    put16(out, static_cast<std::uint16_t>(sub_bytes + 2));     // PrintNameOffset
    put16(out, static_cast<std::uint16_t>(print_bytes));       // PrintNameLength
    if (!mount_point) put32(out, relative ? 1 : 0);            // Flags: SYMLINK_FLAG_RELATIVE
    put_u16_text(out, sub);
    put16(out, 0);
    put_u16_text(out, target);
    put16(out, 0);
    return {};
}

std::string str_repr(std::string_view s) {
    bool has_single = s.find('\'') != std::string_view::npos;
    bool has_double = s.find('"') != std::string_view::npos;
    char quote = (has_single && !has_double) ? '"' : '\'';
    static const char hex[] = "0123456789abcdef";
    std::string out(1, quote);
    std::size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            tar::append_repr_byte(out, c, quote);
            ++i;
            continue;
        }
        // A valid UTF-8 sequence is kept; a byte that is not shows as Python's
        // surrogateescape does ('\udcXX').
        std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        bool ok = n && i + n <= s.size() && c <= 0xf4;
        for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
        if (ok && n == 3) {
            unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
            ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
        } else if (ok && n == 4) {
            unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
            ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
        }
        if (ok) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            out += "\\udc";
            out += hex[c >> 4];
            out += hex[c & 15];
            ++i;
        }
    }
    out += quote;
    return out;
}

}  // namespace cimfs::layer
