// The portable writer: an in-memory tree of the image (built as the caller adds
// files, with all bulk data already in the region files), serialized at commit
// in passes: resolve data, number files, link tables, file tables, directory of
// tables, filesystem object, objectid files, header.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unordered_map>

#include "cimfs/error.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/reader.hpp"
#include "cimfs/upcase.hpp"
#include "cimfs/writer.hpp"
#include "region_writer.hpp"

namespace cimfs {

using namespace format;
using detail::DataRef;
using detail::ObjectStore;

namespace {

struct Node;

struct Child {
    std::u16string name;  // as given
    Node* node;
};

struct NamedStream {
    std::u16string name;
    DataRef data;
    std::uint64_t length = 0;
    StreamType type = StreamType::data;  // PE-image streams come only from a parent
    bool sparse = false;
};

struct Link {
    Node* parent;
    std::u16string name;
};

struct Node {
    bool directory = false;
    std::uint16_t flags = 0;
    std::uint32_t reparse_tag = 0;
    FileTimes times;
    std::uint64_t sd = 0, ea = 0, reparse = 0;  // RegionOffsets
    std::uint16_t ea_length = 0;
    DataRef data;                               // files: default stream
    std::uint64_t length = 0;
    StreamType data_type = StreamType::data;    // as stored (a parent may have PE images)
    bool sparse = false;
    std::map<std::u16string, Child> children;   // directories, keyed by upcased name
    std::map<std::u16string, NamedStream> streams;  // alternate streams, keyed by upcased name
    std::vector<Link> links;                    // names of this node
    std::uint32_t id = 0;                       // assigned at commit
    std::uint32_t parent_id = 0;
};

// Checks on caller-supplied blobs, so that what the reader later parses is sound.
const char* check_security_descriptor(const Bytes& sd) {
    if (sd.size() < 20) return "security descriptor shorter than 20 bytes";
    if (sd.size() > kMaxBlobSize - 2) return "security descriptor larger than 65533 bytes";
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sd.data());
    if (p[0] != 1) return "security descriptor revision is not 1";
    if (!(ld16(p + 2) & 0x8000)) return "security descriptor is not self-relative";
    for (int i = 0; i < 4; ++i) {
        std::uint32_t off = ld32(p + 4 + 4 * i);
        if (off != 0 && (off < 20 || off >= sd.size()))
            return "security descriptor has an offset outside the descriptor";
    }
    return nullptr;
}

const char* check_extended_attributes(const Bytes& ea) {
    if (ea.size() > kMaxBlobSize) return "EA blob larger than 65535 bytes";
    const unsigned char* p = reinterpret_cast<const unsigned char*>(ea.data());
    std::size_t pos = 0, n = ea.size();
    while (pos < n) {
        if (n - pos < 8) return "EA entry truncated";
        std::uint32_t next = ld32(p + pos);
        std::uint8_t name_len = p[pos + 5];
        std::uint16_t value_len = ld16(p + pos + 6);
        std::size_t need = 8 + std::size_t(name_len) + 1 + value_len;
        if (name_len == 0) return "EA entry with an empty name";
        if (need > n - pos) return "EA entry runs past the end of the blob";
        if (p[pos + 8 + name_len] != 0) return "EA name is not NUL-terminated";
        if (next == 0) {
            if (pos + need != n && ((pos + need + 3) & ~std::size_t(3)) != n)
                return "bytes after the last EA entry";
            return nullptr;
        }
        if (next < need || next % 4 != 0 || next > n - pos) return "EA entry has a bad next-entry offset";
        pos += next;
    }
    return ea.empty() ? nullptr : "EA chain does not end";
}

const char* check_reparse_data(const Bytes& rp) {
    if (rp.size() < 8) return "reparse buffer shorter than 8 bytes";
    if (rp.size() > kMaxBlobSize - 2) return "reparse buffer larger than 65533 bytes";
    const unsigned char* p = reinterpret_cast<const unsigned char*>(rp.data());
    std::uint32_t tag = ld32(p);
    std::size_t header = (tag & 0x80000000u) ? 8 : 24;  // non-Microsoft tags carry a GUID
    if (rp.size() < header) return "reparse buffer shorter than its header";
    if (std::size_t(ld16(p + 4)) + header != rp.size())
        return "reparse buffer's data length does not match its size";
    return nullptr;
}

// Link table: length u32, count u32, values, name offsets, names (u16 length + units).
std::vector<unsigned char> encode_link_table(
    const std::vector<std::pair<const std::u16string*, const unsigned char*>>& entries,
    std::size_t value_size) {
    std::size_t count = entries.size();
    std::size_t size = kLinkTableHeaderSize + count * (value_size + 4);
    for (auto& e : entries) size += 2 + 2 * e.first->size();
    std::vector<unsigned char> t(size);
    st32(t.data(), static_cast<std::uint32_t>(size));
    st32(t.data() + 4, static_cast<std::uint32_t>(count));
    std::size_t values = kLinkTableHeaderSize;
    std::size_t offsets = values + count * value_size;
    std::size_t names = offsets + count * 4;
    for (std::size_t i = 0; i < count; ++i) {
        std::memcpy(&t[values + i * value_size], entries[i].second, value_size);
        st32(&t[offsets + i * 4], static_cast<std::uint32_t>(names));
        const std::u16string& n = *entries[i].first;
        st16(&t[names], static_cast<std::uint16_t>(n.size()));
        for (std::size_t k = 0; k < n.size(); ++k) st16(&t[names + 2 + 2 * k], static_cast<std::uint16_t>(n[k]));
        names += 2 + 2 * n.size();
    }
    return t;
}

class PortableWriter final : public ImageWriter {
public:
    explicit PortableWriter(const CreateOptions& o);
    ~PortableWriter() override { close(); }

    void add_file(const std::u16string& path, const FileMetadata& meta) override;
    void write(const void* data, std::size_t n) override;
    void close_stream() override;
    void add_alternate_stream(const std::u16string& path, std::uint64_t size) override;
    void add_hard_link(const std::u16string& existing, const std::u16string& new_path) override;
    void remove(const std::u16string& path) override;
    void add_tombstone(const std::u16string& path) override;
    void add_merge_link(const std::u16string& existing, const std::u16string& new_path) override;
    void commit() override;
    void close() override;
    const std::string& image_path() const override { return image_path_; }
    bool committed() const override { return committed_; }

private:
    void check_open(const char* op);
    std::vector<std::u16string> components(const char* op, const std::u16string& path);
    Node* find(const std::vector<std::u16string>& comps, std::size_t n, const char* op,
               const std::u16string& path, bool must_exist);
    Node* parent_of(const std::vector<std::u16string>& comps, const char* op, const std::u16string& path);
    Node* new_node();
    void unlink(Node* parent, const std::u16string& key);
    void set_metadata(Node* node, const FileMetadata& meta, const char* op, const std::u16string& path);
    void check_case(const Child& existing, const std::u16string& name, const char* op,
                    const std::u16string& path);
    void load_parent(const std::string& dir);
    Node* node_from_record(const Image& parent, std::uint32_t id);
    void assign_ids();
    void serialize();
    void write_header();

    CreateOptions opts_;
    platform::FileLock lock_;
    std::string image_path_, header_temp_;
    Version version_;
    std::uint32_t record_size_;
    const std::uint16_t* upcase_;
    std::unique_ptr<ObjectStore> store_;
    std::vector<std::unique_ptr<Node>> arena_;
    Node* root_;
    std::vector<Node*> ordered_;  // by file id, after assign_ids

    // the open stream
    struct OpenStream {
        Node* node = nullptr;
        std::u16string stream;  // empty: default stream
        std::u16string path;    // for messages
        std::uint64_t declared = 0, written = 0;
    } open_;

    std::vector<RegionSet> parent_sets_;  // header order: the parent's chain, then the parent
    std::uint64_t filesystem_offset_ = 0;
    bool committed_ = false, closed_ = false, failed_ = false;
};

PortableWriter::PortableWriter(const CreateOptions& o) : opts_(o) {
    std::string dir = opts_.directory.empty() ? "." : opts_.directory;
    opts_.directory = dir;
    image_path_ = platform::join(dir, opts_.name);
    if (opts_.name.empty() || opts_.name.find('/') != std::string::npos ||
        opts_.name.find('\\') != std::string::npos || opts_.name == "." || opts_.name == "..")
        throw_op_error(Errc::invalid_argument, "create", image_path_, "image name must be a plain file name");
    if (opts_.format_major != 2 && opts_.format_major != 3)
        throw_op_error(Errc::invalid_argument, "create", image_path_, "format version must be 2 or 3");
    if (!platform::exists(dir))
        throw_op_error(Errc::not_found, "create", image_path_, "the directory " + dir + " does not exist", ENOENT);
    // One writer per directory: images there share the directory's files.
    lock_ = lock_directory(dir, "create", image_path_);
    if (!lock_.locked())
        throw_op_error(Errc::busy, "create", image_path_,
                       "another writer is writing in " + dir + " (it holds " + platform::kWriterLockName +
                           "); one writer per directory",
                       EBUSY);
    bool overwrite = !opts_.parent.empty() && opts_.parent == opts_.name;  // fork in place
    if (!overwrite && platform::exists(image_path_))
        throw_op_error(Errc::exists, "create", image_path_, "an image of that name already exists", EEXIST);
    version_ = Version{opts_.format_major, 0};
    record_size_ = opts_.format_major >= 3 ? kFileRecordSizeV3 : kFileRecordSizeV2;
    upcase_ = windows_upcase_table();
    header_temp_ = platform::join(dir, platform::kTempPrefix + opts_.name);
    if (!opts_.parent.empty()) {
        try {
            load_parent(dir);
        } catch (...) {
            if (store_) store_->discard();  // a damaged parent: leave nothing behind
            throw;
        }
        return;
    }
    Guid guid = opts_.region_set ? *opts_.region_set : Guid::random();
    store_ = std::make_unique<ObjectStore>(dir, guid, 0, version_, image_path_);
    root_ = new_node();
    root_->directory = true;
    // Windows creates the root implicitly: no security descriptor, zero times.
}

// A fork starts as its parent's tree. Its header lists the parent's region sets
// in the parent's own order, so every RegionOffset in the parent's records means
// the same object in the child: unchanged files keep pointing at the parent's
// objects, and the parents' objectid files let new objects deduplicate against
// what the chain already stores.
void PortableWriter::load_parent(const std::string& dir) {
    const std::string& parent_name = opts_.parent;
    if (parent_name.find('/') != std::string::npos || parent_name.find('\\') != std::string::npos)
        throw_op_error(Errc::invalid_argument, "create", image_path_,
                       "the parent must be an image in the same directory, named without a path");
    std::unique_ptr<Image> parent = Image::open(platform::join(dir, parent_name));
    ImageInfo info = parent->info();
    parent_sets_ = info.region_sets;
    std::uint32_t base = 0;
    for (const auto& s : parent_sets_) base += s.count;
    Guid guid = opts_.region_set ? *opts_.region_set : Guid::random();
    for (const auto& s : parent_sets_)
        if (s.guid == guid)
            throw_op_error(Errc::invalid_argument, "create", image_path_,
                           "region set " + guid.to_string() + " is already used by the parent chain");
    if (base + 3 > 0xFFFF) throw_op_error(Errc::invalid_argument, "create", image_path_, "parent chain has too many regions");
    store_ = std::make_unique<ObjectStore>(dir, guid, static_cast<std::uint16_t>(base), version_, image_path_);

    // Objects the chain already holds, for deduplication.
    std::uint32_t global = 0;
    for (const auto& s : parent_sets_) {
        for (unsigned i = 0; i < s.count; ++i, ++global) {
            std::string p = platform::join(dir, "objectid_" + s.guid.to_string() + "_" + std::to_string(i));
            if (!platform::exists(p)) continue;  // only deduplication is lost
            platform::MappedFile f = platform::MappedFile::open(p);
            const unsigned char* d = f.data();
            if (f.size() < kObjectIdHeaderSize || std::memcmp(d, kMagic, 8) != 0) continue;
            std::uint64_t table = ld32(d + 40), count = ld32(d + 44);
            if (table > f.size() || count > (f.size() - table) / kObjectIdEntrySize) continue;
            std::uint64_t region_size = platform::file_size(info.region_files[global]);
            for (std::uint64_t k = 0; k < count; ++k) {
                const unsigned char* e = d + table + k * kObjectIdEntrySize;
                ObjectId id;
                id.length = ld64(e);
                std::memcpy(id.digest.data(), e + 8, kDigestSize);
                std::uint64_t off = ld64(e + 32);
                if (off < kRegionHeaderSize || off > region_size || id.length > region_size - off) continue;
                store_->add_known(id, make_region_offset(static_cast<std::uint16_t>(global), off));
            }
        }
    }

    // The tree: one node per file id, one link per directory entry.
    std::unordered_map<std::uint32_t, Node*> nodes;
    std::uint32_t root_id = info.root_id;
    root_ = node_from_record(*parent, root_id);
    nodes[root_id] = root_;
    std::vector<std::uint32_t> dirs{root_id};
    std::vector<DirEntry> entries;
    while (!dirs.empty()) {
        std::uint32_t d = dirs.back();
        dirs.pop_back();
        Node* dn = nodes.at(d);
        for (const DirEntry& e : parent->list_directory(d)) {
            auto it = nodes.find(e.file_id);
            Node* child;
            if (it == nodes.end()) {
                child = node_from_record(*parent, e.file_id);
                nodes[e.file_id] = child;
                if (child->directory) dirs.push_back(e.file_id);
            } else {
                child = it->second;
                if (child->directory)
                    throw_op_error(Errc::corrupt_image, "create", image_path_,
                                   "parent image " + parent_name + ": directory " + std::to_string(e.file_id) +
                                       " appears twice in the tree");
            }
            std::u16string key = upcase(e.name, upcase_);
            if (!dn->children.emplace(key, Child{e.name, child}).second)
                throw_op_error(Errc::corrupt_image, "create", image_path_,
                               "parent image " + parent_name + ": duplicate name '" + to_utf8(e.name) + "'");
            child->links.push_back(Link{dn, e.name});
        }
    }
}

Node* PortableWriter::node_from_record(const Image& parent, std::uint32_t id) {
    FileRecord r = parent.record(id);
    Node* n = new_node();
    n->directory = r.default_stream.type == StreamType::link_table;
    n->flags = r.flags;
    n->reparse_tag = r.reparse_data ? r.reparse_tag : 0;
    n->times = FileTimes{r.creation_time, r.last_write_time, r.change_time, r.last_access_time};
    n->sd = r.security_descriptor;
    n->ea = r.ea_length ? r.extended_attributes : 0;
    n->ea_length = n->ea ? r.ea_length : 0;
    n->reparse = r.reparse_data;
    if (!n->directory) {
        n->data.region_offset = r.default_stream.data;
        n->length = r.default_stream.length;
        n->data_type = r.default_stream.type;
        n->sparse = r.default_stream.sparse;
    }
    for (auto& [name, st] : parent.stream_table(id)) {
        NamedStream ns;
        ns.name = name;
        ns.data.region_offset = st.data;
        ns.length = st.length;
        ns.type = st.type;
        ns.sparse = st.sparse;
        n->streams[upcase(name, upcase_)] = ns;
    }
    return n;
}

Node* PortableWriter::new_node() {
    arena_.push_back(std::make_unique<Node>());
    return arena_.back().get();
}

void PortableWriter::check_open(const char* op) {
    if (closed_ || committed_)
        throw_op_error(Errc::bad_state, op, image_path_, committed_ ? "the image is already committed" : "the writer is closed");
    if (failed_)
        throw_op_error(Errc::bad_state, op, image_path_, "an earlier write failed; the image can only be discarded");
}

std::vector<std::u16string> PortableWriter::components(const char* op, const std::u16string& path) {
    std::vector<std::u16string> comps;
    PathProblem p = split_path(path, comps);
    if (!p.ok)
        throw_path_error(p.too_long ? Errc::name_too_long : Errc::invalid_argument, op, image_path_,
                         to_utf8(path), p.reason, p.too_long ? ENAMETOOLONG : EINVAL);
    return comps;
}

Node* PortableWriter::find(const std::vector<std::u16string>& comps, std::size_t n, const char* op,
                           const std::u16string& path, bool must_exist) {
    Node* cur = root_;
    for (std::size_t i = 0; i < n; ++i) {
        if (!cur->directory)
            throw_path_error(Errc::not_a_directory, op, image_path_, to_utf8(path),
                             "'" + to_utf8(join_path({comps.begin(), comps.begin() + i})) + "' is not a directory", ENOTDIR);
        auto it = cur->children.find(upcase(comps[i], upcase_));
        if (it == cur->children.end()) {
            if (!must_exist) return nullptr;
            bool parent = i + 1 < n;
            throw_path_error(Errc::not_found, op, image_path_, to_utf8(path),
                             parent ? "parent directory '" + to_utf8(join_path({comps.begin(), comps.begin() + i + 1})) + "' does not exist"
                                    : "no such file or directory", ENOENT);
        }
        cur = it->second.node;
    }
    return cur;
}

Node* PortableWriter::parent_of(const std::vector<std::u16string>& comps, const char* op,
                                const std::u16string& path) {
    Node* parent = find(comps, comps.size() - 1, op, path, true);
    if (!parent->directory)
        throw_path_error(Errc::not_a_directory, op, image_path_, to_utf8(path), "parent is not a directory", ENOTDIR);
    return parent;
}

void PortableWriter::check_case(const Child& existing, const std::u16string& name, const char* op,
                                const std::u16string& path) {
    if (existing.name != name)
        throw_path_error(Errc::exists, op, image_path_, to_utf8(path),
                         "differs only in case from the existing '" + to_utf8(existing.name) +
                             "' (names are case-insensitive)", EEXIST);
}

void PortableWriter::unlink(Node* parent, const std::u16string& key) {
    auto it = parent->children.find(key);
    if (it == parent->children.end()) return;
    Node* node = it->second.node;
    std::u16string name = it->second.name;
    parent->children.erase(it);
    for (auto l = node->links.begin(); l != node->links.end(); ++l) {
        if (l->parent == parent && l->name == name) {
            node->links.erase(l);
            break;
        }
    }
    if (node->directory && node->links.empty()) {
        std::vector<std::u16string> keys;
        for (auto& c : node->children) keys.push_back(c.first);
        for (auto& k : keys) unlink(node, k);
    }
}

void PortableWriter::set_metadata(Node* node, const FileMetadata& meta, const char* op,
                                  const std::u16string& path) {
    auto invalid = [&](const char* why) { throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path), why, EINVAL); };
    static const Bytes kNullDacl = null_dacl_security_descriptor();
    const Bytes& sd = meta.security_descriptor ? *meta.security_descriptor : kNullDacl;
    if (const char* why = check_security_descriptor(sd)) invalid(why);
    if (const char* why = check_extended_attributes(meta.extended_attributes)) invalid(why);
    if (!meta.reparse_data.empty())
        if (const char* why = check_reparse_data(meta.reparse_data)) invalid(why);
    // Stored objects: SD (u16 length prefix), EA blob (no prefix), reparse (u16 prefix).
    std::string obj;
    obj.resize(2);
    st16(reinterpret_cast<unsigned char*>(&obj[0]), static_cast<std::uint16_t>(sd.size()));
    obj += sd;
    node->sd = store_->put_metadata(obj.data(), obj.size(), true);
    node->ea = meta.extended_attributes.empty()
                   ? 0
                   : store_->put_metadata(meta.extended_attributes.data(), meta.extended_attributes.size(), true);
    node->ea_length = static_cast<std::uint16_t>(meta.extended_attributes.size());
    if (!meta.reparse_data.empty()) {
        obj.resize(2);
        st16(reinterpret_cast<unsigned char*>(&obj[0]), static_cast<std::uint16_t>(meta.reparse_data.size()));
        obj += meta.reparse_data;
        node->reparse = store_->put_metadata(obj.data(), obj.size());
        node->reparse_tag = ld32(reinterpret_cast<const unsigned char*>(meta.reparse_data.data()));
    } else {
        node->reparse = 0;
        node->reparse_tag = 0;
    }
    node->flags = attributes_to_flags(meta.attributes);
    node->times = meta.times;
}

void PortableWriter::add_file(const std::u16string& path, const FileMetadata& meta) {
    const char* op = "add";
    check_open(op);
    close_stream();
    bool dir = (meta.attributes & kAttrDirectory) != 0;
    auto comps = components(op, path);
    if (dir && meta.size != 0)
        throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path), "a directory cannot have a size", EINVAL);
    if (meta.size > kOffsetMask)
        throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path), "file size exceeds 2^48 bytes", EINVAL);
    if (comps.empty()) {
        if (!dir)
            throw_path_error(Errc::is_a_directory, op, image_path_, "\\", "the root is a directory", EISDIR);
        set_metadata(root_, meta, op, path);
        return;
    }
    Node* parent = parent_of(comps, op, path);
    std::u16string key = upcase(comps.back(), upcase_);
    auto it = parent->children.find(key);
    if (it != parent->children.end()) {
        check_case(it->second, comps.back(), op, path);
        Node* existing = it->second.node;
        if (existing->directory && dir) {  // update metadata, keep children
            set_metadata(existing, meta, op, path);
            return;
        }
        if (existing->directory)
            throw_path_error(Errc::is_a_directory, op, image_path_, to_utf8(path),
                             "a directory of that name exists; remove it first", EISDIR);
        if (dir)
            throw_path_error(Errc::exists, op, image_path_, to_utf8(path),
                             "a file of that name exists; remove it first", EEXIST);
    }
    Node* node = new_node();
    node->directory = dir;
    set_metadata(node, meta, op, path);
    if (it != parent->children.end()) unlink(parent, key);  // replace the file
    parent->children.emplace(key, Child{comps.back(), node});
    node->links.push_back(Link{parent, comps.back()});
    node->length = dir ? 0 : meta.size;
    if (!dir && meta.size > 0) {
        store_->begin_data(meta.size);
        open_.node = node;
        open_.stream.clear();
        open_.path = join_path(comps);
        open_.declared = meta.size;
        open_.written = 0;
    }
}

void PortableWriter::write(const void* data, std::size_t n) {
    check_open("write");
    if (!open_.node)
        throw_op_error(Errc::bad_state, "write", image_path_, "no stream is open (add a file with a size first)");
    if (n > open_.declared - open_.written)
        throw_path_error(Errc::invalid_argument, "write", image_path_, to_utf8(open_.path),
                         "write of " + std::to_string(n) + " bytes past the declared size of " +
                             std::to_string(open_.declared) + " bytes (" + std::to_string(open_.written) + " written)",
                         EINVAL);
    try {
        store_->append_data(data, n);
    } catch (...) {
        failed_ = true;  // a region file may now hold part of the bytes
        throw;
    }
    open_.written += n;
}

void PortableWriter::close_stream() {
    if (!open_.node) return;
    OpenStream s = open_;
    open_ = OpenStream{};
    if (s.written != s.declared) {
        store_->abort_data();
        // Take the incomplete file (or stream) out of the tree so nothing refers to it.
        if (s.stream.empty()) {
            for (auto& l : std::vector<Link>(s.node->links)) unlink(l.parent, upcase(l.name, upcase_));
        } else {
            s.node->streams.erase(upcase(s.stream, upcase_));
        }
        throw_path_error(Errc::invalid_argument, "write", image_path_, to_utf8(s.path),
                         "stream closed after " + std::to_string(s.written) + " of its declared " +
                             std::to_string(s.declared) + " bytes",
                         EINVAL);
    }
    DataRef ref = store_->end_data();
    if (s.stream.empty())
        s.node->data = ref;
    else
        s.node->streams[upcase(s.stream, upcase_)].data = ref;
}

void PortableWriter::add_alternate_stream(const std::u16string& path, std::uint64_t size) {
    const char* op = "add stream";
    check_open(op);
    close_stream();
    std::u16string file, stream;
    if (!split_stream_path(path, file, stream))
        throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path), "expected 'file:stream'", EINVAL);
    if (stream.empty() || stream.find_first_of(u":\\/") != std::u16string::npos ||
        stream.find(u'\0') != std::u16string::npos)
        throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path), "bad stream name", EINVAL);
    if (stream.size() > kMaxNameUnits)
        throw_path_error(Errc::name_too_long, op, image_path_, to_utf8(path),
                         "stream name longer than 255 UTF-16 code units", ENAMETOOLONG);
    if (size > kOffsetMask)
        throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path), "stream size exceeds 2^48 bytes", EINVAL);
    auto comps = components(op, file);
    Node* node = find(comps, comps.size(), op, file, true);
    std::u16string key = upcase(stream, upcase_);
    auto existing = node->streams.find(key);
    if (existing != node->streams.end() && existing->second.name != stream)
        throw_path_error(Errc::exists, op, image_path_, to_utf8(path),
                         "differs only in case from the existing stream '" + to_utf8(existing->second.name) +
                             "' (names are case-insensitive)", EEXIST);
    NamedStream ns;
    ns.name = stream;
    ns.length = size;
    node->streams[key] = ns;
    if (size > 0) {
        store_->begin_data(size);
        open_.node = node;
        open_.stream = stream;
        open_.path = join_path(comps) + u':' + stream;
        open_.declared = size;
        open_.written = 0;
    }
}

void PortableWriter::add_hard_link(const std::u16string& existing, const std::u16string& new_path) {
    const char* op = "link";
    check_open(op);
    close_stream();
    std::vector<std::u16string> ecomps, ncomps;
    PathProblem p1 = split_path(existing, ecomps), p2 = split_path(new_path, ncomps);
    if (!p1.ok || !p2.ok) {
        const PathProblem& p = !p1.ok ? p1 : p2;
        throw Error(p.too_long ? Errc::name_too_long : Errc::invalid_argument, ErrorSubject::link, op,
                    image_path_, to_utf8(new_path), to_utf8(existing), p.reason, p.too_long ? ENAMETOOLONG : EINVAL);
    }
    auto link_error = [&](Errc c, const std::string& why, int e) {
        throw Error(c, ErrorSubject::link, op, image_path_, to_utf8(new_path), to_utf8(existing), why, e);
    };
    Node* target = find(ecomps, ecomps.size(), op, existing, false);
    if (!target) link_error(Errc::not_found, "link target does not exist", ENOENT);
    if (target->directory) link_error(Errc::is_a_directory, "cannot hard-link a directory", EISDIR);
    if (ncomps.empty()) link_error(Errc::exists, "the root exists", EEXIST);
    Node* parent = find(ncomps, ncomps.size() - 1, op, new_path, false);
    if (!parent) link_error(Errc::not_found, "parent directory of the new link does not exist", ENOENT);
    if (!parent->directory) link_error(Errc::not_a_directory, "parent of the new link is not a directory", ENOTDIR);
    std::u16string key = upcase(ncomps.back(), upcase_);
    auto it = parent->children.find(key);
    if (it != parent->children.end()) {
        if (it->second.node == target && it->second.name == ncomps.back()) return;
        if (it->second.name != ncomps.back())
            link_error(Errc::exists, "differs only in case from the existing '" + to_utf8(it->second.name) + "'", EEXIST);
        if (it->second.node->directory) link_error(Errc::is_a_directory, "a directory of that name exists", EISDIR);
        unlink(parent, key);  // a link replaces a file, like a file does
    }
    parent->children.emplace(key, Child{ncomps.back(), target});
    target->links.push_back(Link{parent, ncomps.back()});
}

void PortableWriter::remove(const std::u16string& path) {
    const char* op = "remove";
    check_open(op);
    close_stream();
    auto comps = components(op, path);
    if (comps.empty())
        throw_path_error(Errc::invalid_argument, op, image_path_, "\\", "cannot remove the root", EINVAL);
    Node* parent = parent_of(comps, op, path);
    std::u16string key = upcase(comps.back(), upcase_);
    if (parent->children.find(key) == parent->children.end())
        throw_path_error(Errc::not_found, op, image_path_, to_utf8(path), "no such file or directory", ENOENT);
    unlink(parent, key);
}

void PortableWriter::add_tombstone(const std::u16string& path) {
    throw_path_error(Errc::unsupported, "tombstone", image_path_, to_utf8(path),
                     "tombstones exist only in merged images, whose format is not public: "
                     "use the native backend (cimfs.dll, Windows)", ENOTSUP);
}

void PortableWriter::add_merge_link(const std::u16string& existing, const std::u16string& new_path) {
    throw Error(Errc::unsupported, ErrorSubject::link, "merge link", image_path_, to_utf8(new_path),
                to_utf8(existing),
                "merge links exist only in merged images, whose format is not public: "
                "use the native backend (cimfs.dll, Windows)", ENOTSUP);
}

void PortableWriter::assign_ids() {
    // Pre-order over names in link-table order: deterministic for a given tree.
    ordered_.clear();
    for (auto& n : arena_) n->id = 0;
    std::vector<std::pair<Node*, Node*>> stack{{root_, root_}};
    while (!stack.empty()) {
        auto [node, parent] = stack.back();
        stack.pop_back();
        if (node->id) continue;
        ordered_.push_back(node);
        node->id = static_cast<std::uint32_t>(ordered_.size());
        node->parent_id = parent->id;
        if (ordered_.size() > 0xFFFFFFF0u)
            throw_op_error(Errc::invalid_argument, "commit", image_path_, "too many files");
        for (auto it = node->children.rbegin(); it != node->children.rend(); ++it)
            stack.emplace_back(it->second.node, node);
    }
}

void PortableWriter::serialize() {
    std::uint64_t upcase_ro = store_->put_metadata(upcase_, kUpcaseTableSize);
    // The upcase table bytes are little-endian u16s; on a big-endian host the
    // in-memory table would need swapping.
    static_assert(sizeof(std::uint16_t) == 2, "u16");
    std::vector<FileRecord> records(ordered_.size());
    for (std::size_t i = 0; i < ordered_.size(); ++i) {
        Node* n = ordered_[i];
        FileRecord& r = records[i];
        r.flags = n->flags;
        r.ea_length = n->ea_length;
        r.reparse_tag = n->reparse_tag;
        r.creation_time = n->times.creation;
        r.last_write_time = n->times.last_write;
        r.change_time = n->times.change;
        r.last_access_time = n->times.last_access;
        r.security_descriptor = n->sd;
        r.extended_attributes = n->ea;
        r.reparse_data = n->reparse;
        r.parent_file_id = n->parent_id;
        if (n->directory) {
            r.default_stream.type = StreamType::link_table;
            if (!n->children.empty()) {
                std::vector<unsigned char> values(4 * n->children.size());
                std::vector<std::pair<const std::u16string*, const unsigned char*>> entries;
                entries.reserve(n->children.size());
                for (auto& c : n->children) {
                    unsigned char* v = values.data() + 4 * entries.size();
                    st32(v, c.second.node->id);
                    entries.emplace_back(&c.second.name, v);
                }
                auto t = encode_link_table(entries, 4);
                r.default_stream.data = store_->put_metadata(t.data(), t.size());
                r.default_stream.length = t.size();
            }
        } else {
            r.default_stream.type = n->data_type;
            r.default_stream.sparse = n->sparse;
            r.default_stream.length = n->length;
            r.default_stream.data = store_->resolved(n->data);
        }
        if (!n->streams.empty()) {
            std::vector<std::vector<unsigned char>> values;
            std::vector<std::pair<const std::u16string*, const unsigned char*>> entries;
            values.reserve(n->streams.size());
            for (auto& s : n->streams) {
                Stream st;
                st.length = s.second.length;
                st.type = s.second.type;
                st.sparse = s.second.sparse;
                st.data = store_->resolved(s.second.data);
                values.emplace_back(kStreamSize);
                encode_stream(values.back().data(), st);
                entries.emplace_back(&s.second.name, values.back().data());
            }
            auto t = encode_link_table(entries, kStreamSize);
            r.stream_table = store_->put_metadata(t.data(), t.size());
        }
        if (record_size_ >= kFileRecordSizeV3 && (n == root_ || n->links.size() == 1)) {
            // The names of this file, (parent id, name): one for all but hard-linked files.
            static const std::u16string dot = u".";
            unsigned char parent_id[4];
            st32(parent_id, n == root_ ? 1 : n->links[0].parent->id);
            const std::u16string* name = n == root_ ? &dot : &n->links[0].name;
            auto t = encode_link_table({{name, parent_id}}, 4);
            // No other file has this (parent, name): the table is this file's alone.
            r.links = store_->put_unique_metadata(t.data(), t.size());
        } else if (record_size_ >= kFileRecordSizeV3) {
            // The names of this file: (parent id, name), sorted like any link table.
            std::vector<std::pair<std::u16string, std::uint32_t>> names;
            if (n == root_) {
                names.emplace_back(u".", 1);
            } else {
                for (auto& l : n->links) names.emplace_back(l.name, l.parent->id);
            }
            std::vector<std::pair<std::u16string, std::pair<std::u16string, std::uint32_t>>> keyed;
            for (auto& nm : names) keyed.push_back({upcase(nm.first, upcase_), nm});
            std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
                return a.first != b.first ? a.first < b.first : a.second.second < b.second.second;
            });
            std::vector<std::vector<unsigned char>> values;
            std::vector<std::pair<const std::u16string*, const unsigned char*>> entries;
            values.reserve(keyed.size());
            for (auto& k : keyed) {
                values.emplace_back(4);
                st32(values.back().data(), k.second.second);
                entries.emplace_back(&k.second.first, values.back().data());
            }
            auto t = encode_link_table(entries, 4);
            r.links = store_->put_unique_metadata(t.data(), t.size());
        }
    }
    // The links tables were hashed in the background; a rare one that equals an
    // earlier object is referred to through that object.
    store_->settle_small();
    if (record_size_ >= kFileRecordSizeV3)
        for (FileRecord& r : records) r.links = store_->final_offset(r.links);
    // File tables of up to 1024 records, then the directory of tables.
    std::vector<unsigned char> directory;
    for (std::size_t first = 0; first < records.size(); first += kFilesPerTable) {
        std::size_t count = std::min<std::size_t>(kFilesPerTable, records.size() - first);
        std::vector<unsigned char> table(count * record_size_);
        for (std::size_t k = 0; k < count; ++k)
            encode_file_record(&table[k * record_size_], records[first + k], record_size_);
        std::uint64_t ro = store_->put_metadata(table.data(), table.size());
        unsigned char e[kFileTableDirectoryEntrySize] = {};
        st64(e, ro);
        st16(e + 8, static_cast<std::uint16_t>(count));
        st16(e + 10, static_cast<std::uint16_t>(record_size_));
        directory.insert(directory.end(), e, e + sizeof e);
    }
    std::uint64_t directory_ro = store_->put_metadata(directory.data(), directory.size());
    unsigned char fs[kFilesystemObjectSize] = {};
    st64(fs, upcase_ro);
    st64(fs + 8, directory_ro);
    st32(fs + 16, static_cast<std::uint32_t>(directory.size() / kFileTableDirectoryEntrySize));
    st32(fs + 20, root_->id);
    filesystem_offset_ = store_->put_metadata(fs, sizeof fs);
}

void PortableWriter::write_header() {
    std::vector<unsigned char> h(kFilesystemHeaderSize + parent_sets_.size() * kRegionSetSize);
    encode_common_header(h.data(), static_cast<std::uint32_t>(h.size()), HeaderType::filesystem, version_);
    RegionSet own{store_->guid(), store_->region_count()};
    encode_region_set(h.data() + 32, own);
    st64(h.data() + 56, filesystem_offset_);
    st16(h.data() + 70, static_cast<std::uint16_t>(parent_sets_.size()));
    for (std::size_t i = 0; i < parent_sets_.size(); ++i)
        encode_region_set(h.data() + kFilesystemHeaderSize + i * kRegionSetSize, parent_sets_[i]);
    platform::File f = platform::File::create_exclusive(header_temp_);
    f.pwrite_all(h.data(), h.size(), 0);
    if (opts_.durable) f.sync();
    f.close();
}

void PortableWriter::commit() {
    check_open("commit");
    try {
        close_stream();
        store_->resolve_pending();
        assign_ids();
        serialize();
        store_->finish(opts_.durable);
        write_header();
        if (opts_.parent != opts_.name && platform::exists(image_path_))
            throw_op_error(Errc::exists, "commit", image_path_, "an image of that name appeared while writing", EEXIST);
        // Regions and objectid files first, the header last: an image is either
        // complete under its name or not there at all.
        store_->publish();
        platform::rename_replace(header_temp_, image_path_);
        committed_ = true;  // from here on the image exists: never discard it
        arena_.clear();
        if (opts_.durable) platform::sync_directory(opts_.directory);
    } catch (...) {
        if (!committed_) failed_ = true;
        close();
        throw;
    }
    close();
}

void PortableWriter::close() {
    if (closed_) return;
    closed_ = true;
    if (!committed_) {
        open_ = OpenStream{};
        if (store_) store_->discard();
        platform::remove_file(header_temp_);
    }
    store_.reset();
    lock_.release();
}

}  // namespace

std::unique_ptr<ImageWriter> create_portable_writer(const CreateOptions& options) {
    return std::make_unique<PortableWriter>(options);
}

}  // namespace cimfs
