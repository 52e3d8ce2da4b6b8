// The native backend: Windows' own cimfs.dll (and cimwriter.dll where present).
//
// Everything here needs Windows. On other systems every function throws
// Error(Errc::unsupported) saying what it needs, and capabilities() reports all
// false with the reason "not Windows". On Windows the DLLs are loaded at first
// use from System32 only (LoadLibraryExW + GetProcAddress); a missing DLL or a
// missing export is also Error(Errc::unsupported). Failures reported by the DLL
// (HRESULTs) become Error with `winerror` set and the system's message text.
//
// The shape follows the Win32 API (cimfs.h) and hcsshim's pkg/cimfs: paths are
// UTF-8, image paths are "<directory>\<name>", block CIMs are named by the block
// device / single file that holds them plus the image name inside it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cimfs/format.hpp"
#include "cimfs/metadata.hpp"
#include "cimfs/writer.hpp"

namespace cimfs::native {

// ---- flags (values of cimfs.h) ----------------------------------------------------
// CimCreateImage2
inline constexpr std::uint32_t kCreateNone = 0x0;
inline constexpr std::uint32_t kCreateDoNotExpandPeImages = 0x1;
inline constexpr std::uint32_t kCreateFixedSizeChunks = 0x2;
inline constexpr std::uint32_t kCreateBlockDeviceCim = 0x4;
inline constexpr std::uint32_t kCreateSingleFileCim = 0x8;
inline constexpr std::uint32_t kCreateConsistentCim = 0x10;
inline constexpr std::uint32_t kCreateVerifiedCim = 0x40;
// CimMountImage & co.
inline constexpr std::uint32_t kMountNone = 0x0;
inline constexpr std::uint32_t kMountEnableDax = 0x2;
inline constexpr std::uint32_t kMountBlockDeviceCim = 0x10;
inline constexpr std::uint32_t kMountSingleFileCim = 0x20;
inline constexpr std::uint32_t kMountVerifiedCim = 0x80;
// CimAddFsToMergedImage2
inline constexpr std::uint32_t kMergeNone = 0x0;
inline constexpr std::uint32_t kMergeSingleFile = 0x1;
inline constexpr std::uint32_t kMergeBlockDevice = 0x2;
inline constexpr std::uint32_t kMergeVerifiedCim = 0x4;

// Build thresholds, as hcsshim (pkg/cimfs) applies them.
inline constexpr std::uint32_t kBuildLtsc2022 = 20348;         // + revision (UBR) >= 2031
inline constexpr std::uint32_t kRevisionLtsc2022 = 2031;
inline constexpr std::uint32_t kBuildLtsc2025 = 26100;
inline constexpr std::uint32_t kBuildBlockCim = 27766;         // block, single-file, merged
inline constexpr std::uint32_t kBuildVerifiedCim = 27800;      // verified (sealed) CIMs

// What this machine can do.
struct Capabilities {
    bool supported = false;  // cimfs.dll loads and the build is one hcsshim trusts
    bool block = false;      // block-device / single-file CIMs (create and mount)
    bool merged = false;     // merged CIMs (tombstones, merge links, merge mounts)
    bool verified = false;   // verified CIMs: seal, verification info, verified mounts
    std::uint32_t build = 0;     // OS build number (RtlGetVersion)
    std::uint32_t revision = 0;  // update build revision (UBR), 0 when unknown
    std::string reason;          // why something is false ("" when all is true)
    bool cimfs_dll = false;      // cimfs.dll loads from System32
    bool cimwriter_dll = false;  // cimwriter.dll loads (preferred for writing)
};
Capabilities capabilities();

// ---- writing --------------------------------------------------------------------------
// An image in a directory, written by cimfs.dll: CimCreateImage (create_flags 0)
// or CimCreateImage2. options.parent forks an existing image of the directory.
// options.region_set cannot be honoured (cimfs.dll picks the GUID) and is an
// invalid_argument error; format_major and durable are left to cimfs.dll.
// The writer never seals; see create_block_image for verified CIMs.
std::unique_ptr<ImageWriter> create_writer(const CreateOptions& options,
                                           std::uint32_t create_flags = 0);

enum class BlockType : std::uint32_t { none = 0, single_file = 1, device = 2 };

// A CIM stored in a block device or a block-formatted single file.
struct BlockImage {
    BlockType type = BlockType::single_file;
    std::string block_path;  // the device or file (no trailing backslash)
    std::string name;        // the image's name inside it
    std::string path() const;  // block_path + "\" + name, for messages and mount()
};

struct BlockOptions {
    bool consistent = true;  // reproducible output (CimCreateFlagConsistentCim)
    bool verified = false;   // data integrity: verified CIM, sealed when the writer closes
};

// CimCreateImage2 with the block type's flag (+ consistent / verified flags).
std::unique_ptr<ImageWriter> create_block_image(const BlockImage& image,
                                                const BlockOptions& options = {});

// Create `merged` from `sources` (at least two, same type as `merged`; index 0 is
// the topmost layer, the last one the base). Mount the result with merge_mount()
// passing the same sources in the same order.
void merge_block_images(const BlockImage& merged, const std::vector<BlockImage>& sources,
                        const BlockOptions& options = {});

// CimAddFsToMergedImage (flags 0) / CimAddFsToMergedImage2 on a writer made by
// this backend; `image_path` is the full path of the source image.
void add_fs_to_merged_image(ImageWriter& writer, const std::string& image_path,
                            std::uint32_t merge_flags = 0);

// ---- verified CIMs ----------------------------------------------------------------------
// CimSealImage: seal a (verified) block CIM; returns its root hash.
Bytes seal_image(const std::string& block_path);

struct VerificationInfo {
    bool sealed = false;
    Bytes root_hash;
    Bytes signature;
    std::uint64_t fixed_header_size = 0;
};
// CimGetVerificationInformation.
VerificationInfo get_verification_information(const std::string& block_path);

// ---- mounting ------------------------------------------------------------------------------
// Volume paths have the form "\\?\Volume{<guid>}\". When `volume` is not given a
// random GUID is used. All mount functions return the volume path.

// CimMountImage(dirname(image_path), basename(image_path), flags, volume). For a
// block CIM pass BlockImage::path() and kMountBlockDeviceCim / kMountSingleFileCim.
std::string mount(const std::string& image_path, std::uint32_t flags = kMountNone,
                  std::optional<format::Guid> volume = std::nullopt);

// CimMergeMountImage: `merged` first, then the sources in merge order. The block
// type's mount flag is added to `flags`.
std::string merge_mount(const BlockImage& merged, const std::vector<BlockImage>& sources,
                        std::uint32_t flags = kMountNone,
                        std::optional<format::Guid> volume = std::nullopt);

// CimMountVerifiedImage: every read is checked against `root_hash`.
std::string mount_verified(const BlockImage& image, const Bytes& root_hash,
                           std::uint32_t flags = kMountNone,
                           std::optional<format::Guid> volume = std::nullopt);

// CimMergeMountVerifiedImage.
std::string merge_mount_verified(const BlockImage& merged, const std::vector<BlockImage>& sources,
                                 const Bytes& root_hash, std::uint32_t flags = kMountNone,
                                 std::optional<format::Guid> volume = std::nullopt);

// CimDismountImage.
void dismount(const format::Guid& volume);
// Accepts "\\?\Volume{<guid>}\" (trailing backslash optional), "{<guid>}" or "<guid>".
void dismount(const std::string& volume_path);

// Helpers shared by both builds.
std::string volume_path(const format::Guid& volume);
bool parse_volume_path(const std::string& text, format::Guid& out);

}  // namespace cimfs::native
