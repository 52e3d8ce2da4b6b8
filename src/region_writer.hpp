// Internal to the portable writer: the image's own region files and the object
// store on top of them (object IDs, deduplication, deferred hashing of large
// data, and the object-ID files).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cimfs/format.hpp"
#include "cimfs/object_id.hpp"
#include "cimfs/platform.hpp"

namespace cimfs::detail {

// One region file being written. Small appends are gathered in a buffer; large
// ones go straight from the caller's memory to the file.
class RegionFile {
public:
    RegionFile(format::RegionType type, std::uint16_t index_in_set, std::uint16_t index_in_type,
               std::string final_path, std::string temp_path, format::Version version);

    format::RegionType type() const { return type_; }
    std::uint16_t index_in_set() const { return index_in_set_; }
    std::uint16_t index_in_type() const { return index_in_type_; }
    std::uint32_t alignment() const;
    std::uint64_t end() const { return end_; }

    // Move the write position up to the region's alignment; returns it.
    std::uint64_t align();
    void append(const void* data, std::size_t n);
    // Drop everything from `pos` on (undo of the last object).
    void truncate_to(std::uint64_t pos);
    // Whether the region holds exactly `bytes` at `offset` (written data, flushed or not).
    bool holds(std::uint64_t offset, const std::string& bytes);
    void flush();
    // Pad the file to the alignment and flush; `durable` also fsyncs.
    void finish(bool durable);

    platform::File& file() { return file_; }
    const std::string& final_path() const { return final_path_; }
    const std::string& temp_path() const { return temp_path_; }

    struct Entry {
        ObjectId id;
        std::uint64_t offset;
        bool dropped = false;  // a copy found to duplicate an earlier object; not listed
    };
    std::vector<Entry> entries;  // every object stored here, for the objectid file

private:
    format::RegionType type_;
    std::uint16_t index_in_set_, index_in_type_;
    std::string final_path_, temp_path_;
    platform::File file_;
    std::uint64_t end_ = 0;         // logical end: where the next object may start
    std::vector<unsigned char> buf_;
    std::uint64_t buf_start_ = 0;   // file offset of buf_[0]
    std::uint64_t written_back_ = 0;  // bytes before this were handed to the disk
    void write_behind();
};

// Where a data object lives: resolved at once (small data) or after the
// deferred hash of large data has been compared with the known objects.
struct DataRef {
    std::uint64_t region_offset = 0;  // valid when pending < 0
    std::int64_t pending = -1;        // index into ObjectStore's pending list
};

class ObjectStore {
public:
    ObjectStore(std::string directory, format::Guid guid, std::uint16_t base_region_index,
                format::Version version, std::string image_for_errors);
    ~ObjectStore();

    // Objects already present (in parent regions), found by their IDs.
    void add_known(const ObjectId& id, std::uint64_t region_offset);

    // Store a whole metadata object (deduplicated); returns its RegionOffset.
    // `shared`: one that many files may have (a security descriptor, an EA blob),
    // remembered by its bytes so that the next copy is found without hashing.
    std::uint64_t put_metadata(const void* data, std::size_t n, bool shared = false);
    // Store a metadata object that cannot equal any other object of the image
    // (a file's own links table): not looked up, hashed in the background.
    std::uint64_t put_unique_metadata(const void* data, std::size_t n);

    // Streaming data objects: begin, append any number of times, end.
    void begin_data(std::uint64_t length);
    void append_data(const void* data, std::size_t n);
    DataRef end_data();
    // Abandon the object being streamed (its bytes are dropped).
    void abort_data();

    // Wait for the hashes of large data, deduplicate them in the order they were
    // written (see end_data: duplicates were already taken back).
    void resolve_pending();
    std::uint64_t resolved(const DataRef& ref) const;
    // Wait for the background hashes of small and unique objects and list them.
    // A rare one whose ID an earlier object has (the same bytes reached the image
    // by two routes) is dropped from the lists and references go to the earlier
    // copy: final_offset() maps its RegionOffset to that one.
    void settle_small();
    std::uint64_t final_offset(std::uint64_t region_offset) const;

    // Pad, flush and write the objectid files (temp names). Returns the region count.
    std::uint16_t finish(bool durable);
    // Rename regions and objectid files to their final names.
    void publish();
    // Remove every file this store created (abort).
    void discard() noexcept;

    std::uint16_t region_count() const { return static_cast<std::uint16_t>(regions_.size()); }
    const format::Guid& guid() const { return guid_; }
    std::uint64_t data_bytes_written() const { return data_bytes_; }

private:
    RegionFile& region(format::RegionType type);
    std::uint64_t lookup(const ObjectId& id, std::uint32_t alignment) const;
    void record(RegionFile& r, const ObjectId& id, std::uint64_t offset);
    void remember(const ObjectId& id, std::uint64_t region_offset);
    void hash_worker();
    void start_workers_locked();
    void hash_later(RegionFile& r, std::uint64_t offset, const void* data, std::size_t n);
    void queue_small_batch_locked();
    std::uint64_t prefix_fingerprint() const;

    struct Pending {
        RegionFile* region;
        std::uint64_t offset;
        std::uint64_t length;
        ObjectId id;
        std::uint64_t prefix = 0;  // fingerprint of the first kPrefixBytes
        bool hashed = false;
        std::uint64_t final_offset = 0;  // RegionOffset once resolved
    };

    std::string dir_;
    format::Guid guid_;
    std::uint16_t base_;
    format::Version version_;
    std::string image_;
    std::vector<std::unique_ptr<RegionFile>> regions_;
    std::unordered_map<ObjectId, std::uint64_t, ObjectIdHash> known_;
    std::unordered_map<std::string, std::uint64_t> recent_metadata_;  // small metadata objects by their bytes
    // A large object that may be a duplicate (its length is a parent object's,
    // or its length and first bytes are those of an object written here) is
    // hashed while it is written and, if it is one, taken back at once from the
    // region's tail: duplicates never leave holes to compact at commit.
    static constexpr std::size_t kPrefixBytes = 4096;
    enum class HashMode { as_written, undecided, background };
    std::unordered_map<std::uint64_t, std::vector<std::size_t>> pending_by_length_;
    std::unordered_set<std::uint64_t> known_lengths_;
    std::unordered_set<std::uint64_t> parent_small_lengths_;  // small objects of parents, by length

    // Small objects are not hashed as they are written (SHA-512 of every object
    // costs more than the rest of storing it). Duplicates are found exactly, by
    // comparing bytes with the earlier objects of the same content hash, and the
    // SHA-512 IDs for the objectid files are computed by the workers in batches.
    struct SmallBatch {
        struct Item {
            RegionFile* region;
            std::size_t entry;  // index in region->entries
            std::size_t at;     // where its bytes start in `bytes`
            std::size_t length;
        };
        std::string bytes;
        std::vector<Item> items;
        std::vector<ObjectId> ids;  // written by the worker
        bool queued = false;
    };
    std::deque<SmallBatch> small_batches_;  // stable addresses while workers read them
    std::size_t small_settled_ = 0;         // batches whose IDs are in the regions' entries
    std::unordered_multimap<std::uint64_t, std::pair<RegionFile*, std::uint64_t>> small_by_content_;
    std::unordered_map<std::uint64_t, std::uint64_t> redirect_;  // dropped copy -> earlier object
    HashMode cur_mode_ = HashMode::background;
    std::string cur_prefix_;
    std::vector<std::string> objectid_temp_, objectid_final_, published_;

    // the data object being streamed
    RegionFile* cur_ = nullptr;
    std::uint64_t cur_offset_ = 0, cur_length_ = 0, cur_written_ = 0;
    Sha512 cur_hash_;
    Sha512 meta_hash_;  // for put_metadata

    // deferred hashing of large objects
    std::deque<Pending> pending_;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    struct Job {
        SmallBatch* batch;  // a batch of small objects (its address is stable), or
        std::size_t index;  // a large object: index into pending_
    };
    std::deque<Job> queue_;
    std::size_t outstanding_ = 0;
    bool stop_ = false;
    std::exception_ptr worker_error_;
    std::vector<std::thread> workers_;
    std::uint64_t data_bytes_ = 0;
};

}  // namespace cimfs::detail
