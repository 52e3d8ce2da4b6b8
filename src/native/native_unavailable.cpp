// The native backend off Windows (and in 32-bit Windows builds, see
// CMakeLists.txt): nothing is available. Every operation throws
// Error(Errc::unsupported) naming what it would need.
#include <cerrno>

#include "cimfs/error.hpp"
#include "cimfs/native.hpp"
#include "cimfs/platform.hpp"

#ifndef ENOTSUP
#define ENOTSUP EOPNOTSUPP
#endif

namespace cimfs::native {

namespace {

const char* const kNeedsCimfs = "needs Windows with cimfs.dll (Windows Server 2022 / build 20348 or later)";
const char* const kNeedsBlock = "needs Windows with cimfs.dll, build 27766 or later (block and merged CIMs)";
const char* const kNeedsVerified = "needs Windows with cimfs.dll, build 27800 or later (verified CIMs)";

[[noreturn]] void unavailable(ErrorSubject subject, const std::string& op, const std::string& image,
                              const std::string& path, const char* needs) {
    throw Error(Errc::unsupported, subject, op, image, path, "",
                std::string("the native backend ") + needs, ENOTSUP);
}

}  // namespace

Capabilities capabilities() {
    Capabilities c;
#if defined(_WIN32)
    c.reason = "32-bit build: the native backend (cimfs.dll) is built for 64-bit Windows only";
#else
    c.reason = "not Windows";
#endif
    return c;
}

std::unique_ptr<ImageWriter> create_writer(const CreateOptions& options, std::uint32_t create_flags) {
    std::string name = options.name.empty() ? options.parent : options.name;
    const char* needs = (create_flags & kCreateVerifiedCim) ? kNeedsVerified
                        : (create_flags & (kCreateBlockDeviceCim | kCreateSingleFileCim)) ? kNeedsBlock
                                                                                          : kNeedsCimfs;
    unavailable(ErrorSubject::op, "create", platform::join(options.directory, name), "", needs);
}

std::unique_ptr<ImageWriter> create_block_image(const BlockImage& image, const BlockOptions& options) {
    unavailable(ErrorSubject::op, "create", image.path(), "", options.verified ? kNeedsVerified : kNeedsBlock);
}

void merge_block_images(const BlockImage& merged, const std::vector<BlockImage>&, const BlockOptions& options) {
    unavailable(ErrorSubject::op, "merge", merged.path(), "", options.verified ? kNeedsVerified : kNeedsBlock);
}

void add_fs_to_merged_image(ImageWriter& writer, const std::string&, std::uint32_t) {
    unavailable(ErrorSubject::op, "merge", writer.image_path(), "", kNeedsBlock);
}

Bytes seal_image(const std::string& block_path) {
    unavailable(ErrorSubject::op, "seal", block_path, "", kNeedsVerified);
}

VerificationInfo get_verification_information(const std::string& block_path) {
    unavailable(ErrorSubject::op, "verification info", block_path, "", kNeedsVerified);
}

std::string mount(const std::string& image_path, std::uint32_t flags, std::optional<format::Guid> volume) {
    const char* needs = (flags & kMountVerifiedCim) ? kNeedsVerified
                        : (flags & (kMountBlockDeviceCim | kMountSingleFileCim)) ? kNeedsBlock
                                                                                 : kNeedsCimfs;
    unavailable(ErrorSubject::mount, "mount", image_path, volume ? volume_path(*volume) : "", needs);
}

std::string merge_mount(const BlockImage& merged, const std::vector<BlockImage>&, std::uint32_t,
                        std::optional<format::Guid> volume) {
    unavailable(ErrorSubject::mount, "mount merged", merged.path(), volume ? volume_path(*volume) : "",
                kNeedsBlock);
}

std::string mount_verified(const BlockImage& image, const Bytes&, std::uint32_t,
                           std::optional<format::Guid> volume) {
    unavailable(ErrorSubject::mount, "mount verified", image.path(), volume ? volume_path(*volume) : "",
                kNeedsVerified);
}

std::string merge_mount_verified(const BlockImage& merged, const std::vector<BlockImage>&, const Bytes&,
                                 std::uint32_t, std::optional<format::Guid> volume) {
    unavailable(ErrorSubject::mount, "mount merged verified", merged.path(),
                volume ? volume_path(*volume) : "", kNeedsVerified);
}

void dismount(const format::Guid& volume) {
    unavailable(ErrorSubject::mount, "dismount", "", volume_path(volume), kNeedsCimfs);
}

void dismount(const std::string& volume_path_text) {
    unavailable(ErrorSubject::mount, "dismount", "", volume_path_text, kNeedsCimfs);
}

}  // namespace cimfs::native
