// The native backend on Windows: images written and mounted by cimfs.dll.
//
// Linking. cimfs.dll is linked through an import library made from cimfs.def
// and is delay-loaded (MSVC: /DELAYLOAD:cimfs.dll + delayimp.lib; mingw-w64: a
// delay-import library from `dlltool -y` + __delayLoadHelper2 from libmingwex; see
// CMakeLists.txt), so the module loads on Windows versions without cimfs.dll and
// cimfs.dll is only mapped when first needed. The functions are called through
// their imports (declared in cimfs_api.h), but never blindly: a delay-loaded
// call into a missing DLL or export raises an SEH exception. So the first use
// probes once (cached) with LoadLibraryExW(L"cimfs.dll", LOAD_LIBRARY_SEARCH_SYSTEM32)
// and checks each export with GetProcAddress on that handle; a missing DLL or
// export becomes Error(Errc::unsupported) before any call, never a load-time
// failure of the Python module. The probe also pins System32's cimfs.dll: the
// delay-load helper loads "cimfs.dll" by name, which resolves to the module that
// is already loaded.
//
// cimwriter.dll is optional by nature and stays resolved at run time
// (LoadLibraryExW from System32 + GetProcAddress). As hcsshim does, when it is
// present the writing functions come from it instead of cimfs.dll. They are taken
// from one DLL as a set (api::WriterTable), because image and stream handles made
// by one DLL mean nothing to the other; for cimfs.dll the table holds the imports.
// Mounting always goes through cimfs.dll.
//
// Version policy (capabilities()) follows hcsshim's pkg/cimfs: CimFS is trusted
// from Windows Server 2022 (build 20348) revision 2031 on and on builds >= 26100;
// block/single-file and merged CIMs from build 27766; verified CIMs from 27800.
// Writing block or verified CIMs is also allowed whenever cimwriter.dll exists.
#include <cerrno>
#include <cstdio>
#include <cstring>

// The cimfs headers come first; below, <windows.h>'s FILE_ATTRIBUTE_* macros
// (the same values as format.hpp's kAttr* constants) are what the code uses.
#include "cimfs/error.hpp"
#include "cimfs/native.hpp"
#include "cimfs/paths.hpp"
#include "cimfs/platform.hpp"

#include "../windows_h.hpp"

// The cimfs.dll functions with this project's declarations (not the SDK's).
#define CIMFS_API_NO_SDK_HEADER 1
#define CIMFS_API_IMPORTS 1
#include "cimfs_api.h"
#include "../win32_util.hpp"

namespace cimfs::native {

namespace {

// ---- loading ------------------------------------------------------------------------
// Which mount functions this system's cimfs.dll exports (they are called through
// the imports, only when true).
struct MountExports {
    bool CimMountImage = false;
    bool CimMergeMountImage = false;
    bool CimMountVerifiedImage = false;
    bool CimMergeMountVerifiedImage = false;
    bool CimDismountImage = false;
};

struct Dlls {
    HMODULE cimfs = nullptr;  // the probe: System32's cimfs.dll, kept loaded
    DWORD cimfs_error = 0;
    HMODULE cimwriter = nullptr;
    DWORD cimwriter_error = 0;
    api::WriterTable writer;  // the set used for writing (cimwriter.dll if it is usable)
    MountExports mount;       // always cimfs.dll
    // Path-based verified-CIM functions: cimwriter.dll's when it has them.
    api::CimSealImage_t seal = nullptr;
    api::CimGetVerificationInformation_t verification = nullptr;
};

template <class F>
void resolve(HMODULE m, const char* name, F& out) {
    out = m ? reinterpret_cast<F>(reinterpret_cast<void*>(::GetProcAddress(m, name))) : nullptr;
}

bool exports(HMODULE m, const char* name) { return m && ::GetProcAddress(m, name) != nullptr; }

// cimwriter.dll: everything by GetProcAddress.
api::WriterTable cimwriter_table(HMODULE m) {
    api::WriterTable t;
    if (!m) return t;
    t.module = m;
    t.dll = "cimwriter.dll";
    resolve(m, "CimCreateImage", t.CimCreateImage);
    resolve(m, "CimCreateImage2", t.CimCreateImage2);
    resolve(m, "CimCloseImage", t.CimCloseImage);
    resolve(m, "CimCommitImage", t.CimCommitImage);
    resolve(m, "CimCreateFile", t.CimCreateFile);
    resolve(m, "CimCloseStream", t.CimCloseStream);
    resolve(m, "CimWriteStream", t.CimWriteStream);
    resolve(m, "CimDeletePath", t.CimDeletePath);
    resolve(m, "CimCreateHardLink", t.CimCreateHardLink);
    resolve(m, "CimCreateAlternateStream", t.CimCreateAlternateStream);
    resolve(m, "CimAddFsToMergedImage", t.CimAddFsToMergedImage);
    resolve(m, "CimAddFsToMergedImage2", t.CimAddFsToMergedImage2);
    resolve(m, "CimTombstoneFile", t.CimTombstoneFile);
    resolve(m, "CimCreateMergeLink", t.CimCreateMergeLink);
    resolve(m, "CimSealImage", t.CimSealImage);
    resolve(m, "CimGetVerificationInformation", t.CimGetVerificationInformation);
    return t;
}

// cimfs.dll: the delay-loaded imports, each only where the loaded DLL exports it.
api::WriterTable cimfs_table(HMODULE m) {
    api::WriterTable t;
    if (!m) return t;
    t.module = m;
    t.dll = "cimfs.dll";
#define CIMFS_IMPORTED(f) t.f = exports(m, #f) ? &::f : nullptr
    CIMFS_IMPORTED(CimCreateImage);
    CIMFS_IMPORTED(CimCreateImage2);
    CIMFS_IMPORTED(CimCloseImage);
    CIMFS_IMPORTED(CimCommitImage);
    CIMFS_IMPORTED(CimCreateFile);
    CIMFS_IMPORTED(CimCloseStream);
    CIMFS_IMPORTED(CimWriteStream);
    CIMFS_IMPORTED(CimDeletePath);
    CIMFS_IMPORTED(CimCreateHardLink);
    CIMFS_IMPORTED(CimCreateAlternateStream);
    CIMFS_IMPORTED(CimAddFsToMergedImage);
    CIMFS_IMPORTED(CimAddFsToMergedImage2);
    CIMFS_IMPORTED(CimTombstoneFile);
    CIMFS_IMPORTED(CimCreateMergeLink);
    CIMFS_IMPORTED(CimSealImage);
    CIMFS_IMPORTED(CimGetVerificationInformation);
#undef CIMFS_IMPORTED
    return t;
}

Dlls load_dlls() {
    Dlls d;
    d.cimfs = ::LoadLibraryExW(L"cimfs.dll", nullptr, LOAD_LIBRARY_SEARCH_SYSTEM32);
    if (!d.cimfs) d.cimfs_error = ::GetLastError();
    d.cimwriter = ::LoadLibraryExW(L"cimwriter.dll", nullptr, LOAD_LIBRARY_SEARCH_SYSTEM32);
    if (!d.cimwriter) d.cimwriter_error = ::GetLastError();

    api::WriterTable from_writer = cimwriter_table(d.cimwriter);
    api::WriterTable from_cimfs = cimfs_table(d.cimfs);
    d.writer = from_writer.usable() ? from_writer : from_cimfs;
    d.seal = from_writer.CimSealImage ? from_writer.CimSealImage : from_cimfs.CimSealImage;
    d.verification = from_writer.CimGetVerificationInformation
                         ? from_writer.CimGetVerificationInformation
                         : from_cimfs.CimGetVerificationInformation;

    d.mount.CimMountImage = exports(d.cimfs, "CimMountImage");
    d.mount.CimMergeMountImage = exports(d.cimfs, "CimMergeMountImage");
    d.mount.CimMountVerifiedImage = exports(d.cimfs, "CimMountVerifiedImage");
    d.mount.CimMergeMountVerifiedImage = exports(d.cimfs, "CimMergeMountVerifiedImage");
    d.mount.CimDismountImage = exports(d.cimfs, "CimDismountImage");
    return d;  // the modules stay loaded for the life of the process
}

const Dlls& dlls() {
    static const Dlls d = load_dlls();  // thread-safe one-time initialisation
    return d;
}

// ---- OS version ----------------------------------------------------------------------
struct OsVersion {
    std::uint32_t build = 0;
    std::uint32_t revision = 0;
};

OsVersion os_version() {
    OsVersion v;
    // RtlGetVersion is not subject to GetVersionEx's manifest-based lying.
    using RtlGetVersion_t = LONG(WINAPI*)(OSVERSIONINFOW*);
    RtlGetVersion_t rtl = nullptr;
    if (HMODULE ntdll = ::GetModuleHandleW(L"ntdll.dll")) resolve(ntdll, "RtlGetVersion", rtl);
    if (rtl) {
        OSVERSIONINFOW info{};
        info.dwOSVersionInfoSize = sizeof info;
        if (rtl(&info) == 0) v.build = info.dwBuildNumber;
    }
    // The revision ("UBR", the last part of 10.0.20348.2031) is only in the registry.
    DWORD ubr = 0, size = sizeof ubr;
    if (::RegGetValueW(HKEY_LOCAL_MACHINE, L"SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", L"UBR",
                       RRF_RT_REG_DWORD, nullptr, &ubr, &size) == ERROR_SUCCESS)
        v.revision = ubr;
    return v;
}

bool build_trusted(const OsVersion& v) {
    return v.build >= kBuildLtsc2025 || (v.build == kBuildLtsc2022 && v.revision >= kRevisionLtsc2022);
}

// ---- errors --------------------------------------------------------------------------------
const char* const kNeedsCimfs = "the native backend needs cimfs.dll (Windows Server 2022 / build 20348 or later)";

std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08lx", static_cast<unsigned long>(v));
    return buf;
}

std::string build_text(const OsVersion& v) {
    return std::to_string(v.build) + "." + std::to_string(v.revision);
}

[[noreturn]] void unsupported(ErrorSubject subject, const std::string& op, const std::string& image,
                              const std::string& reason) {
    throw Error(Errc::unsupported, subject, op, image, "", "", reason, ENOTSUP);
}

// The DLL is missing: say why and what is needed.
[[noreturn]] void no_dll(ErrorSubject subject, const std::string& op, const std::string& image) {
    const Dlls& d = dlls();
    unsupported(subject, op, image,
                "cimfs.dll not available: " + win32::error_text(d.cimfs_error) + "; " + kNeedsCimfs);
}

// The DLL is there but lacks a function (an older Windows).
[[noreturn]] void no_export(ErrorSubject subject, const std::string& op, const std::string& image,
                            const char* function, const char* dll, const char* needs) {
    unsupported(subject, op, image,
                std::string(dll) + " on this system has no " + function + "; " + needs);
}

Errc errc_of(HRESULT hr) {
    if (HRESULT_FACILITY(hr) == FACILITY_WIN32) {
        switch (HRESULT_CODE(hr)) {
        case ERROR_FILE_NOT_FOUND:
        case ERROR_PATH_NOT_FOUND:
            return Errc::not_found;
        case ERROR_FILE_EXISTS:
        case ERROR_ALREADY_EXISTS:
            return Errc::exists;
        case ERROR_DIRECTORY:
            return Errc::not_a_directory;
        case ERROR_SHARING_VIOLATION:
        case ERROR_LOCK_VIOLATION:
        case ERROR_BUSY:
            return Errc::busy;
        case ERROR_INVALID_PARAMETER:
        case ERROR_INVALID_NAME:
            return Errc::invalid_argument;
        case ERROR_FILENAME_EXCED_RANGE:
            return Errc::name_too_long;
        case ERROR_NOT_SUPPORTED:
        case ERROR_CALL_NOT_IMPLEMENTED:
            return Errc::unsupported;
        default:
            return Errc::io;
        }
    }
    if (hr == E_INVALIDARG) return Errc::invalid_argument;
    if (hr == E_NOTIMPL) return Errc::unsupported;
    return Errc::io;
}

// An HRESULT failure from the DLL. winerror is the Win32 code for FACILITY_WIN32
// HRESULTs (what Python's OSError.winerror expects), the HRESULT otherwise.
[[noreturn]] void hr_error(HRESULT hr, ErrorSubject subject, const std::string& op,
                           const std::string& image, const std::string& path = "",
                           const std::string& path2 = "") {
    std::uint32_t code = static_cast<std::uint32_t>(hr);
    bool win32 = HRESULT_FACILITY(hr) == FACILITY_WIN32;
    std::uint32_t winerror = win32 ? static_cast<std::uint32_t>(HRESULT_CODE(hr)) : code;
    int err = win32 ? win32::errno_of(winerror)
                    : hr == E_INVALIDARG ? EINVAL : hr == E_NOTIMPL ? ENOSYS : EIO;
    std::string reason = win32::error_text(code) + " (HRESULT " + hex32(code) + ")";
    throw Error(errc_of(hr), subject, op, image, path, path2, reason, err, winerror);
}

std::wstring to_wide(const std::u16string& s) { return std::wstring(s.begin(), s.end()); }

std::string trim_trailing_separators(std::string s) {
    while (s.size() > 1 && (s.back() == '\\' || s.back() == '/') &&
           !(s.size() == 3 && s[1] == ':'))
        s.pop_back();
    return s;
}

GUID to_win_guid(const format::Guid& g) {
    GUID out;
    static_assert(sizeof(GUID) == 16, "GUID size");
    std::memcpy(&out, g.bytes.data(), 16);  // format::Guid holds the in-memory layout
    return out;
}

// ---- capability checks used before calling into the DLLs ---------------------------------
void require_cimfs(ErrorSubject subject, const std::string& op, const std::string& image) {
    if (!dlls().cimfs) no_dll(subject, op, image);
}

void require_writer(const std::string& op, const std::string& image) {
    const Dlls& d = dlls();
    if (!d.writer.usable()) {
        if (!d.cimfs && !d.cimwriter) no_dll(ErrorSubject::op, op, image);
        no_export(ErrorSubject::op, op, image, "CimCreateImage", "cimfs.dll", kNeedsCimfs);
    }
}

void require_block_write(const std::string& op, const std::string& image, bool verified) {
    const Dlls& d = dlls();
    OsVersion v = os_version();
    std::uint32_t need = verified ? kBuildVerifiedCim : kBuildBlockCim;
    if (d.cimwriter && d.writer.usable() && d.writer.module == d.cimwriter) return;
    if (!d.cimfs) no_dll(ErrorSubject::op, op, image);
    if (v.build < need)
        unsupported(ErrorSubject::op, op, image,
                    std::string(verified ? "verified" : "block") + " CIMs need cimwriter.dll or Windows build " +
                        std::to_string(need) + " or later (this is " + build_text(v) + ")");
}

void require_block_mount(ErrorSubject subject, const std::string& op, const std::string& image,
                         bool verified) {
    OsVersion v = os_version();
    std::uint32_t need = verified ? kBuildVerifiedCim : kBuildBlockCim;
    require_cimfs(subject, op, image);
    if (v.build < need)
        unsupported(subject, op, image,
                    std::string(verified ? "mounting verified" : "mounting block or merged") +
                        " CIMs needs Windows build " + std::to_string(need) + " or later (this is " +
                        build_text(v) + ")");
}

std::uint32_t mount_flag_of(BlockType t) {
    switch (t) {
    case BlockType::device: return kMountBlockDeviceCim;
    case BlockType::single_file: return kMountSingleFileCim;
    default: return 0;
    }
}

void check_block(const BlockImage& b, const std::string& op) {
    if (b.type == BlockType::none)
        throw Error(Errc::invalid_argument, ErrorSubject::op, op, b.path(), "", "",
                    "invalid block CIM type", EINVAL);
    if (b.block_path.empty() || b.name.empty())
        throw Error(Errc::invalid_argument, ErrorSubject::op, op, b.path(), "", "",
                    "both the block path and the image name must be given", EINVAL);
}

void check_sources(const BlockImage& merged, const std::vector<BlockImage>& sources,
                   const std::string& op) {
    check_block(merged, op);
    if (sources.size() < 2)
        throw Error(Errc::invalid_argument, ErrorSubject::op, op, merged.path(), "", "",
                    "need at least 2 source CIMs, got " + std::to_string(sources.size()), EINVAL);
    for (const auto& s : sources) {
        check_block(s, op);
        if (s.type != merged.type)
            throw Error(Errc::invalid_argument, ErrorSubject::op, op, merged.path(), "", "",
                        "source CIM " + s.path() + " is not of the merged CIM's block type", EINVAL);
    }
}

// ---- the writer ------------------------------------------------------------------------------
class NativeWriter final : public ImageWriter {
public:
    NativeWriter(const api::WriterTable& t, api::ImageHandle image, std::string image_path,
                 std::string seal_path)
        : t_(t), image_(image), image_path_(std::move(image_path)), seal_path_(std::move(seal_path)) {}
    ~NativeWriter() override {
        try {
            release();
        } catch (...) {
        }
    }

    void add_file(const std::u16string& path, const FileMetadata& meta) override {
        const char* op = "add";
        check_open(op);
        std::wstring w = image_relative(op, path);
        finish_stream(op);
        bool directory = (meta.attributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
        if (directory && meta.size != 0)
            throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path),
                             "a directory cannot have a size", EINVAL);
        // hcsshim: an empty descriptor "creates a CIM in a weird state"; pass a NULL DACL.
        Bytes sd = meta.security_descriptor && !meta.security_descriptor->empty()
                       ? *meta.security_descriptor
                       : null_dacl_security_descriptor();
        api::FileMetadata m{};
        m.Attributes = meta.attributes;
        m.FileSize = static_cast<INT64>(meta.size);
        m.CreationTime.QuadPart = static_cast<LONGLONG>(meta.times.creation);
        m.LastWriteTime.QuadPart = static_cast<LONGLONG>(meta.times.last_write);
        m.ChangeTime.QuadPart = static_cast<LONGLONG>(meta.times.change);
        m.LastAccessTime.QuadPart = static_cast<LONGLONG>(meta.times.last_access);
        m.SecurityDescriptorBuffer = sd.data();
        m.SecurityDescriptorSize = static_cast<UINT32>(sd.size());
        if (!meta.reparse_data.empty()) {
            m.ReparseDataBuffer = meta.reparse_data.data();
            m.ReparseDataSize = static_cast<UINT32>(meta.reparse_data.size());
        }
        if (!meta.extended_attributes.empty()) {
            m.EaBuffer = meta.extended_attributes.data();
            m.EaBufferSize = static_cast<UINT32>(meta.extended_attributes.size());
        }
        api::StreamHandle stream = nullptr;
        HRESULT hr = t_.CimCreateFile(image_, w.c_str(), &m, &stream);
        if (FAILED(hr)) hr_error(hr, ErrorSubject::path, op, image_path_, to_utf8(path));
        open_stream(stream, directory ? 0 : meta.size, to_utf8(path), directory);
    }

    void write(const void* data, std::size_t n) override {
        check_open("write");
        if (!stream_ || stream_is_directory_)
            throw_op_error(Errc::bad_state, "write", image_path_,
                           "no stream is open (add a file with a size first)");
        if (n > left_)
            throw_path_error(Errc::invalid_argument, "write", image_path_, stream_path_,
                             "write of " + std::to_string(n) + " bytes past the declared size (" +
                                 std::to_string(left_) + " bytes left)",
                             EINVAL);
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            UINT32 chunk = static_cast<UINT32>(n > (std::size_t(1) << 30) ? (std::size_t(1) << 30) : n);
            HRESULT hr = t_.CimWriteStream(stream_, p, chunk);
            if (FAILED(hr)) hr_error(hr, ErrorSubject::path, "write", image_path_, stream_path_);
            p += chunk;
            n -= chunk;
            left_ -= chunk;
        }
    }

    void close_stream() override {
        check_open("write");
        finish_stream("write");
    }

    void add_alternate_stream(const std::u16string& path, std::uint64_t size) override {
        const char* op = "add stream";
        check_open(op);
        std::u16string file, stream;
        if (!split_stream_path(path, file, stream))
            throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path),
                             "expected 'file:stream'", EINVAL);
        if (stream.empty() || stream.find_first_of(u"\\/:") != std::u16string::npos ||
            stream.find(u'\0') != std::u16string::npos)
            throw_path_error(Errc::invalid_argument, op, image_path_, to_utf8(path), "bad stream name", EINVAL);
        if (!t_.CimCreateAlternateStream)
            no_export(ErrorSubject::path, op, image_path_, "CimCreateAlternateStream", t_.dll, kNeedsCimfs);
        std::wstring w = image_relative(op, file) + L":" + to_wide(stream);
        finish_stream(op);
        api::StreamHandle h = nullptr;
        HRESULT hr = t_.CimCreateAlternateStream(image_, w.c_str(), size, &h);
        if (FAILED(hr)) hr_error(hr, ErrorSubject::path, op, image_path_, to_utf8(path));
        open_stream(h, size, to_utf8(path), false);
    }

    void add_hard_link(const std::u16string& existing, const std::u16string& new_path) override {
        link_like("link", t_.CimCreateHardLink, "CimCreateHardLink", existing, new_path);
    }

    void remove(const std::u16string& path) override {
        path_op("remove", t_.CimDeletePath, "CimDeletePath", path);
    }

    void add_tombstone(const std::u16string& path) override {
        path_op("tombstone", t_.CimTombstoneFile, "CimTombstoneFile", path);
    }

    void add_merge_link(const std::u16string& existing, const std::u16string& new_path) override {
        link_like("merge link", t_.CimCreateMergeLink, "CimCreateMergeLink", existing, new_path);
    }

    void commit() override {
        check_open("commit");
        finish_stream("commit");
        HRESULT hr = t_.CimCommitImage(image_);
        if (FAILED(hr)) hr_error(hr, ErrorSubject::op, "commit", image_path_);
        committed_ = true;
    }

    void close() override {
        bool seal = !closed_ && committed_ && !seal_path_.empty();
        release();
        if (seal) seal_image(seal_path_);
    }

    const std::string& image_path() const override { return image_path_; }
    bool committed() const override { return committed_; }

    void add_fs_to_merged(const std::string& source, std::uint32_t flags) {
        const char* op = "merge";
        check_open(op);
        finish_stream(op);
        std::wstring w = win32::widen(trim_trailing_separators(source));
        HRESULT hr;
        if (flags == 0 && t_.CimAddFsToMergedImage) {
            hr = t_.CimAddFsToMergedImage(image_, w.c_str());
        } else if (t_.CimAddFsToMergedImage2) {
            hr = t_.CimAddFsToMergedImage2(image_, w.c_str(), flags);
        } else {
            no_export(ErrorSubject::op, op, image_path_,
                      flags ? "CimAddFsToMergedImage2" : "CimAddFsToMergedImage", t_.dll,
                      "merged CIMs need Windows build 27766 or later");
        }
        if (FAILED(hr)) hr_error(hr, ErrorSubject::path, op, image_path_, source);
    }

private:
    void check_open(const char* op) {
        if (closed_ || committed_)
            throw_op_error(Errc::bad_state, op, image_path_,
                           committed_ ? "the image is already committed" : "the writer is closed");
    }

    // Validate and canonicalise an image-relative path (UTF-16, backslashes).
    std::wstring image_relative(const char* op, const std::u16string& path) {
        std::vector<std::u16string> comps;
        PathProblem p = split_path(path, comps);
        if (!p.ok)
            throw_path_error(p.too_long ? Errc::name_too_long : Errc::invalid_argument, op, image_path_,
                             to_utf8(path), p.reason, p.too_long ? ENAMETOOLONG : EINVAL);
        return to_wide(join_path(comps));
    }

    // CimCreateFile returns a stream handle for directories too; it is kept (and
    // closed before the next operation, as hcsshim does) but cannot be written.
    void open_stream(api::StreamHandle h, std::uint64_t size, std::string path, bool directory) {
        stream_ = h;
        left_ = size;
        stream_path_ = std::move(path);
        stream_is_directory_ = directory;
    }

    // Close the open stream, failing (after closing it) when it is short.
    void finish_stream(const char* op) {
        if (!stream_) return;
        api::StreamHandle h = stream_;
        std::uint64_t left = left_;
        std::string path = std::move(stream_path_);
        stream_ = nullptr;
        left_ = 0;
        stream_path_.clear();
        t_.CimCloseStream(h);
        if (left > 0)
            throw_path_error(Errc::invalid_argument, "write", image_path_, path,
                             "stream closed with " + std::to_string(left) +
                                 " of its declared bytes not written",
                             EINVAL);
    }

    template <class F>
    void path_op(const char* op, F fn, const char* fn_name, const std::u16string& path) {
        check_open(op);
        if (!fn) no_export(ErrorSubject::path, op, image_path_, fn_name, t_.dll,
                           "merged CIMs need Windows build 27766 or later");
        std::wstring w = image_relative(op, path);
        finish_stream(op);
        HRESULT hr = fn(image_, w.c_str());
        if (FAILED(hr)) hr_error(hr, ErrorSubject::path, op, image_path_, to_utf8(path));
    }

    template <class F>
    void link_like(const char* op, F fn, const char* fn_name, const std::u16string& existing,
                   const std::u16string& new_path) {
        check_open(op);
        if (!fn) no_export(ErrorSubject::link, op, image_path_, fn_name, t_.dll,
                           "merged CIMs need Windows build 27766 or later");
        std::wstring wn = image_relative(op, new_path);
        std::wstring we = image_relative(op, existing);
        finish_stream(op);
        HRESULT hr = fn(image_, wn.c_str(), we.c_str());  // (new, existing) as in cimfs.h
        if (FAILED(hr))
            hr_error(hr, ErrorSubject::link, op, image_path_, to_utf8(new_path), to_utf8(existing));
    }

    void release() {
        if (closed_) return;
        closed_ = true;
        if (stream_) t_.CimCloseStream(stream_);
        stream_ = nullptr;
        if (image_) t_.CimCloseImage(image_);
        image_ = nullptr;
    }

    const api::WriterTable& t_;
    api::ImageHandle image_;
    api::StreamHandle stream_ = nullptr;
    std::uint64_t left_ = 0;
    bool stream_is_directory_ = false;
    std::string stream_path_;
    std::string image_path_;
    std::string seal_path_;  // non-empty: seal this block CIM after closing
    bool committed_ = false;
    bool closed_ = false;
};

std::unique_ptr<NativeWriter> open_writer(const std::string& dir, std::uint32_t flags,
                                          const std::string& existing, const std::string& name,
                                          const std::string& image_path, const std::string& seal_path) {
    const char* op = "create";
    const Dlls& d = dlls();
    std::wstring wdir = win32::widen(trim_trailing_separators(dir), "directory");
    std::wstring wexisting = win32::widen(existing, "image name");
    std::wstring wname = win32::widen(name, "image name");
    // NULL and "" mean different things to CimCreateImage.
    PCWSTR pe = existing.empty() ? nullptr : wexisting.c_str();
    PCWSTR pn = name.empty() ? nullptr : wname.c_str();
    api::ImageHandle h = nullptr;
    HRESULT hr;
    if (flags == 0) {
        hr = d.writer.CimCreateImage(wdir.c_str(), pe, pn, &h);
    } else {
        if (!d.writer.CimCreateImage2)
            no_export(ErrorSubject::op, op, image_path, "CimCreateImage2", d.writer.dll,
                      "creation flags need Windows build 26100 or later");
        hr = d.writer.CimCreateImage2(wdir.c_str(), flags, pe, pn, &h);
    }
    if (FAILED(hr)) hr_error(hr, ErrorSubject::op, op, image_path);
    return std::make_unique<NativeWriter>(d.writer, h, image_path, seal_path);
}

std::string do_mount(const std::string& op, const std::string& image, std::optional<format::Guid> volume,
                     HRESULT (*call)(const GUID*, void*), void* ctx) {
    format::Guid g = volume ? *volume : format::Guid::random();
    GUID wg = to_win_guid(g);
    std::string vpath = volume_path(g);
    HRESULT hr = call(&wg, ctx);
    if (FAILED(hr)) hr_error(hr, ErrorSubject::mount, op, image, vpath);
    return vpath;
}

// Wide-string storage for CIMFS_IMAGE_PATH arrays.
struct PathArray {
    std::vector<std::wstring> dirs, names;
    std::vector<api::ImagePath> paths;
    PathArray(const BlockImage& merged, const std::vector<BlockImage>& sources) {
        std::vector<const BlockImage*> all{&merged};
        for (const auto& s : sources) all.push_back(&s);
        for (const BlockImage* b : all) {
            dirs.push_back(win32::widen(trim_trailing_separators(b->block_path), "block path"));
            names.push_back(win32::widen(b->name, "image name"));
        }
        for (std::size_t i = 0; i < all.size(); ++i) paths.push_back({dirs[i].c_str(), names[i].c_str()});
    }
};

}  // namespace

// ---- public API ------------------------------------------------------------------------------
Capabilities capabilities() {
    Capabilities c;
    const Dlls& d = dlls();
    OsVersion v = os_version();
    c.build = v.build;
    c.revision = v.revision;
    c.cimfs_dll = d.cimfs != nullptr;
    c.cimwriter_dll = d.cimwriter != nullptr;
    bool trusted = build_trusted(v);
    c.supported = c.cimfs_dll && trusted;
    c.block = c.cimfs_dll && v.build >= kBuildBlockCim;
    c.merged = c.block;
    c.verified = c.cimfs_dll && v.build >= kBuildVerifiedCim;
    if (!c.cimfs_dll)
        c.reason = "cimfs.dll not available: " + win32::error_text(d.cimfs_error) + "; " + kNeedsCimfs;
    else if (!trusted)
        c.reason = "Windows build " + build_text(v) +
                   " predates CimFS support (needs 20348.2031 or later, or build 26100 or later)";
    else if (!c.block)
        c.reason = "block, single-file and merged CIMs need Windows build " + std::to_string(kBuildBlockCim) +
                   " or later (this is " + build_text(v) + ")";
    else if (!c.verified)
        c.reason = "verified CIMs need Windows build " + std::to_string(kBuildVerifiedCim) +
                   " or later (this is " + build_text(v) + ")";
    return c;
}

std::unique_ptr<ImageWriter> create_writer(const CreateOptions& options, std::uint32_t create_flags) {
    std::string name = options.name.empty() ? options.parent : options.name;
    std::string image_path = platform::join(options.directory, name);
    require_writer("create", image_path);
    if (name.empty())
        throw_op_error(Errc::invalid_argument, "create", image_path, "an image name is needed", EINVAL);
    if (options.region_set)
        throw_op_error(Errc::invalid_argument, "create", image_path,
                       "the native backend cannot fix the region-set GUID (cimfs.dll chooses it)", EINVAL);
    if (create_flags & (kCreateBlockDeviceCim | kCreateSingleFileCim | kCreateVerifiedCim))
        require_block_write("create", image_path, (create_flags & kCreateVerifiedCim) != 0);
    return open_writer(options.directory, create_flags, options.parent, options.name, image_path, "");
}

std::unique_ptr<ImageWriter> create_block_image(const BlockImage& image, const BlockOptions& options) {
    const char* op = "create";
    check_block(image, op);
    require_writer(op, image.path());
    require_block_write(op, image.path(), options.verified);
    std::uint32_t flags = image.type == BlockType::device ? kCreateBlockDeviceCim : kCreateSingleFileCim;
    if (options.consistent) flags |= kCreateConsistentCim;
    if (options.verified) flags |= kCreateVerifiedCim;
    return open_writer(image.block_path, flags, "", image.name, image.path(),
                       options.verified ? trim_trailing_separators(image.block_path) : std::string());
}

void merge_block_images(const BlockImage& merged, const std::vector<BlockImage>& sources,
                        const BlockOptions& options) {
    const char* op = "merge";
    check_sources(merged, sources, op);
    require_writer(op, merged.path());
    require_block_write(op, merged.path(), options.verified);
    std::uint32_t flags = merged.type == BlockType::device ? kMergeBlockDevice : kMergeSingleFile;
    if (options.verified) flags |= kMergeVerifiedCim;
    auto writer = create_block_image(merged, options);
    // The topmost CIM is added first, the base last.
    for (const auto& s : sources) add_fs_to_merged_image(*writer, s.path(), flags);
    writer->commit();
    writer->close();
}

void add_fs_to_merged_image(ImageWriter& writer, const std::string& image_path, std::uint32_t merge_flags) {
    auto* w = dynamic_cast<NativeWriter*>(&writer);
    if (!w)
        throw_op_error(Errc::invalid_argument, "merge", writer.image_path(),
                       "merged images can only be written by the native backend", EINVAL);
    w->add_fs_to_merged(image_path, merge_flags);
}

Bytes seal_image(const std::string& block_path) {
    const char* op = "seal";
    const Dlls& d = dlls();
    if (!d.seal) {
        if (!d.cimfs && !d.cimwriter) no_dll(ErrorSubject::op, op, block_path);
        no_export(ErrorSubject::op, op, block_path, "CimSealImage", "cimfs.dll",
                  "verified CIMs need Windows build 27800 or later");
    }
    std::wstring w = win32::widen(trim_trailing_separators(block_path), "block path");
    UINT64 hash_size = 0, fixed_header = 0;
    BYTE hash[64] = {};  // room for any digest; hcsshim expects 32 bytes (SHA-256)
    HRESULT hr = d.seal(w.c_str(), &hash_size, &fixed_header, hash);
    if (FAILED(hr)) hr_error(hr, ErrorSubject::op, op, block_path);
    if (hash_size > sizeof hash)
        throw_op_error(Errc::io, op, block_path, "unexpected root hash size " + std::to_string(hash_size));
    return Bytes(reinterpret_cast<const char*>(hash), static_cast<std::size_t>(hash_size));
}

VerificationInfo get_verification_information(const std::string& block_path) {
    const char* op = "verification info";
    const Dlls& d = dlls();
    if (!d.verification) {
        if (!d.cimfs && !d.cimwriter) no_dll(ErrorSubject::op, op, block_path);
        no_export(ErrorSubject::op, op, block_path, "CimGetVerificationInformation", "cimfs.dll",
                  "verified CIMs need Windows build 27800 or later");
    }
    std::wstring w = win32::widen(trim_trailing_separators(block_path), "block path");
    UINT32 sealed = 0;
    UINT64 hash_size = 0, signature_size = 0, fixed_header = 0;
    BYTE hash[64] = {};
    // Like hcsshim, no signature buffer: the signature is not returned.
    HRESULT hr = d.verification(w.c_str(), &sealed, &hash_size, &signature_size, &fixed_header, hash, nullptr);
    if (FAILED(hr)) hr_error(hr, ErrorSubject::op, op, block_path);
    if (hash_size > sizeof hash)
        throw_op_error(Errc::io, op, block_path, "unexpected root hash size " + std::to_string(hash_size));
    VerificationInfo info;
    info.sealed = sealed != 0;
    info.root_hash.assign(reinterpret_cast<const char*>(hash), static_cast<std::size_t>(hash_size));
    info.fixed_header_size = fixed_header;
    return info;
}

std::string mount(const std::string& image_path, std::uint32_t flags, std::optional<format::Guid> volume) {
    const char* op = "mount";
    require_cimfs(ErrorSubject::mount, op, image_path);
    if (!dlls().mount.CimMountImage)
        no_export(ErrorSubject::mount, op, image_path, "CimMountImage", "cimfs.dll", kNeedsCimfs);
    if (flags & (kMountBlockDeviceCim | kMountSingleFileCim | kMountVerifiedCim))
        require_block_mount(ErrorSubject::mount, op, image_path, (flags & kMountVerifiedCim) != 0);
    struct Ctx {
        std::wstring dir, name;
        std::uint32_t flags;
    } ctx{win32::widen(trim_trailing_separators(platform::dirname(image_path)), "directory"),
          win32::widen(platform::basename(image_path), "image name"), flags};
    return do_mount(op, image_path, volume,
                    [](const GUID* g, void* p) {
                        auto* c = static_cast<Ctx*>(p);
                        return ::CimMountImage(c->dir.c_str(), c->name.c_str(), c->flags, g);
                    },
                    &ctx);
}

std::string merge_mount(const BlockImage& merged, const std::vector<BlockImage>& sources, std::uint32_t flags,
                        std::optional<format::Guid> volume) {
    const char* op = "mount merged";
    check_sources(merged, sources, op);
    require_block_mount(ErrorSubject::mount, op, merged.path(), false);
    if (!dlls().mount.CimMergeMountImage)
        no_export(ErrorSubject::mount, op, merged.path(), "CimMergeMountImage", "cimfs.dll",
                  "merged CIMs need Windows build 27766 or later");
    struct Ctx {
        PathArray paths;
        std::uint32_t flags;
    } ctx{PathArray(merged, sources), flags | mount_flag_of(merged.type)};
    return do_mount(op, merged.path(), volume,
                    [](const GUID* g, void* p) {
                        auto* c = static_cast<Ctx*>(p);
                        return ::CimMergeMountImage(static_cast<UINT32>(c->paths.paths.size()), c->paths.paths.data(),
                                                    c->flags, g);
                    },
                    &ctx);
}

std::string mount_verified(const BlockImage& image, const Bytes& root_hash, std::uint32_t flags,
                           std::optional<format::Guid> volume) {
    const char* op = "mount verified";
    check_block(image, op);
    require_block_mount(ErrorSubject::mount, op, image.path(), true);
    if (!dlls().mount.CimMountVerifiedImage)
        no_export(ErrorSubject::mount, op, image.path(), "CimMountVerifiedImage", "cimfs.dll",
                  "verified CIMs need Windows build 27800 or later");
    if (root_hash.empty() || root_hash.size() > 0xFFFF)
        throw Error(Errc::invalid_argument, ErrorSubject::mount, op, image.path(), "", "",
                    "a root hash is needed", EINVAL);
    // The verified-mount API knows the CIM is verified: only the block type flag is added.
    struct Ctx {
        std::wstring dir, name;
        std::uint32_t flags;
        const Bytes* hash;
    } ctx{win32::widen(trim_trailing_separators(image.block_path), "block path"),
          win32::widen(image.name, "image name"), flags | mount_flag_of(image.type), &root_hash};
    return do_mount(op, image.path(), volume,
                    [](const GUID* g, void* p) {
                        auto* c = static_cast<Ctx*>(p);
                        return ::CimMountVerifiedImage(
                            c->dir.c_str(), c->name.c_str(), c->flags, g, static_cast<UINT16>(c->hash->size()),
                            reinterpret_cast<const BYTE*>(c->hash->data()));
                    },
                    &ctx);
}

std::string merge_mount_verified(const BlockImage& merged, const std::vector<BlockImage>& sources,
                                 const Bytes& root_hash, std::uint32_t flags, std::optional<format::Guid> volume) {
    const char* op = "mount merged verified";
    check_sources(merged, sources, op);
    require_block_mount(ErrorSubject::mount, op, merged.path(), true);
    if (!dlls().mount.CimMergeMountVerifiedImage)
        no_export(ErrorSubject::mount, op, merged.path(), "CimMergeMountVerifiedImage", "cimfs.dll",
                  "verified CIMs need Windows build 27800 or later");
    if (root_hash.empty() || root_hash.size() > 0xFFFF)
        throw Error(Errc::invalid_argument, ErrorSubject::mount, op, merged.path(), "", "",
                    "a root hash is needed", EINVAL);
    struct Ctx {
        PathArray paths;
        std::uint32_t flags;
        const Bytes* hash;
    } ctx{PathArray(merged, sources), flags | mount_flag_of(merged.type), &root_hash};
    return do_mount(op, merged.path(), volume,
                    [](const GUID* g, void* p) {
                        auto* c = static_cast<Ctx*>(p);
                        return ::CimMergeMountVerifiedImage(
                            static_cast<UINT32>(c->paths.paths.size()), c->paths.paths.data(), c->flags, g,
                            static_cast<UINT16>(c->hash->size()), reinterpret_cast<const BYTE*>(c->hash->data()));
                    },
                    &ctx);
}

void dismount(const format::Guid& volume) {
    const char* op = "dismount";
    std::string vpath = volume_path(volume);
    if (!dlls().cimfs) {
        const Dlls& d = dlls();
        throw Error(Errc::unsupported, ErrorSubject::mount, op, "", vpath, "",
                    "cimfs.dll not available: " + win32::error_text(d.cimfs_error) + "; " + kNeedsCimfs,
                    ENOTSUP);
    }
    if (!dlls().mount.CimDismountImage)
        no_export(ErrorSubject::mount, op, "", "CimDismountImage", "cimfs.dll", kNeedsCimfs);
    GUID g = to_win_guid(volume);
    HRESULT hr = ::CimDismountImage(&g);
    if (FAILED(hr)) hr_error(hr, ErrorSubject::mount, op, "", vpath);
}

void dismount(const std::string& volume_path_text) {
    format::Guid g;
    if (!parse_volume_path(volume_path_text, g))
        throw Error(Errc::invalid_argument, ErrorSubject::mount, "dismount", "", volume_path_text, "",
                    "not a volume path of the form \\\\?\\Volume{GUID}\\", EINVAL);
    dismount(g);
}

}  // namespace cimfs::native
