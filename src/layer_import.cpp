// Layer tar import; see include/cimfs/layer_import.hpp. Two parts: TarStream
// reads entries (ustar, POSIX.1-2001 pax, GNU long names) from the caller's
// read function into one reused buffer, and the importer maps each entry onto
// the image being written (docs/cim-format.md §7 and the decisions listed in
// python/cimfs/layer.py).
#include "cimfs/layer_import.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cimfs/error.hpp"
#include "cimfs/format.hpp"
#include "cimfs/layer_records.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/tar_header.hpp"
#include "cimfs/upcase.hpp"

namespace cimfs::layer {

ImportError::ImportError(std::string e, std::string r, std::string why)
    : std::runtime_error(why), entry(std::move(e)), record(std::move(r)), reason(std::move(why)) {}

namespace {

using format::kAttrDirectory;
using format::kAttrReparsePoint;

constexpr std::size_t kBlock = tar::kBlock;
// An image stream's length field has 48 bits.
constexpr std::uint64_t kMaxData = (std::uint64_t{1} << 48) - 1;
// Extended headers (PAX records, GNU long names) of one entry. Windows layers
// need well under 200 KiB (a 64 KiB SD and a 64 KiB EA blob in base64, a
// 32767-unit path); a decompression bomb must not get far past that.
constexpr std::int64_t kMaxExtended = 1 << 20;

constexpr std::string_view kRecAttributes = "MSWINDOWS.fileattr";
constexpr std::string_view kRecRawSd = "MSWINDOWS.rawsd";
constexpr std::string_view kRecSddl = "MSWINDOWS.sd";
constexpr std::string_view kRecMountPoint = "MSWINDOWS.mountpoint";
constexpr std::string_view kRecXattr = "MSWINDOWS.xattr.";
constexpr std::string_view kRecCreation = "LIBARCHIVE.creationtime";
constexpr std::string_view kRecReparse = "CIMFS.reparse";

[[noreturn]] void fail(const std::string& entry, const std::string& reason, std::string_view record = {}) {
    throw ImportError(entry, std::string(record), reason);
}

[[noreturn]] void truncated(const std::string& entry, const std::string& reason) {
    fail(entry, "truncated archive: " + reason);
}

std::string at_offset(std::uint64_t offset) { return std::to_string(offset); }

std::string type_repr(char t) {
    auto c = static_cast<unsigned char>(t);
    if (c < 0x80) return str_repr(std::string(1, t));
    static const char hex[] = "0123456789abcdef";
    return std::string("'\\x") + hex[c >> 4] + hex[c & 15] + "'";
}

// The PAX records of an entry in first-seen order; a later record for the same
// key replaces the value (as a dict update does). Slots are reused from entry
// to entry, so that reading headers does not allocate. One extended header may
// hold 100 000 records: past a few, keys are found through an index.
struct Pax {
    using Record = std::pair<std::string, std::string>;
    static constexpr std::size_t kLinear = 16;
    std::vector<Record> slots;
    std::size_t n = 0;
    std::unordered_map<std::string, std::size_t> index;  // key -> slots[i], while n > kLinear
    std::size_t bytes = 0;                                // of the keys and values held

    const Record* begin() const { return slots.data(); }
    const Record* end() const { return slots.data() + n; }
    const std::string* get(std::string_view key) const { return const_cast<Pax*>(this)->find(key); }
    std::string* find(std::string_view key) {
        if (n > kLinear) {
            auto it = index.find(std::string(key));
            return it == index.end() ? nullptr : &slots[it->second].second;
        }
        for (std::size_t i = 0; i < n; ++i)
            if (slots[i].first == key) return &slots[i].second;
        return nullptr;
    }
    void set(std::string_view key, std::string_view value) {
        if (std::string* v = find(key)) {
            std::string& held = *v;
            bytes = bytes - held.size() + value.size();
            held.assign(value);
            return;
        }
        if (n == slots.size()) slots.emplace_back();
        slots[n].first.assign(key);
        slots[n].second.assign(value);
        ++n;
        bytes += key.size() + value.size();
        if (n == kLinear + 1) {
            for (std::size_t i = 0; i < n; ++i) index.emplace(slots[i].first, i);
        } else if (n > kLinear + 1) {
            index.emplace(slots[n - 1].first, n - 1);
        }
    }
    bool empty() const { return n == 0; }
    void clear() {
        n = 0;
        bytes = 0;
        if (!index.empty()) index.clear();
    }
};

struct Entry {
    std::string name;      // as the tar spells it (UTF-8 expected, not yet checked)
    std::string linkname;
    char type = '0';       // typeflag; '0' for an old-style NUL
    std::uint64_t size = 0;
    std::int64_t mtime = 0;    // header mtime, used when there is no pax mtime
    bool mtime_wide = false;   // ... a base-256 value beyond 64 bits
    Pax pax;
};

class TarStream {
public:
    TarStream(const ReadFn& read, std::size_t buffer_size)
        : read_(read), buf_(std::max<std::size_t>(buffer_size, 64 * kBlock)) {}

    // The next entry; false at the end of the archive. Skips whatever the
    // caller left of the previous entry's data.
    bool next(Entry& e);

    // The current entry's data, handed to sink(pointer, length) in pieces that
    // point into the read buffer.
    template <class Sink>
    void data(Sink&& sink) {
        while (left_) {
            if (pos_ == end_ && !fill())
                truncated(name_, "the archive ends inside the data of " + str_repr(name_) + " (" +
                                     std::to_string(left_) + " of " + std::to_string(size_) + " bytes missing)");
            std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(left_, end_ - pos_));
            sink(buf_.data() + pos_, k);
            pos_ += k;
            offset_ += k;
            left_ -= k;
        }
    }

private:
    std::size_t fill();
    // `what` names the part being read, for the message when the archive ends in it.
    template <class What>
    void take(std::size_t n, What&& what, std::string& out);
    template <class What>
    void skip(std::uint64_t n, What&& what);

    const ReadFn& read_;
    std::vector<unsigned char> buf_;
    std::size_t pos_ = 0, end_ = 0;
    bool eof_ = false;
    std::uint64_t offset_ = 0;  // archive offset of buf_[pos_]
    std::uint64_t left_ = 0;    // data of the current entry not consumed yet
    std::uint64_t pad_ = 0;     // padding after it
    std::string name_;          // the current entry, for messages
    std::uint64_t size_ = 0;
    Pax global_;                // 'g' records: apply to every later entry
    std::string extended_;      // the current extended header's bytes
    std::vector<tar::PaxRecord> records_;
};

std::size_t TarStream::fill() {
    if (eof_) return 0;
    if (pos_ == end_) {
        pos_ = end_ = 0;
    } else if (pos_ && (end_ == buf_.size() || end_ - pos_ <= 64 * 1024)) {
        std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
        end_ -= pos_;
        pos_ = 0;
    }
    std::size_t n = read_(buf_.data() + end_, buf_.size() - end_);
    if (!n) {
        eof_ = true;
        return 0;
    }
    end_ += std::min(n, buf_.size() - end_);
    return n;
}

template <class What>
void TarStream::take(std::size_t n, What&& what, std::string& out) {
    out.clear();
    while (n) {
        if (pos_ == end_ && !fill())
            truncated("", "the archive ends inside " + what() + " (offset " + at_offset(offset_) + ")");
        std::size_t k = std::min(n, end_ - pos_);
        out.append(reinterpret_cast<const char*>(buf_.data() + pos_), k);
        pos_ += k;
        offset_ += k;
        n -= k;
    }
}

template <class What>
void TarStream::skip(std::uint64_t n, What&& what) {
    while (n) {
        if (pos_ == end_ && !fill())
            truncated("", "the archive ends inside " + what() + " (offset " + at_offset(offset_) + ")");
        std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n, end_ - pos_));
        pos_ += k;
        offset_ += k;
        n -= k;
    }
}

std::uint64_t padding(std::uint64_t size) { return (kBlock - size % kBlock) % kBlock; }

bool TarStream::next(Entry& e) {
    if (left_ || pad_) {
        skip(left_, [this] { return "the data of " + str_repr(name_); });
        left_ = 0;
        skip(pad_, [this] { return "the padding after " + str_repr(name_); });
        pad_ = 0;
    }
    Pax& pax = e.pax;
    pax.clear();
    bool longname = false, longlink = false;
    const std::uint64_t start = offset_;
    std::int64_t size = 0;
    bool size_wide = false;
    tar::Number hmtime;
    unsigned char mtime_field[12];
    char type = '0';
    for (;;) {  // extended headers, then the entry's own
        const std::uint64_t hoff = offset_;
        if (end_ - pos_ < kBlock) {
            while (end_ - pos_ < kBlock && fill()) {
            }
            if (pos_ == end_) {
                if (hoff == 0) fail("", "the input is empty (not a tar archive)");
                truncated("", "the archive ends at offset " + at_offset(hoff) +
                                  " without its end-of-archive blocks (truncated?)");
            }
            if (end_ - pos_ < kBlock) truncated("", "the archive ends inside the header at offset " + at_offset(hoff));
        }
        const unsigned char* block = buf_.data() + pos_;
        tar::Header h;
        std::string err = tar::parse_header(block, kBlock, hoff, h);
        if (!err.empty()) fail("", err);
        if (h.end_block) {
            if (!pax.empty() || longname || longlink)
                fail("", "extended header at offset " + at_offset(start) + " is followed by the end of the archive");
            pos_ += kBlock;
            offset_ += kBlock;
            return false;  // a second zero block and any record padding are not read
        }
        // Copy what is needed before the buffer moves.
        type = h.typeflag ? static_cast<char>(h.typeflag) : '0';
        size = h.size.value;
        size_wide = h.size.status != tar::Number::kOk;
        if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
            pos_ += kBlock;
            offset_ += kBlock;
            if (size_wide || size < 0 || size > kMaxExtended)
                fail("", "extended header at offset " + at_offset(hoff) + " claims " +
                             (size_wide ? std::string("more than 2^63") : std::to_string(size)) +
                             " bytes (at most " + std::to_string(kMaxExtended) + " are accepted)");
            auto what = [hoff] { return "the extended header at offset " + at_offset(hoff); };
            take(static_cast<std::size_t>(size), what, extended_);
            skip(padding(static_cast<std::uint64_t>(size)), what);
            if (type == 'x' || type == 'g') {
                err = tar::parse_pax(reinterpret_cast<const unsigned char*>(extended_.data()), extended_.size(), hoff,
                                     records_);
                if (!err.empty()) fail("", err);
                Pax& into = type == 'x' ? pax : global_;
                for (auto& r : records_) into.set(r.key, r.value);
                // Each header is capped, but records of several add up: an entry's
                // records (or the global ones) may not grow past one header's worth.
                if (into.bytes > static_cast<std::uint64_t>(kMaxExtended))
                    fail("", std::string(type == 'x' ? "the extended headers of the entry at offset " + at_offset(start)
                                                     : "the global extended headers up to offset " + at_offset(hoff)) +
                                 " hold more than " + std::to_string(kMaxExtended) + " bytes of records");
            } else {
                std::string_view text(extended_.data(), std::min(extended_.size(), extended_.find('\0')));
                (type == 'L' ? e.name : e.linkname).assign(text);
                (type == 'L' ? longname : longlink) = true;
            }
            continue;
        }
        if (!longname) {
            if (h.has_prefix) {
                e.name.assign(h.prefix);
                e.name += '/';
                e.name += h.name;
            } else {
                e.name.assign(h.name);
            }
        }
        if (!longlink) e.linkname.assign(h.linkname);
        hmtime = h.mtime;
        std::memcpy(mtime_field, block + 136, sizeof mtime_field);
        pos_ += kBlock;
        offset_ += kBlock;
        break;
    }
    e.type = type;
    if (!global_.empty()) {
        Pax merged = global_;
        for (auto& r : pax) merged.set(r.first, r.second);
        pax = std::move(merged);
    }
    if (const std::string* p = pax.get("path")) e.name = *p;
    if (const std::string* p = pax.get("linkpath")) e.linkname = *p;
    if (const std::string* p = pax.get("size")) {
        if (!tar::parse_decimal(*p, size)) fail("", "bad pax size " + str_repr(*p) + " at offset " + at_offset(start));
        size_wide = false;
    }
    e.mtime = 0;
    e.mtime_wide = false;
    if (!pax.get("mtime")) {
        if (hmtime.status == tar::Number::kOk) {
            e.mtime = hmtime.value;
        } else if (hmtime.status == tar::Number::kWide) {
            e.mtime_wide = true;
        } else {
            fail("", "bad mtime field " + tar::bytes_repr(mtime_field, sizeof mtime_field) +
                         " in the header at offset " + at_offset(start));
        }
    }
    // As in tarfile and GNU tar: only regular files (and unknown types) carry
    // data; links, directories, devices and FIFOs never do, whatever their size says.
    bool has_data = !(type >= '1' && type <= '6');
    if (!has_data) {
        size = 0;
    } else if (size_wide || size < 0 || static_cast<std::uint64_t>(size) > kMaxData) {
        fail(e.name, "entry at offset " + at_offset(start) + " claims " +
                         (size_wide ? std::string("more than 2^63") : std::to_string(size)) + " bytes of data");
    }
    e.size = static_cast<std::uint64_t>(size);
    name_ = e.name;
    size_ = e.size;
    left_ = e.size;
    pad_ = padding(e.size);
    return true;
}

// Python's int(text, 0) for a FILE_ATTRIBUTE_* record, reduced to 32 bits:
// decimal (no leading zeros), 0x / 0o / 0b prefixes, '_' between digits, a sign.
bool parse_attributes(std::string_view s, std::uint32_t& out) {
    auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    bool negative = false;
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
        negative = s.front() == '-';
        s.remove_prefix(1);
    }
    unsigned base = 10;
    bool underscore_ok = false;
    if (s.size() >= 2 && s[0] == '0' && std::strchr("xXoObB", s[1])) {
        base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
        s.remove_prefix(2);
        underscore_ok = true;
    }
    std::uint32_t v = 0;
    bool any = false, nonzero = false, leading_zero = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '_') {
            if (!underscore_ok || i + 1 == s.size()) return false;
            underscore_ok = false;
            continue;
        }
        unsigned d = (c >= '0' && c <= '9') ? unsigned(c - '0')
                     : (c >= 'a' && c <= 'f') ? unsigned(c - 'a' + 10)
                     : (c >= 'A' && c <= 'F') ? unsigned(c - 'A' + 10)
                                              : 99;
        if (d >= base) return false;
        if (base == 10 && !any && d == 0) leading_zero = true;
        if (d) nonzero = true;
        v = v * base + d;  // modulo 2^32, as `& 0xFFFFFFFF` of the exact value
        any = true;
        underscore_ok = true;
    }
    if (!any || (base == 10 && leading_zero && nonzero)) return false;
    out = negative ? 0u - v : v;
    return true;
}

std::u16string parent_of(const std::u16string& path) {
    std::size_t i = path.rfind(u'\\');
    return i == std::u16string::npos ? std::u16string() : path.substr(0, i);
}

// An entry name as an image path (backslash separated, relative) and, for
// "file:stream[:$DATA]", a stream name. Returns "" or the reason.
std::string image_path(const std::string& name, std::u16string& path, std::u16string& stream, bool& has_stream) {
    has_stream = false;
    stream.clear();
    bool ascii = std::all_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (!ascii && !from_utf8(name, path)) return "the name is not valid UTF-8";
    auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
    auto ends = [&](const char* s) {
        std::size_t n = std::strlen(s);
        return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
    };
    bool plain = name.find_first_of(std::string("\\:\0", 3)) == std::string::npos && !name.empty() &&
                 name[0] != '/' && !has("..") && !has("//") && !has("/./") && name.rfind("./", 0) != 0 &&
                 name != "." && !ends("/.");
    if (plain) {  // e.g. "Files/Windows/x.dll" or "Files/dir/"
        std::size_t e = name.find_last_not_of('/');
        std::string p = name.substr(0, e + 1);
        std::replace(p.begin(), p.end(), '/', '\\');
        from_utf8(p, path);
        return {};
    }
    if (name.find('\0') != std::string::npos) return "the name contains a NUL character";
    std::string n = name;
    std::replace(n.begin(), n.end(), '\\', '/');
    auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
    if ((!n.empty() && n[0] == '/') || (n.size() >= 2 && n[1] == ':' && alpha(n[0])))
        return "absolute paths are not allowed in a layer";
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i <= n.size()) {
        std::size_t j = n.find('/', i);
        if (j == std::string::npos) j = n.size();
        std::string part = n.substr(i, j - i);
        if (!part.empty() && part != ".") parts.push_back(std::move(part));
        i = j + 1;
    }
    for (auto& p : parts)
        if (p == "..") return "'..' components would escape the layer";
    path.clear();
    if (parts.empty()) return {};
    std::string& last = parts.back();
    std::size_t colon = last.find(':');
    if (colon != std::string::npos) {
        std::string base = last.substr(0, colon);
        std::string st = last.substr(colon + 1);
        if (st.size() >= 6) {
            std::string tail = st.substr(st.size() - 6);
            for (char& c : tail)
                if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
            if (tail == ":$DATA") st.resize(st.size() - 6);
        }
        if (base.empty() || st.empty() || st.find(':') != std::string::npos)
            return "a ':' in a name must separate a file from a stream name (file:stream[:$DATA])";
        last = base;
        from_utf8(st, stream);
        has_stream = true;
    }
    for (std::size_t k = 0; k + 1 < parts.size(); ++k)
        if (parts[k].find(':') != std::string::npos) return "':' is not allowed in a directory name";
    std::string joined;
    for (std::size_t k = 0; k < parts.size(); ++k) {
        if (k) joined += '\\';
        joined += parts[k];
    }
    from_utf8(joined, path);
    return {};
}

}  // namespace

struct LayerImporter::Impl {
    ImageWriter& w;
    const Image* parent;
    std::size_t buffer_size;
    LogFn log;
    ImportStats s;
    const std::uint16_t* up = windows_upcase_table();
    // What this import has put into the image, keyed by the upcased path:
    // 'd' directory, 'D' directory created because an entry needed it, 'f' file.
    std::unordered_map<std::u16string, char> kinds{{u"", 'd'}};
    // Upcased directory path -> the paths this import added to kinds directly in
    // it (some may be gone since): what a whiteout of a directory takes along.
    std::unordered_map<std::u16string, std::vector<std::u16string>> added_in;
    std::unordered_map<std::u16string, bool> parent_dirs;  // upcased path -> is a directory in the parent
    // Upcased paths a whiteout removed: nothing at or below them comes from the
    // parent any more (a later entry there gets new parent directories).
    std::unordered_set<std::u16string> removed;
    std::unordered_set<std::u16string> opaque_done;  // upcased directories an opaque whiteout cleared
    std::optional<std::u16string> last_file;               // upcased path of the last file added
    std::unordered_map<std::string, Bytes> sd_cache;       // rawsd text -> descriptor
    Entry e;

    Impl(ImageWriter& writer, const Image* p, std::size_t size) : w(writer), parent(p), buffer_size(size) {}

    std::u16string key(const std::u16string& path) const { return upcase(path, up); }

    void set_kind(const std::u16string& k, char kind) {
        auto [it, fresh] = kinds.try_emplace(k, kind);
        if (!fresh) it->second = kind;
        else if (!k.empty()) added_in[parent_of(k)].push_back(k);
    }

    // Forget upcased path k and everything this import added below it.
    void forget(const std::u16string& k) {
        std::vector<std::u16string> todo{k};
        while (!todo.empty()) {
            std::u16string p = std::move(todo.back());
            todo.pop_back();
            kinds.erase(p);
            auto it = added_in.find(p);
            if (it == added_in.end()) continue;
            for (auto& c : it->second) todo.push_back(std::move(c));
            added_in.erase(it);
        }
    }

    void debug(const std::string& message) const {
        if (log) log(message);
    }

    // ---- the parent image ------------------------------------------------------
    template <class F>
    bool parent_query(F&& f) const {
        try {
            return f();
        } catch (const Error& ex) {
            if (ex.subject == ErrorSubject::path) return false;  // missing, not a directory, bad name
            throw;
        }
    }
    bool parent_is_dir(const std::u16string& path) const {
        return parent && parent_query([&] { return parent->stat(parent->lookup(path)).is_directory; });
    }
    bool parent_exists(const std::u16string& path) const {
        return parent && parent_query([&] { return parent->lookup(path), true; });
    }

    // Whether what the parent has at upcased path k is still in the image.
    bool from_parent(const std::u16string& k) const {
        if (!parent) return false;
        if (removed.empty()) return true;
        for (std::u16string p = k;; p = parent_of(p)) {
            if (removed.count(p)) return false;
            if (p.empty()) return true;
        }
    }

    bool is_dir(const std::u16string& path) {
        std::u16string k = key(path);
        auto it = kinds.find(k);
        if (it != kinds.end()) return it->second != 'f';
        if (!from_parent(k)) return false;
        auto c = parent_dirs.find(k);
        if (c != parent_dirs.end()) return c->second;
        bool d = parent_is_dir(path);
        parent_dirs.emplace(std::move(k), d);
        return d;
    }

    void ensure_parents(const std::u16string& path) {
        std::u16string dir = parent_of(path);
        if (dir.empty() || is_dir(dir)) return;
        std::vector<std::u16string> missing;
        while (!dir.empty() && !is_dir(dir)) {
            missing.push_back(dir);
            dir = parent_of(dir);
        }
        for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
            debug("creating missing parent directory " + to_utf8(*it));
            FileMetadata m;
            m.attributes = kAttrDirectory;
            w.add_file(*it, m);
            set_kind(key(*it), 'D');
            ++s.implicit_directories;
        }
    }

    // ---- metadata from the PAX records ---------------------------------------------
    enum class Kind { directory, file, symlink };

    std::uint64_t time_record(std::string_view record, std::uint64_t fallback) const {
        const std::string* v = e.pax.get(record);
        if (!v) return fallback;
        std::uint64_t t = 0;
        std::string why = filetime_from_pax(*v, t);
        if (!why.empty()) fail(e.name, why, "time");
        return t;
    }

    Bytes base64_record(std::string_view record, const std::string& value) const {
        Bytes out;
        std::string why = base64_decode(value, out);
        if (!why.empty()) fail(e.name, why, record);
        return out;
    }

    FileMetadata metadata(Kind kind) {
        FileMetadata m;
        const Pax& pax = e.pax;
        std::uint32_t attrs = 0;
        if (const std::string* v = pax.get(kRecAttributes))
            if (!parse_attributes(*v, attrs)) fail(e.name, "not a number: " + str_repr(*v), kRecAttributes);
        if (kind == Kind::directory) attrs = (attrs | kAttrDirectory) & ~kAttrReparsePoint;
        else if (kind == Kind::file) attrs &= ~(kAttrDirectory | kAttrReparsePoint);
        else attrs |= kAttrReparsePoint;
        m.attributes = attrs;

        std::uint64_t mtime = 0;
        if (pax.get("mtime")) {
            mtime = time_record("mtime", 0);
        } else {
            std::string why = e.mtime_wide ? "a time is beyond the FILETIME range (year 60056)"
                                           : filetime_from_unix_seconds(e.mtime, mtime);
            if (!why.empty()) fail(e.name, why, "time");
        }
        m.times.last_write = mtime;
        m.times.last_access = time_record("atime", mtime);
        m.times.change = time_record("ctime", mtime);
        m.times.creation = time_record(kRecCreation, mtime);

        if (const std::string* text = pax.get(kRecRawSd)) {
            auto it = sd_cache.find(*text);
            if (it != sd_cache.end()) {
                m.security_descriptor = it->second;
            } else {
                // Layers share a few dozen descriptors among all their files: decode each once.
                Bytes sd = base64_record(kRecRawSd, *text);
                if (sd.size() < 20 || sd[0] != 1)
                    fail(e.name, "not a self-relative security descriptor (" + std::to_string(sd.size()) + " bytes)",
                         kRecRawSd);
                if (sd_cache.size() < 4096) sd_cache.emplace(*text, sd);
                m.security_descriptor = std::move(sd);
            }
        } else if (pax.get(kRecSddl)) {
            fail(e.name,
                 "SDDL security descriptors are not supported: no maintained library converts SDDL to a binary "
                 "descriptor on this platform; re-export the layer with MSWINDOWS.rawsd records",
                 kRecSddl);
        }

        std::vector<std::pair<std::string, Bytes>> eas;
        for (auto& r : pax)
            if (r.first.compare(0, kRecXattr.size(), kRecXattr) == 0)
                eas.emplace_back(r.first.substr(kRecXattr.size()), base64_record(r.first, r.second));
        if (!eas.empty()) {
            std::string why = encode_eas(eas, 0, m.extended_attributes);
            if (!why.empty()) fail(e.name, why, "MSWINDOWS.xattr.*");
        }

        if (kind == Kind::symlink) {
            if (const std::string* raw = pax.get(kRecReparse)) {
                m.reparse_data = base64_record(kRecReparse, *raw);
            } else {
                if (e.linkname.empty()) fail(e.name, "symlink without a target");
                std::u16string target;
                if (!from_utf8(e.linkname, target)) fail(e.name, "the link target is not valid UTF-8");
                std::string why = encode_reparse_point(target, pax.get(kRecMountPoint) != nullptr, m.reparse_data);
                if (!why.empty()) fail(e.name, why);
            }
        }
        return m;
    }

    void run(TarStream& tar);

    // ---- entries --------------------------------------------------------------------
    void copy_data(TarStream& tar) {
        tar.data([this](const unsigned char* p, std::size_t n) { w.write(p, n); });
        w.close_stream();
    }

    void remove(const std::u16string& victim) {
        try {
            w.remove(victim);
        } catch (const Error& ex) {
            if (ex.subject == ErrorSubject::path && (ex.code == Errc::not_found || ex.code == Errc::not_a_directory)) {
                debug("whiteout of " + to_utf8(victim) + ": nothing to remove");
                return;
            }
            throw;
        }
        std::u16string k = key(victim);
        forget(k);  // with what this layer added below a removed directory
        if (last_file && *last_file == k) last_file.reset();
        if (parent) removed.insert(k);
        debug("whiteout removed " + to_utf8(victim));
    }

    void whiteout(const std::u16string& path, const std::u16string& base) {
        ++s.whiteouts;
        std::u16string dir = parent_of(path);
        if (base == u".wh..wh..opq") {
            // Opaque directory: what the parent has in it goes, unless this layer
            // added it. Once per directory: after that, each of the parent's entries
            // there is gone or this layer's (whose own whiteouts handle it).
            std::u16string dk = key(dir);
            if (!from_parent(dk) || opaque_done.count(dk) || !parent_is_dir(dir)) return;
            opaque_done.insert(dk);
            for (auto& child : parent->list_directory(parent->lookup(dir))) {
                std::u16string p = dir.empty() ? child.name : dir + u'\\' + child.name;
                std::u16string k = key(p);
                if (!kinds.count(k) && !removed.count(k)) remove(p);
            }
            return;
        }
        std::u16string target = base.substr(4);
        if (target.empty()) fail(e.name, "whiteout without a name");
        remove(dir.empty() ? target : dir + u'\\' + target);
    }

    void one(TarStream& tar) {
        std::u16string path, stream;
        bool has_stream = false;
        std::string why = image_path(e.name, path, stream, has_stream);
        if (!why.empty()) fail(e.name, why);
        const char t = e.type;
        std::u16string base = path.substr(path.rfind(u'\\') == std::u16string::npos ? 0 : path.rfind(u'\\') + 1);
        if (!has_stream && base.compare(0, 4, u".wh.") == 0) {
            whiteout(path, base);
            return;
        }
        if (has_stream) {
            if (t != '0' && t != '7') fail(e.name, "a stream entry must be a regular file (type " + type_repr(t) + ")");
            std::u16string k = key(path);
            if ((!last_file || *last_file != k) && !kinds.count(k) && !(from_parent(k) && parent_exists(path)))
                fail(e.name, "alternate data stream comes before its file " + str_repr(to_utf8(path)));
            w.add_alternate_stream(path + u':' + stream, e.size);
            copy_data(tar);
            ++s.streams;
            s.bytes += e.size;
            return;
        }
        if (path.empty()) {
            if (t != '5') fail(e.name, "the root of a layer can only be a directory");
            w.add_file(path, metadata(Kind::directory));
            return;
        }
        std::u16string k = key(path);
        switch (t) {
            case '5': {
                ensure_parents(path);
                auto it = kinds.find(k);
                char prev = it == kinds.end() ? 0 : it->second;
                if (prev == 'f') fail(e.name, "a directory entry names an existing file");
                w.add_file(path, metadata(Kind::directory));
                set_kind(k, 'd');
                if (prev == 0) {
                    ++s.directories;
                } else if (prev == 'D') {
                    ++s.directories;
                    --s.implicit_directories;
                }
                last_file.reset();
                return;
            }
            case '0':
            case '7': {
                ensure_parents(path);
                auto it = kinds.find(k);
                if (it != kinds.end() && it->second != 'f') fail(e.name, "a file entry names an existing directory");
                FileMetadata m = metadata(Kind::file);
                m.size = e.size;
                w.add_file(path, m);
                copy_data(tar);
                set_kind(k, 'f');
                last_file = std::move(k);
                ++s.files;
                s.bytes += e.size;
                return;
            }
            case '1': {
                std::u16string target, tstream;
                bool ts = false;
                std::string problem = image_path(e.linkname, target, tstream, ts);
                if (!problem.empty()) fail(e.name, "hard link target " + str_repr(e.linkname) + ": " + problem);
                if (ts || target.empty()) fail(e.name, "hard link target " + str_repr(e.linkname) + " is not a file");
                ensure_parents(path);
                auto it = kinds.find(key(target));
                if (it != kinds.end() && it->second != 'f')
                    fail(e.name, "hard link target " + str_repr(e.linkname) + " is a directory");
                try {
                    w.add_hard_link(target, path);
                } catch (const Error& ex) {
                    fail(e.name, "hard link to " + str_repr(e.linkname) + ": " + ex.reason);
                }
                set_kind(k, 'f');
                last_file = std::move(k);
                ++s.links;
                return;
            }
            case '2': {
                ensure_parents(path);
                FileMetadata m = metadata(Kind::symlink);
                w.add_file(path, m);
                set_kind(k, (m.attributes & kAttrDirectory) ? 'd' : 'f');
                last_file = std::move(k);
                ++s.symlinks;
                return;
            }
            default: {
                const char* what = t == '3'   ? "character device"
                                   : t == '4' ? "block device"
                                   : t == '6' ? "FIFO"
                                   : t == 'S' ? "GNU sparse file"
                                   : t == 'D' ? "GNU dump directory"
                                   : t == 'M' ? "GNU multi-volume continuation"
                                   : t == 'V' ? "volume label"
                                              : "unknown entry type";
                fail(e.name, std::string(what) + " (type " + type_repr(t) + ") cannot be stored in a Windows layer");
            }
        }
    }
};

LayerImporter::LayerImporter(ImageWriter& writer, const Image* parent, std::size_t buffer_size)
    : impl_(std::make_unique<Impl>(writer, parent, buffer_size)) {}

LayerImporter::~LayerImporter() = default;

void LayerImporter::set_log(LogFn log) { impl_->log = std::move(log); }

const ImportStats& LayerImporter::stats() const { return impl_->s; }

void LayerImporter::run(const ReadFn& read) {
    TarStream tar(read, impl_->buffer_size);
    impl_->run(tar);
}

void LayerImporter::Impl::run(TarStream& tar) {
    Impl& im = *this;
    while (tar.next(im.e)) {
        ++im.s.entries;
        try {
            im.one(tar);
        } catch (const Error& ex) {
            // A writer refusal (bad name, case clash, ...): name the entry.
            fail(im.e.name, ex.reason.empty() ? std::string(ex.what()) : ex.reason);
        }
    }
}

}  // namespace cimfs::layer
