// A stand-in cimfs.dll for testing the native backend's plumbing where the real
// one does not exist (Wine). It exports the cimfs.h functions the backend calls
// and implements the writing ones with the portable writer, so an image "written
// by cimfs.dll" can be read back and checked. Mount functions only check their
// arguments and remember the volume GUID.
//
// Built only for Windows with CIMFS_BUILD_TOOLS=ON. Never install it: the test
// script copies it into a throwaway Wine prefix's System32.
#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "cimfs/error.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/writer.hpp"

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#define CIMFS_API_NO_SDK_HEADER 1  // this file defines the cimfs.h functions itself
#include "../src/native/cimfs_api.h"

using cimfs::native::api::FileMetadata;
using cimfs::native::api::ImagePath;

namespace {

struct MockImage {
    std::unique_ptr<cimfs::ImageWriter> writer;
};
struct MockStream {
    MockImage* image;
    bool directory;
};

std::set<std::string> g_volumes;  // mounted volume GUIDs (raw bytes)

std::u16string u16(PCWSTR s) {
    std::u16string out;
    if (s)
        for (; *s; ++s) out += static_cast<char16_t>(*s);
    return out;
}
std::string u8(PCWSTR s) { return cimfs::to_utf8(u16(s)); }

HRESULT hr_of(const cimfs::Error& e) {
    switch (e.code) {
    case cimfs::Errc::not_found: return HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND);
    case cimfs::Errc::exists: return HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS);
    case cimfs::Errc::invalid_argument: return E_INVALIDARG;
    case cimfs::Errc::name_too_long: return HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE);
    case cimfs::Errc::not_a_directory: return HRESULT_FROM_WIN32(ERROR_DIRECTORY);
    default: return E_FAIL;
    }
}

template <class F>
HRESULT guarded(F f) {
    try {
        f();
        return S_OK;
    } catch (const cimfs::Error& e) {
        return hr_of(e);
    } catch (...) {
        return E_FAIL;
    }
}

}  // namespace

#define MOCK_EXPORT extern "C" __declspec(dllexport)

MOCK_EXPORT HRESULT WINAPI CimCreateImage(PCWSTR dir, PCWSTR existing, PCWSTR name, MockImage** out) {
    if (!dir || !out || (!existing && !name)) return E_INVALIDARG;
    return guarded([&] {
        cimfs::CreateOptions o;
        o.directory = u8(dir);
        o.name = name ? u8(name) : u8(existing);
        if (existing && name && u16(existing) != u16(name)) o.parent = u8(existing);
        auto img = std::make_unique<MockImage>();
        img->writer = cimfs::create_portable_writer(o);
        *out = img.release();
    });
}

MOCK_EXPORT HRESULT WINAPI CimCreateImage2(PCWSTR dir, UINT32 flags, PCWSTR existing, PCWSTR name,
                                           MockImage** out) {
    if (flags != 0) return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    return CimCreateImage(dir, existing, name, out);
}

MOCK_EXPORT void WINAPI CimCloseImage(MockImage* image) {
    if (!image) return;
    try {
        image->writer->close();
    } catch (...) {
    }
    delete image;
}

MOCK_EXPORT HRESULT WINAPI CimCommitImage(MockImage* image) {
    if (!image) return E_INVALIDARG;
    return guarded([&] { image->writer->commit(); });
}

MOCK_EXPORT HRESULT WINAPI CimCreateFile(MockImage* image, PCWSTR path, const FileMetadata* m,
                                         MockStream** stream) {
    if (!image || !path || !m || !stream) return E_INVALIDARG;
    // The backend always passes a descriptor (hcsshim's NULL DACL when none).
    if (!m->SecurityDescriptorBuffer || m->SecurityDescriptorSize < 20) return E_INVALIDARG;
    return guarded([&] {
        cimfs::FileMetadata meta;
        meta.attributes = m->Attributes;
        meta.size = static_cast<std::uint64_t>(m->FileSize);
        meta.times.creation = static_cast<std::uint64_t>(m->CreationTime.QuadPart);
        meta.times.last_write = static_cast<std::uint64_t>(m->LastWriteTime.QuadPart);
        meta.times.change = static_cast<std::uint64_t>(m->ChangeTime.QuadPart);
        meta.times.last_access = static_cast<std::uint64_t>(m->LastAccessTime.QuadPart);
        meta.security_descriptor = cimfs::Bytes(static_cast<const char*>(m->SecurityDescriptorBuffer),
                                                m->SecurityDescriptorSize);
        if (m->ReparseDataBuffer)
            meta.reparse_data.assign(static_cast<const char*>(m->ReparseDataBuffer), m->ReparseDataSize);
        if (m->EaBuffer)
            meta.extended_attributes.assign(static_cast<const char*>(m->EaBuffer), m->EaBufferSize);
        image->writer->add_file(u16(path), meta);
        *stream = new MockStream{image, (m->Attributes & FILE_ATTRIBUTE_DIRECTORY) != 0};
    });
}

MOCK_EXPORT HRESULT WINAPI CimWriteStream(MockStream* stream, const void* buffer, UINT32 size) {
    if (!stream || stream->directory) return E_INVALIDARG;
    return guarded([&] { stream->image->writer->write(buffer, size); });
}

MOCK_EXPORT void WINAPI CimCloseStream(MockStream* stream) {
    // Like cimfs.dll, closing does not check that the declared size was written
    // (the backend does); the portable writer checks at its next operation.
    delete stream;
}

MOCK_EXPORT HRESULT WINAPI CimCreateAlternateStream(MockImage* image, PCWSTR path, UINT64 size,
                                                    MockStream** stream) {
    if (!image || !path || !stream) return E_INVALIDARG;
    return guarded([&] {
        image->writer->add_alternate_stream(u16(path), size);
        *stream = new MockStream{image, false};
    });
}

MOCK_EXPORT HRESULT WINAPI CimCreateHardLink(MockImage* image, PCWSTR new_path, PCWSTR existing) {
    if (!image || !new_path || !existing) return E_INVALIDARG;
    return guarded([&] { image->writer->add_hard_link(u16(existing), u16(new_path)); });
}

MOCK_EXPORT HRESULT WINAPI CimDeletePath(MockImage* image, PCWSTR path) {
    if (!image || !path) return E_INVALIDARG;
    return guarded([&] { image->writer->remove(u16(path)); });
}

MOCK_EXPORT HRESULT WINAPI CimMountImage(PCWSTR dir, PCWSTR name, UINT32 flags, const GUID* volume) {
    if (!dir || !name || !volume || !*dir || !*name) return E_INVALIDARG;
    if (flags != 0) return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    std::string path = u8(dir) + "\\" + u8(name);
    if (GetFileAttributesW((std::wstring(dir) + L"\\" + name).c_str()) == INVALID_FILE_ATTRIBUTES)
        return HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND);
    g_volumes.insert(std::string(reinterpret_cast<const char*>(volume), sizeof(GUID)));
    return S_OK;
}

MOCK_EXPORT HRESULT WINAPI CimDismountImage(const GUID* volume) {
    if (!volume) return E_INVALIDARG;
    if (!g_volumes.erase(std::string(reinterpret_cast<const char*>(volume), sizeof(GUID))))
        return HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
    return S_OK;
}
