// The parts of cimfs.h (Windows SDK) the native backend uses, declared here so
// that the backend builds with toolchains whose headers lack cimfs.h (mingw-w64)
// or predate its newer functions. When the SDK header is available its types
// are checked against these declarations at compile time.
//
// cimfs.dll is linked through an import library made from cimfs.def (in this
// directory) and delay-loaded; the functions are declared below (CIMFS_API_IMPORTS)
// rather than taken from the SDK's cimfs.h, because that header may predate the
// newer functions and types its flags as enums. cimwriter.dll, which is optional,
// is still resolved with GetProcAddress into the table types below. See
// native_win32.cpp.
#pragma once

#ifndef _WIN32
#error "cimfs_api.h is for Windows builds only"
#endif

#include "../windows_h.hpp"

#include <cstddef>
#include <type_traits>

// CIMFS_API_NO_SDK_HEADER: for code that declares (CIMFS_API_IMPORTS, the native
// backend) or defines (tools/mock_cimfs_dll.cpp) the cimfs.h functions itself.
// Without it the SDK header, when there is one, checks the structure layouts
// (src/native/cimfs_sdk_check.cpp).
#if defined(__has_include) && !defined(CIMFS_API_NO_SDK_HEADER)
#if __has_include(<cimfs.h>)
#include <cimfs.h>
#define CIMFS_HAVE_SDK_HEADER 1
#endif
#endif

namespace cimfs::native::api {

typedef struct CimImage* ImageHandle;    // CIMFS_IMAGE_HANDLE
typedef struct CimStream* StreamHandle;  // CIMFS_STREAM_HANDLE

// CIMFS_FILE_METADATA (natural C alignment, as in cimfs.h).
struct FileMetadata {
    UINT32 Attributes;
    INT64 FileSize;
    LARGE_INTEGER CreationTime;
    LARGE_INTEGER LastWriteTime;
    LARGE_INTEGER ChangeTime;
    LARGE_INTEGER LastAccessTime;
    const void* SecurityDescriptorBuffer;
    UINT32 SecurityDescriptorSize;
    const void* ReparseDataBuffer;
    UINT32 ReparseDataSize;
    const void* EaBuffer;  // FILE_FULL_EA_INFORMATION chain
    UINT32 EaBufferSize;   // bytes (hcsshim calls this field EACount)
};

// CIMFS_IMAGE_PATH
struct ImagePath {
    PCWSTR ImageDir;
    PCWSTR ImageName;
};

#if defined(_WIN64)
static_assert(sizeof(FileMetadata) == 96, "CIMFS_FILE_METADATA layout");
static_assert(offsetof(FileMetadata, SecurityDescriptorBuffer) == 48, "CIMFS_FILE_METADATA layout");
static_assert(offsetof(FileMetadata, EaBufferSize) == 88, "CIMFS_FILE_METADATA layout");
#endif

#if defined(CIMFS_HAVE_SDK_HEADER) && WINAPI_FAMILY_PARTITION(WINAPI_PARTITION_DESKTOP)
static_assert(sizeof(FileMetadata) == sizeof(CIMFS_FILE_METADATA), "CIMFS_FILE_METADATA size");
static_assert(offsetof(FileMetadata, FileSize) == offsetof(CIMFS_FILE_METADATA, FileSize), "FileSize");
static_assert(offsetof(FileMetadata, SecurityDescriptorBuffer) ==
                  offsetof(CIMFS_FILE_METADATA, SecurityDescriptorBuffer), "SecurityDescriptorBuffer");
static_assert(offsetof(FileMetadata, ReparseDataBuffer) == offsetof(CIMFS_FILE_METADATA, ReparseDataBuffer),
              "ReparseDataBuffer");
static_assert(offsetof(FileMetadata, EaBuffer) == offsetof(CIMFS_FILE_METADATA, EaBuffer), "EaBuffer");
static_assert(offsetof(FileMetadata, EaBufferSize) == offsetof(CIMFS_FILE_METADATA, EaBufferSize),
              "EaBufferSize");
#endif

// Function types (all __stdcall, which is the only convention on x64/ARM64).
using CimCreateImage_t = HRESULT(WINAPI*)(PCWSTR dir, PCWSTR existingName, PCWSTR newName,
                                          ImageHandle* image);
using CimCreateImage2_t = HRESULT(WINAPI*)(PCWSTR dir, UINT32 flags, PCWSTR existingName,
                                           PCWSTR newName, ImageHandle* image);
using CimCloseImage_t = void(WINAPI*)(ImageHandle image);
using CimCommitImage_t = HRESULT(WINAPI*)(ImageHandle image);
using CimCreateFile_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR path, const FileMetadata* meta,
                                         StreamHandle* stream);
// cimfs.h: STDAPI_(void) CimCloseStream / CimCloseImage (hcsshim reads an HRESULT
// from CimCloseStream; the SDK header says there is none, so none is read).
using CimCloseStream_t = void(WINAPI*)(StreamHandle stream);
using CimWriteStream_t = HRESULT(WINAPI*)(StreamHandle stream, const void* buffer, UINT32 size);
using CimDeletePath_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR path);
using CimCreateHardLink_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR newPath, PCWSTR existingPath);
using CimCreateAlternateStream_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR path, UINT64 size,
                                                    StreamHandle* stream);
using CimAddFsToMergedImage_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR sourcePath);
using CimAddFsToMergedImage2_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR sourcePath, UINT32 flags);
using CimTombstoneFile_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR path);
using CimCreateMergeLink_t = HRESULT(WINAPI*)(ImageHandle image, PCWSTR newPath, PCWSTR existingPath);
using CimSealImage_t = HRESULT(WINAPI*)(PCWSTR blockPath, UINT64* hashSize, UINT64* fixedHeaderSize,
                                        BYTE* hash);
using CimGetVerificationInformation_t = HRESULT(WINAPI*)(PCWSTR blockPath, UINT32* isSealed,
                                                         UINT64* hashSize, UINT64* signatureSize,
                                                         UINT64* fixedHeaderSize, BYTE* hash,
                                                         BYTE* signature);
using CimMountImage_t = HRESULT(WINAPI*)(PCWSTR dir, PCWSTR name, UINT32 flags, const GUID* volume);
using CimMergeMountImage_t = HRESULT(WINAPI*)(UINT32 count, const ImagePath* paths, UINT32 flags,
                                              const GUID* volume);
using CimMountVerifiedImage_t = HRESULT(WINAPI*)(PCWSTR dir, PCWSTR name, UINT32 flags,
                                                 const GUID* volume, UINT16 hashSize, const BYTE* hash);
using CimMergeMountVerifiedImage_t = HRESULT(WINAPI*)(UINT32 count, const ImagePath* paths,
                                                      UINT32 flags, const GUID* volume,
                                                      UINT16 hashSize, const BYTE* hash);
using CimDismountImage_t = HRESULT(WINAPI*)(const GUID* volume);

// Functions that write images, taken from one DLL as a set: handles made by
// cimwriter.dll must not be passed to cimfs.dll and vice versa. For cimwriter.dll
// the entries come from GetProcAddress; for cimfs.dll they are the delay-loaded
// imports declared below (null where this system's cimfs.dll lacks the export).
struct WriterTable {
    HMODULE module = nullptr;
    const char* dll = "";
    CimCreateImage_t CimCreateImage = nullptr;
    CimCreateImage2_t CimCreateImage2 = nullptr;
    CimCloseImage_t CimCloseImage = nullptr;
    CimCommitImage_t CimCommitImage = nullptr;
    CimCreateFile_t CimCreateFile = nullptr;
    CimCloseStream_t CimCloseStream = nullptr;
    CimWriteStream_t CimWriteStream = nullptr;
    CimDeletePath_t CimDeletePath = nullptr;
    CimCreateHardLink_t CimCreateHardLink = nullptr;
    CimCreateAlternateStream_t CimCreateAlternateStream = nullptr;
    CimAddFsToMergedImage_t CimAddFsToMergedImage = nullptr;
    CimAddFsToMergedImage2_t CimAddFsToMergedImage2 = nullptr;
    CimTombstoneFile_t CimTombstoneFile = nullptr;
    CimCreateMergeLink_t CimCreateMergeLink = nullptr;
    CimSealImage_t CimSealImage = nullptr;
    CimGetVerificationInformation_t CimGetVerificationInformation = nullptr;
    // The minimum for writing a plain image.
    bool usable() const {
        return CimCreateImage && CimCloseImage && CimCommitImage && CimCreateFile &&
               CimCloseStream && CimWriteStream;
    }
};

}  // namespace cimfs::native::api

// ---- the cimfs.dll imports ---------------------------------------------------------------
// Declared for the code that calls cimfs.dll through its (delay-loaded) import library,
// with this header's types; the names are those of cimfs.def. Never call one before
// checking that cimfs.dll is loaded and exports it (native_win32.cpp does): a missing
// DLL or function is an SEH exception from the delay-load helper, not an error code.
#if defined(CIMFS_API_IMPORTS)
#if defined(CIMFS_HAVE_SDK_HEADER)
#error "CIMFS_API_IMPORTS needs CIMFS_API_NO_SDK_HEADER (the SDK's cimfs.h declares these with its own types)"
#endif
#define CIMFS_IMPORT extern "C" __declspec(dllimport)
namespace cimfs_api_types = cimfs::native::api;
CIMFS_IMPORT HRESULT WINAPI CimCreateImage(PCWSTR dir, PCWSTR existingName, PCWSTR newName,
                                           cimfs_api_types::ImageHandle* image);
CIMFS_IMPORT HRESULT WINAPI CimCreateImage2(PCWSTR dir, UINT32 flags, PCWSTR existingName, PCWSTR newName,
                                            cimfs_api_types::ImageHandle* image);
CIMFS_IMPORT void WINAPI CimCloseImage(cimfs_api_types::ImageHandle image);
CIMFS_IMPORT HRESULT WINAPI CimCommitImage(cimfs_api_types::ImageHandle image);
CIMFS_IMPORT HRESULT WINAPI CimCreateFile(cimfs_api_types::ImageHandle image, PCWSTR path,
                                          const cimfs_api_types::FileMetadata* meta,
                                          cimfs_api_types::StreamHandle* stream);
CIMFS_IMPORT void WINAPI CimCloseStream(cimfs_api_types::StreamHandle stream);
CIMFS_IMPORT HRESULT WINAPI CimWriteStream(cimfs_api_types::StreamHandle stream, const void* buffer, UINT32 size);
CIMFS_IMPORT HRESULT WINAPI CimDeletePath(cimfs_api_types::ImageHandle image, PCWSTR path);
CIMFS_IMPORT HRESULT WINAPI CimCreateHardLink(cimfs_api_types::ImageHandle image, PCWSTR newPath,
                                              PCWSTR existingPath);
CIMFS_IMPORT HRESULT WINAPI CimCreateAlternateStream(cimfs_api_types::ImageHandle image, PCWSTR path,
                                                     UINT64 size, cimfs_api_types::StreamHandle* stream);
CIMFS_IMPORT HRESULT WINAPI CimAddFsToMergedImage(cimfs_api_types::ImageHandle image, PCWSTR sourcePath);
CIMFS_IMPORT HRESULT WINAPI CimAddFsToMergedImage2(cimfs_api_types::ImageHandle image, PCWSTR sourcePath,
                                                   UINT32 flags);
CIMFS_IMPORT HRESULT WINAPI CimTombstoneFile(cimfs_api_types::ImageHandle image, PCWSTR path);
CIMFS_IMPORT HRESULT WINAPI CimCreateMergeLink(cimfs_api_types::ImageHandle image, PCWSTR newPath,
                                               PCWSTR existingPath);
CIMFS_IMPORT HRESULT WINAPI CimSealImage(PCWSTR blockPath, UINT64* hashSize, UINT64* fixedHeaderSize, BYTE* hash);
CIMFS_IMPORT HRESULT WINAPI CimGetVerificationInformation(PCWSTR blockPath, UINT32* isSealed, UINT64* hashSize,
                                                          UINT64* signatureSize, UINT64* fixedHeaderSize,
                                                          BYTE* hash, BYTE* signature);
CIMFS_IMPORT HRESULT WINAPI CimMountImage(PCWSTR dir, PCWSTR name, UINT32 flags, const GUID* volume);
CIMFS_IMPORT HRESULT WINAPI CimMergeMountImage(UINT32 count, const cimfs_api_types::ImagePath* paths,
                                               UINT32 flags, const GUID* volume);
CIMFS_IMPORT HRESULT WINAPI CimMountVerifiedImage(PCWSTR dir, PCWSTR name, UINT32 flags, const GUID* volume,
                                                  UINT16 hashSize, const BYTE* hash);
CIMFS_IMPORT HRESULT WINAPI CimMergeMountVerifiedImage(UINT32 count, const cimfs_api_types::ImagePath* paths,
                                                       UINT32 flags, const GUID* volume, UINT16 hashSize,
                                                       const BYTE* hash);
CIMFS_IMPORT HRESULT WINAPI CimDismountImage(const GUID* volume);
#undef CIMFS_IMPORT

// The imports and the GetProcAddress types (used for cimwriter.dll) must agree:
// both kinds of function end up in one api::WriterTable.
#define CIMFS_API_SAME(f) static_assert(std::is_same<decltype(&::f), cimfs_api_types::f##_t>::value, #f)
CIMFS_API_SAME(CimCreateImage);
CIMFS_API_SAME(CimCreateImage2);
CIMFS_API_SAME(CimCloseImage);
CIMFS_API_SAME(CimCommitImage);
CIMFS_API_SAME(CimCreateFile);
CIMFS_API_SAME(CimCloseStream);
CIMFS_API_SAME(CimWriteStream);
CIMFS_API_SAME(CimDeletePath);
CIMFS_API_SAME(CimCreateHardLink);
CIMFS_API_SAME(CimCreateAlternateStream);
CIMFS_API_SAME(CimAddFsToMergedImage);
CIMFS_API_SAME(CimAddFsToMergedImage2);
CIMFS_API_SAME(CimTombstoneFile);
CIMFS_API_SAME(CimCreateMergeLink);
CIMFS_API_SAME(CimSealImage);
CIMFS_API_SAME(CimGetVerificationInformation);
CIMFS_API_SAME(CimMountImage);
CIMFS_API_SAME(CimMergeMountImage);
CIMFS_API_SAME(CimMountVerifiedImage);
CIMFS_API_SAME(CimMergeMountVerifiedImage);
CIMFS_API_SAME(CimDismountImage);
#undef CIMFS_API_SAME
#endif  // CIMFS_API_IMPORTS
