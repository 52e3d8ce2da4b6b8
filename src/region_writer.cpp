#include "region_writer.hpp"

#include <algorithm>
#include <cstring>

#include "cimfs/error.hpp"

namespace cimfs::detail {

using namespace format;

namespace {
constexpr std::size_t kBufferSize = 1 << 20;      // gathered small appends
constexpr std::size_t kDirectWrite = 256 << 10;   // appends this large bypass the buffer
constexpr std::size_t kHashChunk = 1 << 20;

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

// ---- RegionFile -----------------------------------------------------------------

RegionFile::RegionFile(RegionType type, std::uint16_t index_in_set, std::uint16_t index_in_type,
                       std::string final_path, std::string temp_path, Version version)
    : type_(type), index_in_set_(index_in_set), index_in_type_(index_in_type),
      final_path_(std::move(final_path)), temp_path_(std::move(temp_path)) {
    file_ = platform::File::create_exclusive(temp_path_);
    unsigned char h[kRegionHeaderSize] = {};  // reserved fields are written as 0
    encode_common_header(h, kRegionHeaderSize, HeaderType::region, version);
    st16(h + 32, index_in_type_);
    h[34] = static_cast<unsigned char>(type_);
    buf_.reserve(kBufferSize);
    buf_start_ = 0;
    append(h, sizeof h);
}

std::uint32_t RegionFile::alignment() const {
    return type_ == RegionType::page_data ? kPageAlignment : kMetadataAlignment;
}

std::uint64_t RegionFile::align() {
    std::uint64_t target = round_up(end_, alignment());
    if (target != end_) {
        if (!buf_.empty() && target - end_ <= kBufferSize - buf_.size()) {
            buf_.resize(buf_.size() + static_cast<std::size_t>(target - end_), 0);
        } else {
            flush();
            buf_start_ = target;  // leaves a hole that reads as zeros
        }
        end_ = target;
    }
    return end_;
}

void RegionFile::append(const void* data, std::size_t n) {
    if (n == 0) return;
    if (buf_.size() + n > kBufferSize) flush();
    if (buf_.empty() && n >= kDirectWrite) {
        file_.pwrite_all(data, n, end_);
        end_ += n;
        buf_start_ = end_;
        write_behind();
        return;
    }
    if (buf_.empty()) buf_start_ = end_;
    const unsigned char* p = static_cast<const unsigned char*>(data);
    buf_.insert(buf_.end(), p, p + n);
    end_ += n;
}

void RegionFile::flush() {
    if (!buf_.empty()) {
        file_.pwrite_all(buf_.data(), buf_.size(), buf_start_);
        buf_.clear();
    }
    buf_start_ = end_;
    write_behind();
}

void RegionFile::write_behind() {
    // Written data goes to the disk in 8 MiB steps as the region grows, rather
    // than all at once when someone flushes the page cache after the commit.
    constexpr std::uint64_t kStep = 8 << 20;
    if (buf_start_ >= written_back_ + kStep) {
        std::uint64_t upto = buf_start_ / kStep * kStep;
        file_.start_writeback(written_back_, upto - written_back_);
        written_back_ = upto;
    }
}

void RegionFile::truncate_to(std::uint64_t pos) {
    if (pos >= buf_start_ && pos - buf_start_ <= buf_.size()) {
        buf_.resize(static_cast<std::size_t>(pos - buf_start_));
    } else {
        flush();
        file_.truncate(pos);
        buf_start_ = pos;
        written_back_ = std::min(written_back_, pos);
    }
    end_ = pos;
}

bool RegionFile::holds(std::uint64_t offset, const std::string& bytes) {
    std::uint64_t n = bytes.size();
    if (offset + n > end_) return false;
    std::size_t in_file = offset >= buf_start_ ? 0 : static_cast<std::size_t>(std::min(n, buf_start_ - offset));
    if (in_file) {
        std::string disk(in_file, '\0');
        file_.pread_exact(&disk[0], in_file, offset);
        if (std::memcmp(disk.data(), bytes.data(), in_file) != 0) return false;
    }
    if (in_file == n) return true;
    std::uint64_t at = offset + in_file - buf_start_;
    return std::memcmp(buf_.data() + at, bytes.data() + in_file, static_cast<std::size_t>(n - in_file)) == 0;
}

void RegionFile::finish(bool durable) {
    std::uint64_t len = round_up(end_, alignment());
    flush();
    file_.truncate(len);
    if (durable) file_.sync();
}

// ---- ObjectStore ------------------------------------------------------------------

ObjectStore::ObjectStore(std::string directory, Guid guid, std::uint16_t base_region_index,
                         Version version, std::string image_for_errors)
    : dir_(std::move(directory)), guid_(guid), base_(base_region_index), version_(version),
      image_(std::move(image_for_errors)) {
    // The metadata region is always the first of the set, as in Windows' images.
    region(RegionType::metadata);
}

ObjectStore::~ObjectStore() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ObjectStore::add_known(const ObjectId& id, std::uint64_t region_offset) {
    remember(id, region_offset);
    if (id.length < kSmallDataLimit) parent_small_lengths_.insert(id.length);
}

void ObjectStore::remember(const ObjectId& id, std::uint64_t region_offset) {
    known_.emplace(id, region_offset);
    if (id.length >= kSmallDataLimit) known_lengths_.insert(id.length);
}

RegionFile& ObjectStore::region(RegionType type) {
    for (auto& r : regions_)
        if (r->type() == type) return *r;
    std::uint16_t in_set = static_cast<std::uint16_t>(regions_.size());
    std::uint16_t in_type = 0;  // one region per type: Windows' split rule is not public
    std::string suffix = guid_.to_string() + "_" + std::to_string(in_set);
    std::string final_path = platform::join(dir_, "region_" + suffix);
    std::string temp_path = platform::join(dir_, platform::kTempPrefix + ("region_" + suffix));
    regions_.push_back(std::make_unique<RegionFile>(type, in_set, in_type, final_path, temp_path, version_));
    return *regions_.back();
}

std::uint64_t ObjectStore::lookup(const ObjectId& id, std::uint32_t alignment) const {
    auto it = known_.find(id);
    if (it == known_.end()) return 0;
    if (offset_of(it->second) % alignment != 0) return 0;
    return it->second;
}

void ObjectStore::record(RegionFile& r, const ObjectId& id, std::uint64_t offset) {
    r.entries.push_back({id, offset});
    remember(id, make_region_offset(static_cast<std::uint16_t>(base_ + r.index_in_set()), offset));
}

void ObjectStore::hash_later(RegionFile& r, std::uint64_t offset, const void* data, std::size_t n) {
    ObjectId placeholder;
    placeholder.length = n;
    r.entries.push_back({placeholder, offset});
    if (small_batches_.empty() || small_batches_.back().queued) small_batches_.emplace_back();
    SmallBatch& b = small_batches_.back();
    b.items.push_back({&r, r.entries.size() - 1, b.bytes.size(), n});
    b.bytes.append(static_cast<const char*>(data), n);
    if (b.bytes.size() >= (256u << 10)) {
        std::lock_guard<std::mutex> lock(mu_);
        queue_small_batch_locked();
    }
}

void ObjectStore::queue_small_batch_locked() {
    if (small_batches_.empty() || small_batches_.back().queued) return;
    small_batches_.back().queued = true;
    start_workers_locked();
    // The worker gets the batch's address, not its index: the deque's own
    // bookkeeping changes as the importing thread adds batches without the lock.
    queue_.push_back(Job{&small_batches_.back(), 0});
    ++outstanding_;
    cv_.notify_one();
}

void ObjectStore::settle_small() {
    {
        std::unique_lock<std::mutex> lock(mu_);
        queue_small_batch_locked();
        done_cv_.wait(lock, [this] { return outstanding_ == 0; });
        if (worker_error_) std::rethrow_exception(worker_error_);
    }
    // In write order, so that the result does not depend on thread timing.
    for (; small_settled_ < small_batches_.size(); ++small_settled_) {
        SmallBatch& b = small_batches_[small_settled_];
        for (std::size_t i = 0; i < b.items.size(); ++i) {
            const SmallBatch::Item& it = b.items[i];
            RegionFile::Entry& e = it.region->entries[it.entry];
            e.id = b.ids[i];
            std::uint64_t ro = make_region_offset(static_cast<std::uint16_t>(base_ + it.region->index_in_set()), e.offset);
            if (std::uint64_t earlier = lookup(e.id, kMetadataAlignment)) {
                redirect_.emplace(ro, earlier);
                e.dropped = true;
            } else {
                remember(e.id, ro);
            }
        }
    }
}

std::uint64_t ObjectStore::put_unique_metadata(const void* data, std::size_t n) {
    if (n <= kDigestSize) return put_metadata(data, n);  // its own ID: no hashing to save
    RegionFile& r = region(RegionType::metadata);
    std::uint64_t off = r.align();
    r.append(data, n);
    hash_later(r, off, data, n);
    return make_region_offset(static_cast<std::uint16_t>(base_ + r.index_in_set()), off);
}

std::uint64_t ObjectStore::put_metadata(const void* data, std::size_t n, bool shared) {
    // Files share a few security descriptors (and EA blobs): the same bytes again
    // are found without hashing them.
    constexpr std::size_t kRecentLimit = 1024, kRecentCount = 1 << 16;
    shared = shared && n <= kRecentLimit;
    std::string bytes;
    if (shared) {
        bytes.assign(static_cast<const char*>(data), n);
        auto it = recent_metadata_.find(bytes);
        if (it != recent_metadata_.end()) return it->second;
    }
    ObjectId id = object_id_of(data, n, meta_hash_);
    std::uint64_t ro = lookup(id, kMetadataAlignment);
    if (!ro) {
        RegionFile& r = region(RegionType::metadata);
        std::uint64_t off = r.align();
        r.append(data, n);
        record(r, id, off);
        ro = make_region_offset(static_cast<std::uint16_t>(base_ + r.index_in_set()), off);
    }
    if (shared && recent_metadata_.size() < kRecentCount) recent_metadata_.emplace(std::move(bytes), ro);
    return ro;
}

void ObjectStore::begin_data(std::uint64_t length) {
    cur_ = &region(length < kSmallDataLimit ? RegionType::small_data : RegionType::page_data);
    cur_offset_ = cur_->align();
    cur_length_ = length;
    cur_written_ = 0;
    cur_prefix_.clear();
    // Small data is always hashed as it arrives. Large data is hashed as it
    // arrives only when it may be a duplicate: an object of the same length is
    // in a parent (known only by digest), or one written here has the same
    // first bytes (decided once the prefix is in, see append_data).
    if (cur_->type() == RegionType::small_data)
        cur_mode_ = parent_small_lengths_.count(length) ? HashMode::as_written : HashMode::background;
    else if (known_lengths_.count(length))
        cur_mode_ = HashMode::as_written;
    else if (pending_by_length_.count(length))
        cur_mode_ = HashMode::undecided;
    else
        cur_mode_ = HashMode::background;
    if (cur_mode_ == HashMode::as_written) cur_hash_.reset();
}

std::uint64_t ObjectStore::prefix_fingerprint() const {
    return std::hash<std::string>{}(cur_prefix_);
}

void ObjectStore::append_data(const void* data, std::size_t n) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    std::size_t prefix_len = static_cast<std::size_t>(std::min<std::uint64_t>(cur_length_, kPrefixBytes));
    if (cur_prefix_.size() < prefix_len) {
        std::size_t c = std::min(n, prefix_len - cur_prefix_.size());
        cur_prefix_.append(reinterpret_cast<const char*>(p), c);
        if (cur_mode_ == HashMode::undecided && cur_prefix_.size() == prefix_len) {
            std::uint64_t fp = prefix_fingerprint();
            cur_mode_ = HashMode::background;
            for (std::size_t i : pending_by_length_[cur_length_])
                if (pending_[i].prefix == fp) cur_mode_ = HashMode::as_written;
            if (cur_mode_ == HashMode::as_written) {
                // Everything written so far is the prefix: hash it, then the rest.
                cur_hash_.reset();
                cur_hash_.update(cur_prefix_.data(), cur_prefix_.size() - c);
            }
        }
    }
    if (cur_mode_ == HashMode::as_written) cur_hash_.update(p, n);
    cur_->append(data, n);
    cur_written_ += n;
    data_bytes_ += n;
}

void ObjectStore::abort_data() {
    if (cur_) {
        data_bytes_ -= cur_written_;
        cur_->truncate_to(cur_offset_);
        cur_ = nullptr;
    }
}

DataRef ObjectStore::end_data() {
    RegionFile& r = *cur_;
    cur_ = nullptr;
    DataRef ref;
    auto take_back = [&] {  // the copy just written is the region's tail
        r.truncate_to(cur_offset_);
        data_bytes_ -= cur_length_;
    };
    if (r.type() == RegionType::small_data) {
        // cur_prefix_ holds the whole object (small data is shorter than kPrefixBytes).
        ref.region_offset = make_region_offset(static_cast<std::uint16_t>(base_ + r.index_in_set()), cur_offset_);
        if (cur_length_ > kDigestSize && cur_mode_ == HashMode::background) {
            std::uint64_t h = std::hash<std::string>{}(cur_prefix_);
            auto [first, last] = small_by_content_.equal_range(h);
            for (auto it = first; it != last; ++it) {
                auto [region, offset] = it->second;
                if (region->holds(offset, cur_prefix_)) {
                    take_back();
                    ref.region_offset = make_region_offset(static_cast<std::uint16_t>(base_ + region->index_in_set()), offset);
                    return ref;
                }
            }
            small_by_content_.emplace(h, std::make_pair(&r, cur_offset_));
            hash_later(r, cur_offset_, cur_prefix_.data(), cur_prefix_.size());
            return ref;
        }
        // Up to 24 bytes the object is its own ID; an object whose length a
        // parent's objects have is hashed as written (parents are known by ID only).
        ObjectId id;
        id.length = cur_length_;
        if (cur_length_ <= id.digest.size())
            std::memcpy(id.digest.data(), cur_prefix_.data(), static_cast<std::size_t>(cur_length_));
        else
            id.digest = cur_hash_.finish();
        if (std::uint64_t ro = lookup(id, kMetadataAlignment)) {
            take_back();
            ref.region_offset = ro;
        } else {
            record(r, id, cur_offset_);
        }
        return ref;
    }
    Pending p;
    p.region = &r;
    p.offset = cur_offset_;
    p.length = cur_length_;
    p.prefix = prefix_fingerprint();
    if (cur_mode_ == HashMode::as_written) {
        // Possibly a duplicate: compare with what is stored, and with the pending
        // objects of this length and prefix once their hashes are in.
        p.id.length = cur_length_;
        p.id.digest = cur_hash_.finish();
        p.hashed = true;
        if (std::uint64_t ro = lookup(p.id, kPageAlignment)) {
            take_back();
            ref.region_offset = ro;
            return ref;
        }
        auto same = pending_by_length_.find(cur_length_);
        if (same != pending_by_length_.end()) {
            std::unique_lock<std::mutex> lock(mu_);
            done_cv_.wait(lock, [&] {
                for (std::size_t i : same->second)
                    if (pending_[i].prefix == p.prefix && !pending_[i].hashed) return false;
                return true;
            });
            for (std::size_t i : same->second) {
                if (pending_[i].hashed && pending_[i].id == p.id) {
                    lock.unlock();
                    take_back();
                    ref.pending = static_cast<std::int64_t>(i);
                    return ref;
                }
            }
        }
    }
    // New data: stays where it was written. Unhashed data is hashed in the
    // background from the file (page cache) while the caller writes on; all of
    // it is deduplicated against earlier objects at commit, in write order.
    r.flush();
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(p);
    std::size_t idx = pending_.size() - 1;
    pending_by_length_[cur_length_].push_back(idx);
    ref.pending = static_cast<std::int64_t>(idx);
    if (!p.hashed) {
        start_workers_locked();
        queue_.push_back(Job{nullptr, idx});
        ++outstanding_;
        cv_.notify_one();
    }
    return ref;
}

void ObjectStore::start_workers_locked() {
    if (!workers_.empty()) return;
    unsigned n = std::max(1u, std::min(8u, platform::hardware_threads()));
    for (unsigned i = 0; i < n; ++i) workers_.emplace_back([this] { hash_worker(); });
}

void ObjectStore::hash_worker() {
    std::vector<unsigned char> buf(kHashChunk);
    Sha512 sha;
    for (;;) {
        std::size_t idx;
        platform::File* file;
        std::uint64_t offset, length;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
            if (stop_ && queue_.empty()) return;
            Job job = queue_.front();
            queue_.pop_front();
            if (job.batch) {
                SmallBatch& b = *job.batch;
                lock.unlock();
                b.ids.resize(b.items.size());
                for (std::size_t i = 0; i < b.items.size(); ++i) {
                    const SmallBatch::Item& it = b.items[i];
                    b.ids[i] = object_id_of(b.bytes.data() + it.at, it.length, sha);
                }
                std::string().swap(b.bytes);  // the region has them; keep memory flat
                lock.lock();
                --outstanding_;
                lock.unlock();
                done_cv_.notify_all();
                continue;
            }
            idx = job.index;
            file = &pending_[idx].region->file();
            offset = pending_[idx].offset;
            length = pending_[idx].length;
        }
        ObjectId id;
        id.length = length;
        std::exception_ptr err;
        try {
            sha.reset();
            std::uint64_t done = 0;
            while (done < length) {
                std::size_t c = static_cast<std::size_t>(std::min<std::uint64_t>(length - done, buf.size()));
                file->pread_exact(buf.data(), c, offset + done);
                sha.update(buf.data(), c);
                done += c;
            }
            id.digest = sha.finish();
        } catch (...) {
            err = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lock(mu_);
            pending_[idx].id = id;
            pending_[idx].hashed = true;
            if (err && !worker_error_) worker_error_ = err;
            --outstanding_;
        }
        done_cv_.notify_all();
    }
}

void ObjectStore::resolve_pending() {
    settle_small();
    // Record the large objects in write order, so the result does not depend on
    // thread timing. None of them can duplicate an earlier object: one that
    // might (same length and first 4 KiB, or a parent object's length) was
    // compared when it was written and taken back if it was a duplicate
    // (end_data). Should one match anyway, it is pointed at the earlier copy
    // and its own bytes stay behind unreferenced: space lost, image still valid.
    for (Pending& p : pending_) {
        if (std::uint64_t ro = lookup(p.id, kPageAlignment)) {
            p.final_offset = ro;
            data_bytes_ -= p.length;
        } else {
            record(*p.region, p.id, p.offset);
            p.final_offset = make_region_offset(static_cast<std::uint16_t>(base_ + p.region->index_in_set()), p.offset);
        }
    }
}

std::uint64_t ObjectStore::final_offset(std::uint64_t region_offset) const {
    auto it = redirect_.find(region_offset);
    return it == redirect_.end() ? region_offset : it->second;
}

std::uint64_t ObjectStore::resolved(const DataRef& ref) const {
    if (ref.pending < 0) return final_offset(ref.region_offset);
    return pending_.at(static_cast<std::size_t>(ref.pending)).final_offset;
}

std::uint16_t ObjectStore::finish(bool durable) {
    settle_small();
    for (auto& rp : regions_) {
        RegionFile& r = *rp;
        r.finish(durable);
        r.entries.erase(std::remove_if(r.entries.begin(), r.entries.end(),
                                       [](const RegionFile::Entry& e) { return e.dropped; }),
                        r.entries.end());
        std::sort(r.entries.begin(), r.entries.end(),
                  [](const RegionFile::Entry& a, const RegionFile::Entry& b) { return a.id < b.id; });
        std::string suffix = guid_.to_string() + "_" + std::to_string(r.index_in_set());
        std::string final_path = platform::join(dir_, "objectid_" + suffix);
        std::string temp_path = platform::join(dir_, platform::kTempPrefix + ("objectid_" + suffix));
        std::vector<unsigned char> out(kObjectIdHeaderSize + r.entries.size() * kObjectIdEntrySize);
        unsigned char* h = out.data();
        encode_common_header(h, kObjectIdHeaderSize, HeaderType::object_id, version_);
        st16(h + 32, r.index_in_set());
        h[34] = static_cast<unsigned char>(r.type());
        st32(h + 40, kObjectIdHeaderSize);
        st32(h + 44, static_cast<std::uint32_t>(r.entries.size()));
        unsigned char* p = h + kObjectIdHeaderSize;
        for (const auto& e : r.entries) {
            st64(p, e.id.length);
            std::memcpy(p + 8, e.id.digest.data(), kDigestSize);
            st64(p + 32, e.offset);
            p += kObjectIdEntrySize;
        }
        objectid_temp_.push_back(temp_path);
        objectid_final_.push_back(final_path);
        platform::File f = platform::File::create_exclusive(temp_path);
        f.pwrite_all(out.data(), out.size(), 0);
        if (durable) f.sync();
        f.close();
    }
    return region_count();
}

void ObjectStore::publish() {
    for (auto& r : regions_) {
        r->file().close();
        platform::rename_replace(r->temp_path(), r->final_path());
        published_.push_back(r->final_path());
    }
    for (std::size_t i = 0; i < objectid_temp_.size(); ++i) {
        platform::rename_replace(objectid_temp_[i], objectid_final_[i]);
        published_.push_back(objectid_final_[i]);
    }
    objectid_temp_.clear();
}

void ObjectStore::discard() noexcept {
    {
        std::unique_lock<std::mutex> lock(mu_);
        outstanding_ -= queue_.size();
        queue_.clear();
        done_cv_.wait(lock, [this] { return outstanding_ == 0; });
    }
    for (auto& r : regions_) {
        try { r->file().close(); } catch (...) {}
        platform::remove_file(r->temp_path());
    }
    for (auto& p : objectid_temp_) platform::remove_file(p);
    objectid_temp_.clear();
    // Files already renamed by a commit that then failed: no header names them.
    for (auto& p : published_) platform::remove_file(p);
    published_.clear();
}

}  // namespace cimfs::detail

