// The portable reader. Region files are mapped read-only; every RegionOffset,
// length and count read from disk goes through `bytes()` / the table views
// below, which check bounds before anything is dereferenced.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "cimfs/error.hpp"
#include "cimfs/object_id.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/platform.hpp"
#include "cimfs/reader.hpp"
#include "cimfs/upcase.hpp"
#include "header.hpp"

namespace cimfs {

using namespace format;

namespace {

[[noreturn]] void corrupt(const std::string& what) { throw CorruptImage(what); }

std::string hex(std::uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
}

// A checked view of a link table: header, values, name offsets, names.
struct LinkTable {
    const unsigned char* base = nullptr;
    std::uint32_t length = 0, count = 0;
    std::size_t value_size = 4;

    const unsigned char* value(std::uint32_t i) const { return base + kLinkTableHeaderSize + std::size_t(i) * value_size; }
    // Name i as (pointer to UTF-16LE units, unit count); checked.
    std::pair<const unsigned char*, std::uint16_t> raw_name(std::uint32_t i) const {
        std::size_t offsets = kLinkTableHeaderSize + std::size_t(count) * value_size;
        std::uint32_t off = ld32(base + offsets + std::size_t(i) * 4);
        if (std::uint64_t(off) + 2 > length) corrupt("link table name offset " + hex(off) + " outside the table");
        std::uint16_t n = ld16(base + off);
        if (std::uint64_t(off) + 2 + 2 * std::uint64_t(n) > length) corrupt("link table name runs past the table");
        return {base + off + 2, n};
    }
    std::u16string name(std::uint32_t i) const {
        auto [p, n] = raw_name(i);
        std::u16string s(n, u'\0');
        for (std::uint16_t k = 0; k < n; ++k) s[k] = static_cast<char16_t>(ld16(p + 2 * k));
        return s;
    }
};

class ImageImpl final : public Image {
public:
    explicit ImageImpl(const std::string& path);

    const std::string& path() const override { return path_; }
    ImageInfo info() const override;
    std::uint32_t lookup(const std::u16string& path) const override;
    FileStat stat(std::uint32_t id) const override;
    std::vector<DirEntry> list_directory(std::uint32_t id) const override;
    Bytes security_descriptor(std::uint32_t id) const override;
    Bytes extended_attributes(std::uint32_t id) const override;
    Bytes reparse_data(std::uint32_t id) const override;
    std::vector<DirEntry> links(std::uint32_t id) const override;
    std::vector<StreamInfo> alternate_streams(std::uint32_t id) const override;
    StreamHandle default_stream(std::uint32_t id) const override;
    StreamHandle alternate_stream(std::uint32_t id, const std::u16string& name) const override;
    std::size_t read(const StreamHandle& s, std::uint64_t offset, void* out, std::size_t n) const override;
    std::vector<std::string> verify() const override;
    FileRecord record(std::uint32_t id) const override {
        return guarded("read record", [&] { return raw_record(id); });
    }
    std::vector<std::pair<std::u16string, Stream>> stream_table(std::uint32_t id) const override;

private:
    template <class F>
    auto guarded(const char* op, F&& f) const -> decltype(f()) {
        try {
            return f();
        } catch (const CorruptImage& e) {
            throw_op_error(Errc::corrupt_image, op, path_, std::string("damaged image: ") + e.what(), EIO);
        }
    }
    const unsigned char* bytes(std::uint64_t ro, std::uint64_t len) const;
    FileRecord raw_record(std::uint32_t id) const;
    LinkTable link_table(std::uint64_t ro, std::size_t value_size, std::uint64_t max_len) const;
    LinkTable directory_table(const FileRecord& r) const;
    Bytes prefixed_blob(std::uint64_t ro) const;
    std::uint64_t logical_size(const Stream& s) const;
    StreamHandle checked_handle(std::uint32_t id, const Stream& s) const;
    std::size_t read_pe(const Stream& s, std::uint64_t offset, unsigned char* out, std::size_t n) const;
    std::uint32_t count_links_v2(std::uint32_t id) const;
    std::uint32_t next_id(std::uint32_t id) const;
    void verify_object_ids(std::vector<std::string>& problems) const;

    struct Table {
        const unsigned char* ptr;
        std::uint16_t count;
        std::uint16_t entry_size;
    };

    std::string path_, dir_;
    detail::ParsedHeader header_;
    std::vector<RegionSet> sets_;
    std::vector<std::string> region_paths_;
    std::vector<platform::MappedFile> regions_;
    std::vector<std::uint16_t> upcase_;
    std::vector<Table> tables_;
    std::uint32_t file_count_ = 0;
    std::uint32_t root_ = 1;
    std::uint64_t ftd_ro_ = 0, upcase_ro_ = 0;

    mutable std::once_flag v2_links_once_;
    mutable std::unordered_map<std::uint32_t, std::uint32_t> v2_links_;
};

ImageImpl::ImageImpl(const std::string& path) : path_(path), dir_(platform::dirname(path)) {
    header_ = detail::read_header(path, "open");
    sets_ = header_.parents;
    sets_.push_back(header_.own);
    guarded("open", [&] {
        for (const auto& s : sets_) {
            for (unsigned i = 0; i < s.count; ++i) {
                std::string rp = platform::join(dir_, detail::region_file_name(s, i));
                if (!platform::exists(rp))
                    throw_op_error(Errc::not_found, "open", path_, "region file " + rp + " is missing", ENOENT);
                region_paths_.push_back(rp);
                regions_.push_back(platform::MappedFile::open(rp));
                const auto& m = regions_.back();
                if (m.size() < kRegionHeaderSize || std::memcmp(m.data(), kMagic, 8) != 0 ||
                    m.data()[12] != static_cast<unsigned char>(HeaderType::region))
                    corrupt("region file " + rp + " has no region header");
            }
        }
        const unsigned char* fs = bytes(header_.filesystem_offset, kFilesystemObjectSize);
        upcase_ro_ = ld64(fs);
        ftd_ro_ = ld64(fs + 8);
        std::uint32_t ntables = ld32(fs + 16);
        root_ = ld32(fs + 20);
        const unsigned char* up = bytes(upcase_ro_, kUpcaseTableSize);
        upcase_.resize(kUpcaseTableEntries);
        for (std::uint32_t c = 0; c < kUpcaseTableEntries; ++c) upcase_[c] = ld16(up + 2 * c);
        const unsigned char* ftd = bytes(ftd_ro_, std::uint64_t(ntables) * kFileTableDirectoryEntrySize);
        tables_.reserve(ntables);
        std::uint64_t files = 0;
        std::uint32_t min_entry = header_.version.major >= 3 ? kFileRecordSizeV3 : kFileRecordSizeV2;
        for (std::uint32_t t = 0; t < ntables; ++t) {
            const unsigned char* e = ftd + std::size_t(t) * kFileTableDirectoryEntrySize;
            std::uint16_t count = ld16(e + 8), entry_size = ld16(e + 10);
            if (count > kFilesPerTable) corrupt("file table " + std::to_string(t) + " holds more than 1024 records");
            if (entry_size < min_entry)
                corrupt("file table " + std::to_string(t) + " has " + std::to_string(entry_size) + "-byte records");
            const unsigned char* p = bytes(ld64(e), std::uint64_t(count) * entry_size);
            tables_.push_back({p, count, entry_size});
            files = std::uint64_t(t) * kFilesPerTable + count;
        }
        file_count_ = static_cast<std::uint32_t>(std::min<std::uint64_t>(files, 0xFFFFFFFFu));
        // Tables may not share bytes: aliased tables would multiply the records
        // (1024 per 16-byte directory entry) and every loop over them.
        std::vector<std::pair<std::uintptr_t, std::uint64_t>> spans;
        for (const auto& t : tables_)
            if (t.count) spans.push_back({reinterpret_cast<std::uintptr_t>(t.ptr), std::uint64_t(t.count) * t.entry_size});
        std::sort(spans.begin(), spans.end());
        for (std::size_t i = 1; i < spans.size(); ++i)
            if (spans[i].first < spans[i - 1].first + spans[i - 1].second) corrupt("file tables overlap");
        if (root_ == 0 || root_ > file_count_) corrupt("root file id " + std::to_string(root_) + " does not exist");
        FileRecord r = raw_record(root_);
        if (r.default_stream.type != StreamType::link_table) corrupt("the root is not a directory");
        return 0;
    });
}

const unsigned char* ImageImpl::bytes(std::uint64_t ro, std::uint64_t len) const {
    std::uint16_t idx = region_of(ro);
    std::uint64_t off = offset_of(ro);
    if (idx >= regions_.size()) corrupt("reference to region " + std::to_string(idx) + " of " + std::to_string(regions_.size()));
    const auto& m = regions_[idx];
    if (off < kRegionHeaderSize || off > m.size() || len > m.size() - off)
        corrupt("object at region " + std::to_string(idx) + " offset " + hex(off) + " length " + std::to_string(len) +
                " lies outside the region file (" + std::to_string(m.size()) + " bytes)");
    return m.data() + off;
}

FileRecord ImageImpl::raw_record(std::uint32_t id) const {
    if (id == 0 || id > file_count_) corrupt("file id " + std::to_string(id) + " does not exist");
    const Table& t = tables_[(id - 1) / kFilesPerTable];
    std::uint32_t k = (id - 1) % kFilesPerTable;
    if (k >= t.count) corrupt("file id " + std::to_string(id) + " does not exist");
    return decode_file_record(t.ptr + std::size_t(k) * t.entry_size, t.entry_size);
}

LinkTable ImageImpl::link_table(std::uint64_t ro, std::size_t value_size, std::uint64_t max_len) const {
    LinkTable lt;
    const unsigned char* h = bytes(ro, kLinkTableHeaderSize);
    lt.length = ld32(h);
    lt.count = ld32(h + 4);
    lt.value_size = value_size;
    if (lt.length < kLinkTableHeaderSize || lt.length > max_len) corrupt("link table length " + std::to_string(lt.length) + " is invalid");
    lt.base = bytes(ro, lt.length);
    if (std::uint64_t(lt.count) * (value_size + 4) > lt.length - kLinkTableHeaderSize)
        corrupt("link table count " + std::to_string(lt.count) + " does not fit its length");
    return lt;
}

LinkTable ImageImpl::directory_table(const FileRecord& r) const {
    if (r.default_stream.type != StreamType::link_table) throw_op_error(Errc::not_a_directory, "list", path_, "not a directory", ENOTDIR);
    if (r.default_stream.length == 0) return LinkTable{};
    return link_table(r.default_stream.data, 4, r.default_stream.length);
}

std::uint32_t ImageImpl::lookup(const std::u16string& path) const {
    std::vector<std::u16string> comps;
    PathProblem p = split_path(path, comps);
    if (!p.ok)
        throw_path_error(p.too_long ? Errc::name_too_long : Errc::invalid_argument, "lookup", path_, to_utf8(path), p.reason,
                         p.too_long ? ENAMETOOLONG : EINVAL);
    return guarded("lookup", [&] {
        std::uint32_t cur = root_;
        const std::uint16_t* up = upcase_.data();
        for (std::size_t i = 0; i < comps.size(); ++i) {
            FileRecord r = raw_record(cur);
            if (r.default_stream.type != StreamType::link_table)
                throw_path_error(Errc::not_a_directory, "lookup", path_, to_utf8(path),
                                 "'" + to_utf8(join_path({comps.begin(), comps.begin() + i})) + "' is not a directory", ENOTDIR);
            LinkTable t = directory_table(r);
            const std::u16string& want = comps[i];
            std::uint32_t lo = 0, hi = t.count;
            bool found = false;
            while (lo < hi) {
                std::uint32_t mid = lo + (hi - lo) / 2;
                std::u16string name = t.name(mid);
                int c = compare_names(want.data(), want.size(), name.data(), name.size(), up);
                if (c == 0) {
                    cur = ld32(t.value(mid));
                    found = true;
                    break;
                }
                if (c < 0) hi = mid; else lo = mid + 1;
            }
            if (!found) throw_path_error(Errc::not_found, "lookup", path_, to_utf8(path), "no such file or directory", ENOENT);
        }
        return cur;
    });
}

std::uint64_t ImageImpl::logical_size(const Stream& s) const {
    if (s.type == StreamType::pe_image && !s.sparse && s.data) return ld64(bytes(s.data, kPeImageHeaderSize) + 8);
    return s.length;
}

// A handle to read through. Its size must be backed by bytes in the region files
// before anyone sizes a buffer by it (the Python layer allocates the result of
// read_bytes() up front): a hostile length gives corrupt_image here, not a huge
// allocation.
StreamHandle ImageImpl::checked_handle(std::uint32_t id, const Stream& s) const {
    StreamHandle h{id, s, logical_size(s)};
    if (s.sparse) return h;
    if (!s.data) {
        // Only an empty stream has no data; a sparse one says so with its flag.
        if (s.length) corrupt("a non-sparse stream of " + std::to_string(s.length) + " bytes has no data");
        return h;
    }
    if (s.type == StreamType::data) {
        bytes(s.data, s.length);
    } else if (s.type == StreamType::pe_image) {
        const unsigned char* pe = bytes(s.data, kPeImageHeaderSize);
        std::uint64_t image_length = ld32(pe + 16);
        bytes(ld64(pe), image_length);
        if (h.size > image_length)
            corrupt("PE image file length " + std::to_string(h.size) + " exceeds its stored image (" +
                    std::to_string(image_length) + " bytes)");
    } else {
        corrupt("stream of unknown type " + std::to_string(static_cast<int>(s.type)));
    }
    return h;
}

FileStat ImageImpl::stat(std::uint32_t id) const {
    return guarded("stat", [&] {
        FileRecord r = raw_record(id);
        FileStat st;
        st.file_id = id;
        st.parent_id = r.parent_file_id;
        st.is_directory = r.default_stream.type == StreamType::link_table;
        st.attributes = flags_to_attributes(r.flags, st.is_directory, r.reparse_data != 0);
        st.size = st.is_directory ? 0 : logical_size(r.default_stream);
        st.times = FileTimes{r.creation_time, r.last_write_time, r.change_time, r.last_access_time};
        st.reparse_tag = r.reparse_data ? r.reparse_tag : 0;
        st.ea_length = r.ea_length;
        st.has_security_descriptor = r.security_descriptor != 0;
        st.sparse = r.default_stream.sparse;
        st.pe_image = r.default_stream.type == StreamType::pe_image;
        if (header_.version.major >= 3 && r.links) {
            st.link_count = link_table(r.links, 4, 0xFFFFFFFFu).count;
            if (id == root_) st.link_count = 1;
        } else {
            st.link_count = count_links_v2(id);
        }
        return st;
    });
}

// The next existing file id after `id` (0: none). Tables shorter than 1024 records
// leave gaps in the ids; loops skip them here instead of walking them id by id.
std::uint32_t ImageImpl::next_id(std::uint32_t id) const {
    std::uint64_t n = std::uint64_t(id) + 1;
    while (n <= file_count_) {
        std::uint64_t t = (n - 1) / kFilesPerTable, k = (n - 1) % kFilesPerTable;
        if (k < tables_[t].count) return static_cast<std::uint32_t>(n);
        n = (t + 1) * kFilesPerTable + 1;
    }
    return 0;
}

std::uint32_t ImageImpl::count_links_v2(std::uint32_t id) const {
    // Format 2 has no per-file links table: count directory entries once, lazily.
    std::call_once(v2_links_once_, [&] {
        for (std::uint32_t d = next_id(0); d; d = next_id(d)) {
            try {
                FileRecord r = raw_record(d);
                if (r.default_stream.type != StreamType::link_table) continue;
                LinkTable t = directory_table(r);
                for (std::uint32_t i = 0; i < t.count; ++i) ++v2_links_[ld32(t.value(i))];
            } catch (const CorruptImage&) {
            }
        }
    });
    auto it = v2_links_.find(id);
    return it == v2_links_.end() ? 1 : std::max<std::uint32_t>(1, it->second);
}

std::vector<DirEntry> ImageImpl::list_directory(std::uint32_t id) const {
    return guarded("listdir", [&] {
        FileRecord r = raw_record(id);
        if (r.default_stream.type != StreamType::link_table)
            throw_op_error(Errc::not_a_directory, "listdir", path_, "not a directory", ENOTDIR);
        LinkTable t = directory_table(r);
        std::vector<DirEntry> out;
        out.reserve(t.count);
        for (std::uint32_t i = 0; i < t.count; ++i) out.push_back({t.name(i), ld32(t.value(i))});
        return out;
    });
}

Bytes ImageImpl::prefixed_blob(std::uint64_t ro) const {
    if (!ro) return Bytes();
    std::uint16_t n = ld16(bytes(ro, 2));
    const unsigned char* p = bytes(ro, 2 + std::uint64_t(n));
    return Bytes(reinterpret_cast<const char*>(p + 2), n);
}

Bytes ImageImpl::security_descriptor(std::uint32_t id) const {
    return guarded("read security descriptor", [&] { return prefixed_blob(raw_record(id).security_descriptor); });
}

Bytes ImageImpl::reparse_data(std::uint32_t id) const {
    return guarded("read reparse data", [&] { return prefixed_blob(raw_record(id).reparse_data); });
}

Bytes ImageImpl::extended_attributes(std::uint32_t id) const {
    return guarded("read extended attributes", [&] {
        FileRecord r = raw_record(id);
        if (!r.extended_attributes || !r.ea_length) return Bytes();
        const unsigned char* p = bytes(r.extended_attributes, r.ea_length);
        return Bytes(reinterpret_cast<const char*>(p), r.ea_length);
    });
}

std::vector<DirEntry> ImageImpl::links(std::uint32_t id) const {
    return guarded("links", [&] {
        FileRecord r = raw_record(id);
        std::vector<DirEntry> out;
        if (header_.version.major < 3 || !r.links) return out;
        LinkTable t = link_table(r.links, 4, 0xFFFFFFFFu);
        for (std::uint32_t i = 0; i < t.count; ++i) out.push_back({t.name(i), ld32(t.value(i))});
        return out;
    });
}

// The stream table is a link table whose values are 16-byte Streams (the
// working assumption; see docs/cim-format.md §4). Kept in this one place.
std::vector<StreamInfo> ImageImpl::alternate_streams(std::uint32_t id) const {
    return guarded("streams", [&] {
        FileRecord r = raw_record(id);
        std::vector<StreamInfo> out;
        if (!r.stream_table) return out;
        LinkTable t = link_table(r.stream_table, kStreamSize, 0xFFFFFFFFu);
        for (std::uint32_t i = 0; i < t.count; ++i) out.push_back({t.name(i), logical_size(decode_stream(t.value(i)))});
        return out;
    });
}

StreamHandle ImageImpl::default_stream(std::uint32_t id) const {
    return guarded("open", [&] {
        FileRecord r = raw_record(id);
        if (r.default_stream.type == StreamType::link_table)
            throw_op_error(Errc::is_a_directory, "open", path_, "is a directory", EISDIR);
        return checked_handle(id, r.default_stream);
    });
}

StreamHandle ImageImpl::alternate_stream(std::uint32_t id, const std::u16string& name) const {
    return guarded("open", [&] {
        FileRecord r = raw_record(id);
        if (r.stream_table) {
            LinkTable t = link_table(r.stream_table, kStreamSize, 0xFFFFFFFFu);
            for (std::uint32_t i = 0; i < t.count; ++i) {
                std::u16string n = t.name(i);
                if (compare_names(n.data(), n.size(), name.data(), name.size(), upcase_.data()) == 0) {
                    Stream s = decode_stream(t.value(i));
                    if (s.type == StreamType::link_table) corrupt("alternate stream is a link table");
                    return checked_handle(id, s);
                }
            }
        }
        throw_op_error(Errc::not_found, "open", path_, "no stream named '" + to_utf8(name) + "'", ENOENT);
    });
}

std::vector<std::pair<std::u16string, Stream>> ImageImpl::stream_table(std::uint32_t id) const {
    return guarded("streams", [&] {
        FileRecord r = raw_record(id);
        std::vector<std::pair<std::u16string, Stream>> out;
        if (!r.stream_table) return out;
        LinkTable t = link_table(r.stream_table, kStreamSize, 0xFFFFFFFFu);
        for (std::uint32_t i = 0; i < t.count; ++i) out.emplace_back(t.name(i), decode_stream(t.value(i)));
        return out;
    });
}

std::size_t ImageImpl::read_pe(const Stream& s, std::uint64_t offset, unsigned char* out, std::size_t n) const {
    const unsigned char* h = bytes(s.data, kPeImageHeaderSize);
    std::uint64_t data = ld64(h);
    std::uint64_t image_length = ld32(h + 16);
    std::uint16_t mappings = ld16(h + 20);
    const unsigned char* m = bytes(s.data, kPeImageHeaderSize + std::uint64_t(mappings) * kPeMappingSize) + kPeImageHeaderSize;
    const unsigned char* img = bytes(data, image_length);
    std::size_t done = 0;
    while (done < n) {
        std::uint64_t o = offset + done;
        // last mapping with file_offset <= o; the next one bounds this piece
        std::int64_t which = -1;
        std::uint64_t piece_end = offset + n;
        for (std::uint16_t i = 0; i < mappings; ++i) {
            std::uint32_t fo = ld32(m + 8 * i);
            if (fo <= o) which = i;
            else { piece_end = std::min<std::uint64_t>(piece_end, fo); break; }
        }
        std::uint64_t delta = which < 0 ? 0 : ld32(m + 8 * which + 4);
        std::uint64_t src = o + delta;
        std::uint64_t len = piece_end - o;
        if (src > image_length || len > image_length - src) corrupt("PE image mapping points outside the image");
        std::memcpy(out + done, img + src, static_cast<std::size_t>(len));
        done += static_cast<std::size_t>(len);
    }
    return done;
}

std::size_t ImageImpl::read(const StreamHandle& s, std::uint64_t offset, void* out, std::size_t n) const {
    return guarded("read", [&]() -> std::size_t {
        if (offset >= s.size) return 0;
        std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(n, s.size - offset));
        unsigned char* dst = static_cast<unsigned char*>(out);
        if (s.stream.sparse || !s.stream.data) {
            std::memset(dst, 0, count);
            return count;
        }
        switch (s.stream.type) {
            case StreamType::data: {
                const unsigned char* p = bytes(s.stream.data, s.size);  // whole stream in bounds
                std::memcpy(dst, p + offset, count);
                return count;
            }
            case StreamType::pe_image:
                return read_pe(s.stream, offset, dst, count);
            default:
                corrupt("stream of unknown type " + std::to_string(static_cast<int>(s.stream.type)));
        }
    });
}

ImageInfo ImageImpl::info() const {
    ImageInfo i;
    i.version = header_.version;
    i.region_sets = sets_;
    i.region_files = region_paths_;
    i.file_count = file_count_;
    i.root_id = root_;
    return i;
}

void ImageImpl::verify_object_ids(std::vector<std::string>& problems) const {
    // Object-ID files of the image's own region set: sorted, in bounds, digests right.
    const RegionSet& own = header_.own;
    std::size_t base = regions_.size() - own.count;
    for (unsigned i = 0; i < own.count; ++i) {
        std::string p = platform::join(dir_, detail::objectid_file_name(own, i));
        if (!platform::exists(p)) {
            problems.push_back(p + ": missing objectid file");
            continue;
        }
        platform::MappedFile f = platform::MappedFile::open(p);
        const unsigned char* d = f.data();
        if (f.size() < kObjectIdHeaderSize || std::memcmp(d, kMagic, 8) != 0 || d[12] != 2) {
            problems.push_back(p + ": bad objectid header");
            continue;
        }
        std::uint32_t table = ld32(d + 40), count = ld32(d + 44);
        if (table < kObjectIdHeaderSize || table > f.size() ||
            std::uint64_t(count) * kObjectIdEntrySize > f.size() - table) {
            problems.push_back(p + ": objectid table outside the file");
            continue;
        }
        if (ld16(d + 32) != i) problems.push_back(p + ": index field is not " + std::to_string(i));
        const auto& region = regions_[base + i];
        if (d[34] != region.data()[34]) problems.push_back(p + ": region type differs from the region file's");
        ObjectId prev;
        for (std::uint32_t k = 0; k < count; ++k) {
            const unsigned char* e = d + table + std::size_t(k) * kObjectIdEntrySize;
            ObjectId id;
            id.length = ld64(e);
            std::memcpy(id.digest.data(), e + 8, kDigestSize);
            std::uint64_t off = ld64(e + 32);
            if (k > 0 && id < prev) problems.push_back(p + ": entry " + std::to_string(k) + " out of order");
            prev = id;
            if (off < kRegionHeaderSize || off > region.size() || id.length > region.size() - off) {
                problems.push_back(p + ": entry " + std::to_string(k) + " lies outside the region");
                continue;
            }
            if (!(object_id_of(region.data() + off, static_cast<std::size_t>(id.length)) == id))
                problems.push_back(p + ": entry " + std::to_string(k) + " at " + hex(off) + " has a wrong digest");
        }
    }
}

std::vector<std::string> ImageImpl::verify() const {
    std::vector<std::string> problems;
    auto check = [&](const std::string& where, auto&& f) {
        try {
            f();
        } catch (const CorruptImage& e) {
            problems.push_back(where + ": " + e.what());
        } catch (const Error& e) {
            problems.push_back(where + ": " + e.reason);
        }
    };
    // Every record: its objects in bounds. (A short table before the last leaves ids
    // that do not exist: one problem per table, not one per missing id.)
    for (std::size_t t = 0; t + 1 < tables_.size(); ++t)
        if (tables_[t].count < kFilesPerTable)
            problems.push_back("file table " + std::to_string(t) + " holds " + std::to_string(tables_[t].count) +
                               " records but is not the last");
    for (std::uint32_t id = next_id(0); id; id = next_id(id)) {
        std::string where = "file " + std::to_string(id);
        check(where, [&] {
            FileRecord r = raw_record(id);
            if (r.security_descriptor) prefixed_blob(r.security_descriptor);
            if (r.reparse_data) prefixed_blob(r.reparse_data);
            if (r.extended_attributes) bytes(r.extended_attributes, r.ea_length);
            if (r.default_stream.type == StreamType::data && r.default_stream.data && !r.default_stream.sparse)
                bytes(r.default_stream.data, r.default_stream.length);
            if (r.default_stream.type == StreamType::pe_image && r.default_stream.data && !r.default_stream.sparse) {
                StreamHandle h{id, r.default_stream, logical_size(r.default_stream)};
                std::vector<unsigned char> buf(4096);
                for (std::uint64_t o = 0; o < h.size; o += buf.size()) read(h, o, buf.data(), buf.size());
            }
            if (r.stream_table) {
                LinkTable t = link_table(r.stream_table, kStreamSize, 0xFFFFFFFFu);
                for (std::uint32_t i = 0; i < t.count; ++i) {
                    t.name(i);
                    Stream s = decode_stream(t.value(i));
                    if (s.data && !s.sparse) bytes(s.data, s.length);
                }
            }
            if (r.parent_file_id == 0 || r.parent_file_id > file_count_) corrupt("parent id " + std::to_string(r.parent_file_id) + " does not exist");
            if (header_.version.major >= 3) {
                if (!r.links) corrupt("format 3 record without a links table");
                LinkTable t = link_table(r.links, 4, 0xFFFFFFFFu);
                for (std::uint32_t i = 0; i < t.count; ++i) t.name(i);
            }
        });
    }
    // The tree from the root: directories sorted, children exist, no cycles.
    std::unordered_set<std::uint32_t> seen_dirs;
    std::vector<std::pair<std::uint32_t, std::string>> stack{{root_, "\\"}};
    seen_dirs.insert(root_);
    while (!stack.empty()) {
        // (plain variables: lambdas may not capture structured bindings before C++20; clang rejects it)
        std::uint32_t id = stack.back().first;
        std::string where = stack.back().second;
        stack.pop_back();
        check(where, [&] {
            FileRecord r = raw_record(id);
            LinkTable t = directory_table(r);
            std::u16string prev;
            for (std::uint32_t i = 0; i < t.count; ++i) {
                std::u16string name = t.name(i);
                if (i > 0 && compare_names(prev.data(), prev.size(), name.data(), name.size(), upcase_.data()) >= 0)
                    problems.push_back(where + ": entries not sorted (or duplicate) at '" + to_utf8(name) + "'");
                prev = name;
                std::uint32_t child = ld32(t.value(i));
                std::string cpath = (where == "\\" ? "" : where + "\\") + to_utf8(name);
                FileRecord cr = raw_record(child);
                if (cr.default_stream.type == StreamType::link_table) {
                    if (!seen_dirs.insert(child).second)
                        problems.push_back(cpath + ": directory reached twice (a cycle or a directory hard link)");
                    else
                        stack.emplace_back(child, cpath);
                }
            }
        });
    }
    check("objectid files", [&] { verify_object_ids(problems); });
    return problems;
}

}  // namespace

std::unique_ptr<Image> Image::open(const std::string& header_path) {
    return std::make_unique<ImageImpl>(header_path);
}

}  // namespace cimfs
