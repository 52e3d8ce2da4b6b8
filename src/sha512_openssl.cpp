// SHA-512 through OpenSSL's EVP interface (POSIX builds).
#include <openssl/evp.h>

#include <new>

#include "cimfs/object_id.hpp"

namespace cimfs {

Sha512::Sha512() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_) throw std::bad_alloc();
    reset();
}

Sha512::~Sha512() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

namespace {
// The digest implementation, looked up once (OpenSSL 3 fetches it from its
// provider on every init otherwise).
const EVP_MD* sha512_md() {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    static const EVP_MD* md = [] {
        const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA512", nullptr);
        return fetched ? fetched : EVP_sha512();
    }();
    return md;
#else
    return EVP_sha512();
#endif
}
}  // namespace

void Sha512::reset() { EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), sha512_md(), nullptr); }

void Sha512::update(const void* data, std::size_t n) {
    EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n);
}

Digest Sha512::finish() {
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), full, &len);
    Digest d;
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = full[i];
    reset();
    return d;
}

}  // namespace cimfs
