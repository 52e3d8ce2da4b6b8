#include "cimfs/object_id.hpp"

#include <cstring>

namespace cimfs {

std::size_t ObjectIdHash::operator()(const ObjectId& id) const noexcept {
    std::uint64_t h;
    std::memcpy(&h, id.digest.data(), sizeof h);
    return static_cast<std::size_t>(h ^ (id.length * 0x9E3779B97F4A7C15ull));
}

ObjectId object_id_of(const void* data, std::size_t n, Sha512& hasher) {
    ObjectId id;
    id.length = n;
    if (n <= id.digest.size()) {
        std::memcpy(id.digest.data(), data, n);
    } else {
        hasher.reset();
        hasher.update(data, n);
        id.digest = hasher.finish();
    }
    return id;
}

ObjectId object_id_of(const void* data, std::size_t n) {
    Sha512 h;
    return object_id_of(data, n, h);
}

}  // namespace cimfs
