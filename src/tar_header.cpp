// Tar header and pax record parsing; see include/cimfs/tar_header.hpp.
#include "cimfs/tar_header.hpp"

#include <cstring>
#include <limits>

namespace cimfs::tar {

namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();

// Python's bytes.isspace()/strip() set.
inline bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Python's int(text, base) for base 8 or 10 on bytes, saturating outside int64
// (callers only compare such values or reject them). False when int() would
// raise ValueError.
bool py_int(const unsigned char* p, std::size_t n, int base, std::int64_t& out) {
    std::size_t i = 0, e = n;
    while (i < e && is_space(p[i])) ++i;
    while (e > i && is_space(p[e - 1])) --e;
    bool neg = false;
    if (i < e && (p[i] == '+' || p[i] == '-')) {
        neg = p[i] == '-';
        ++i;
    }
    bool underscore_ok = false;  // an '_' may follow a digit, or the 0o prefix
    if (base == 8 && e - i >= 2 && p[i] == '0' && (p[i + 1] == 'o' || p[i + 1] == 'O')) {
        i += 2;
        underscore_ok = true;
    }
    if (i == e) return false;
    // Accumulate as a negative number (its range is the larger), saturating.
    std::int64_t v = 0;
    bool saturated = false, any = false;
    while (i < e) {
        unsigned char c = p[i];
        if (c == '_') {
            if (!underscore_ok || i + 1 == e) return false;
            underscore_ok = false;
            ++i;
            continue;
        }
        int d = (c >= '0' && c <= '9') ? c - '0' : 99;
        if (d >= base) return false;
        if (!saturated) {
            if (v < (kMin + d) / base) {
                saturated = true;
            } else {
                v = v * base - d;
            }
        }
        any = true;
        underscore_ok = true;
        ++i;
    }
    if (!any) return false;
    if (saturated) {
        out = neg ? kMin : kMax;
    } else if (neg) {
        out = v;
    } else {
        out = v == kMin ? kMax : -v;
    }
    return true;
}

std::string_view cstr(const unsigned char* p, std::size_t n) {
    const void* z = std::memchr(p, 0, n);
    std::size_t len = z ? static_cast<std::size_t>(static_cast<const unsigned char*>(z) - p) : n;
    return std::string_view(reinterpret_cast<const char*>(p), len);
}

std::string bad_field(const char* what, const unsigned char* field, std::size_t len, std::uint64_t offset) {
    return std::string("bad ") + what + " field " + bytes_repr(field, len) + " in the header at offset " +
           std::to_string(offset);
}

std::string at(std::uint64_t offset, std::size_t pos) {
    return " at offset " + std::to_string(offset) + "+" + std::to_string(pos);
}

}  // namespace

void append_repr_byte(std::string& out, unsigned char c, char quote) {
    static const char hex[] = "0123456789abcdef";
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
    } else if (c == '\t') {
        out += "\\t";
    } else if (c == '\n') {
        out += "\\n";
    } else if (c == '\r') {
        out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
    } else {
        out += static_cast<char>(c);
    }
}

std::string bytes_repr(const unsigned char* data, std::size_t len) {
    bool has_single = std::memchr(data, '\'', len) != nullptr;
    bool has_double = std::memchr(data, '"', len) != nullptr;
    char quote = (has_single && !has_double) ? '"' : '\'';
    std::string out = "b";
    out += quote;
    for (std::size_t i = 0; i < len; ++i) append_repr_byte(out, data[i], quote);
    out += quote;
    return out;
}

bool parse_decimal(std::string_view text, std::int64_t& out) {
    return py_int(reinterpret_cast<const unsigned char*>(text.data()), text.size(), 10, out);
}

Number parse_number(const unsigned char* field, std::size_t len) {
    Number r;
    if (len && (field[0] & 0x80)) {
        if (field[0] & 0x40) {
            // Negative: the whole field is two's complement. It fits int64 when every
            // byte before the last 8 is 0xff and the last 8 read as a negative int64.
            std::size_t lead = len > 8 ? len - 8 : 0;
            for (std::size_t i = 0; i < lead; ++i)
                if (field[i] != 0xff) {
                    r.status = Number::kWide;
                    return r;
                }
            if (lead && !(field[lead] & 0x80)) {
                r.status = Number::kWide;
                return r;
            }
            std::uint64_t u = ~std::uint64_t{0};  // sign extension for short fields
            for (std::size_t i = lead; i < len; ++i) u = (u << 8) | field[i];
            r.value = static_cast<std::int64_t>(u);  // two's complement (C++20-defined, universal in practice)
            return r;
        }
        std::uint64_t v = field[0] & 0x7f;  // 0x40 is clear here
        for (std::size_t i = 1; i < len; ++i) {
            if (v > (static_cast<std::uint64_t>(kMax) >> 8)) {
                r.status = Number::kWide;
                return r;
            }
            v = (v << 8) | field[i];
        }
        r.value = static_cast<std::int64_t>(v);
        return r;
    }
    std::string_view s = cstr(field, len);
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t i = 0, e = s.size();
    while (i < e && is_space(p[i])) ++i;
    if (i == e) return r;  // empty (or blank) field: 0
    if (!py_int(p, e, 8, r.value)) r.status = Number::kBad;
    return r;
}

std::string parse_header(const unsigned char* b, std::size_t len, std::uint64_t offset, Header& out) {
    out = Header{};
    if (len != kBlock) return "a tar header block is 512 bytes, not " + std::to_string(len);
    // One pass over the block: its byte sum (0: an all-zero block) and how many
    // bytes have the high bit set, for the signed sum some old tars wrote.
    std::uint32_t sum = 0, high = 0;
    for (std::size_t i = 0; i < kBlock; ++i) {
        sum += b[i];
        high += b[i] >> 7;
    }
    if (sum == 0) {
        out.end_block = true;
        return {};
    }
    Number stored = parse_number(b + 148, 8);
    if (stored.status == Number::kBad) return bad_field("checksum", b + 148, 8, offset);
    for (std::size_t i = 148; i < 156; ++i) {  // the checksum field counts as eight spaces
        sum -= b[i];
        high -= b[i] >> 7;
    }
    std::int64_t unsigned_sum = std::int64_t{sum} + 8 * ' ';
    std::int64_t signed_sum = unsigned_sum - 256 * std::int64_t{high};
    if (stored.status != Number::kOk || (stored.value != unsigned_sum && stored.value != signed_sum))
        return "bad header checksum at offset " + std::to_string(offset) + " (not a tar archive, or damaged)";
    out.typeflag = b[156];
    out.size = parse_number(b + 124, 12);
    if (out.size.status == Number::kBad) return bad_field("size", b + 124, 12, offset);
    out.mtime = parse_number(b + 136, 12);
    out.name = cstr(b, 100);
    out.linkname = cstr(b + 157, 100);
    if (std::memcmp(b + 257, "ustar\0", 6) == 0 && b[345]) {
        out.has_prefix = true;
        out.prefix = cstr(b + 345, 155);
    }
    return {};
}

std::string parse_pax(const unsigned char* data, std::size_t n, std::uint64_t offset, std::vector<PaxRecord>& out) {
    out.clear();
    // Fast path: no value holds a newline, so each line is a record; a line whose
    // length prefix or '=' is wrong sends the whole header to the exact path.
    if (n && data[n - 1] == '\n') {
        bool ok = true;
        std::size_t pos = 0;
        while (pos < n) {
            const auto* nl = static_cast<const unsigned char*>(std::memchr(data + pos, '\n', n - pos));
            std::size_t end = static_cast<std::size_t>(nl - data);  // the final byte is '\n'
            const auto* sp = static_cast<const unsigned char*>(std::memchr(data + pos, ' ', end - pos));
            std::int64_t length;
            if (!sp || !py_int(data + pos, static_cast<std::size_t>(sp - data) - pos, 10, length) ||
                length != static_cast<std::int64_t>(end - pos + 1)) {
                ok = false;
                break;
            }
            std::size_t ks = static_cast<std::size_t>(sp - data) + 1;
            const auto* eq = static_cast<const unsigned char*>(std::memchr(data + ks, '=', end - ks));
            if (!eq) {
                ok = false;
                break;
            }
            std::size_t es = static_cast<std::size_t>(eq - data);
            out.push_back({std::string_view(reinterpret_cast<const char*>(data + ks), es - ks),
                           std::string_view(reinterpret_cast<const char*>(data + es + 1), end - es - 1)});
            pos = end + 1;
        }
        if (ok) return {};
        out.clear();
    }
    std::size_t pos = 0;
    while (pos < n) {
        if (data[pos] == 0) break;  // padding
        std::size_t lim = n - pos < 24 ? n - pos : 24;
        const auto* sp = static_cast<const unsigned char*>(std::memchr(data + pos, ' ', lim));
        if (!sp) return "malformed pax record" + at(offset, pos);
        std::size_t sp_i = static_cast<std::size_t>(sp - data);
        std::int64_t length;
        if (!py_int(data + pos, sp_i - pos, 10, length)) return "malformed pax record length" + at(offset, pos);
        if (length < 5 || static_cast<std::uint64_t>(length) > n - pos || data[pos + length - 1] != '\n')
            return "malformed pax record" + at(offset, pos);
        std::size_t end = pos + static_cast<std::size_t>(length);
        std::size_t ks = sp_i + 1;
        const unsigned char* eq = nullptr;
        if (ks < end) eq = static_cast<const unsigned char*>(std::memchr(data + ks, '=', end - ks));
        if (!eq) return "pax record without '='" + at(offset, pos);
        std::size_t es = static_cast<std::size_t>(eq - data);
        // Python slices: data[ks:es] and data[es+1:end-1] (empty when reversed).
        std::size_t vs = es + 1, ve = end - 1;
        out.push_back({std::string_view(reinterpret_cast<const char*>(data + ks), es - ks),
                       std::string_view(reinterpret_cast<const char*>(data + vs), ve > vs ? ve - vs : 0)});
        pos = end;
    }
    return {};
}

}  // namespace cimfs::tar
