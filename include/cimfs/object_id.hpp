// Object IDs: how CimFS names an object for deduplication. An object of at most
// 24 bytes is its own digest (zero-padded); a longer one is named by the first
// 24 bytes of its SHA-512 (computed with OpenSSL).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace cimfs {

using Digest = std::array<unsigned char, 24>;

struct ObjectId {
    std::uint64_t length = 0;
    Digest digest{};
    bool operator==(const ObjectId& o) const { return length == o.length && digest == o.digest; }
    bool operator<(const ObjectId& o) const {
        return length != o.length ? length < o.length : digest < o.digest;
    }
};

struct ObjectIdHash {
    std::size_t operator()(const ObjectId& id) const noexcept;
};

// Incremental SHA-512 (OpenSSL EVP); the digest is truncated to 24 bytes.
class Sha512 {
public:
    Sha512();
    ~Sha512();
    Sha512(const Sha512&) = delete;
    Sha512& operator=(const Sha512&) = delete;
    void reset();
    void update(const void* data, std::size_t n);
    Digest finish();

private:
    void* ctx_;
};

ObjectId object_id_of(const void* data, std::size_t n);
// The same with a caller's hasher (reset first), for callers that name many objects.
ObjectId object_id_of(const void* data, std::size_t n, Sha512& hasher);

}  // namespace cimfs
