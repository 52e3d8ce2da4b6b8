// SHA-512 through Windows CNG (bcrypt.dll) for Windows builds, where OpenSSL is
// not available. Same contract as sha512_openssl.cpp: finish() returns the first
// 24 bytes of the digest and leaves the object ready for the next message.
//
// One algorithm provider is opened per process (opening one is expensive; a
// provider handle may be shared by threads). Each Sha512 owns a hash object
// created with BCRYPT_HASH_REUSABLE_FLAG, so BCryptFinishHash also resets it;
// where that flag is refused (Windows 7) the hash object is recreated instead.
#include "windows_h.hpp"
#include <bcrypt.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "cimfs/error.hpp"
#include "cimfs/object_id.hpp"

#ifndef BCRYPT_HASH_REUSABLE_FLAG
#define BCRYPT_HASH_REUSABLE_FLAG 0x00000020
#endif

namespace cimfs {

namespace {

[[noreturn]] void fail(const char* call, NTSTATUS st) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s failed: NTSTATUS 0x%08lx", call, static_cast<unsigned long>(st));
    throw Error(Errc::io, ErrorSubject::op, "hash", "SHA-512", "", "", buf, 0,
                static_cast<std::uint32_t>(st));
}

struct Provider {
    BCRYPT_ALG_HANDLE alg = nullptr;
    NTSTATUS status = 0;
    Provider() { status = ::BCryptOpenAlgorithmProvider(&alg, BCRYPT_SHA512_ALGORITHM, nullptr, 0); }
    ~Provider() {
        if (alg) ::BCryptCloseAlgorithmProvider(alg, 0);
    }
};

BCRYPT_ALG_HANDLE provider() {
    static Provider p;  // thread-safe initialisation (C++11 magic statics)
    if (p.status < 0 || !p.alg) fail("BCryptOpenAlgorithmProvider(SHA512)", p.status);
    return p.alg;
}

struct State {
    BCRYPT_HASH_HANDLE hash = nullptr;
    bool reusable = false;
    bool dirty = false;  // data hashed since the last reset

    void create() {
        BCRYPT_ALG_HANDLE alg = provider();
        NTSTATUS st = ::BCryptCreateHash(alg, &hash, nullptr, 0, nullptr, 0, BCRYPT_HASH_REUSABLE_FLAG);
        if (st >= 0) {
            reusable = true;
        } else {
            // Windows 7 does not know the flag; let CNG allocate the object itself.
            st = ::BCryptCreateHash(alg, &hash, nullptr, 0, nullptr, 0, 0);
            if (st < 0) fail("BCryptCreateHash", st);
            reusable = false;
        }
        dirty = false;
    }
    void destroy() {
        if (hash) ::BCryptDestroyHash(hash);
        hash = nullptr;
    }
};

State* state(void* p) { return static_cast<State*>(p); }

}  // namespace

Sha512::Sha512() : ctx_(new State) {
    try {
        state(ctx_)->create();
    } catch (...) {
        delete state(ctx_);
        throw;
    }
}

Sha512::~Sha512() {
    state(ctx_)->destroy();
    delete state(ctx_);
}

void Sha512::reset() {
    State* s = state(ctx_);
    if (!s->dirty && s->hash) return;
    s->destroy();
    s->create();
}

void Sha512::update(const void* data, std::size_t n) {
    State* s = state(ctx_);
    const unsigned char* p = static_cast<const unsigned char*>(data);
    while (n > 0) {
        ULONG chunk = static_cast<ULONG>(n > (std::size_t(1) << 30) ? (std::size_t(1) << 30) : n);
        // BCryptHashData takes a non-const pointer but does not write through it.
        NTSTATUS st = ::BCryptHashData(s->hash, const_cast<PUCHAR>(p), chunk, 0);
        if (st < 0) fail("BCryptHashData", st);
        s->dirty = true;
        p += chunk;
        n -= chunk;
    }
}

Digest Sha512::finish() {
    State* s = state(ctx_);
    unsigned char full[64];
    NTSTATUS st = ::BCryptFinishHash(s->hash, full, sizeof full, 0);
    if (st < 0) fail("BCryptFinishHash", st);
    if (s->reusable) {
        s->dirty = false;  // a reusable hash object starts over after finishing
    } else {
        s->destroy();
        s->create();
    }
    Digest d;
    std::memcpy(d.data(), full, d.size());
    return d;
}

}  // namespace cimfs
