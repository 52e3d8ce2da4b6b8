// Windows container layer tar -> image, in one pass (docs/cim-format.md §7,
// hcsshim's ImportCimLayerFromTar). The importer reads the (decompressed) tar
// through a caller's read function, parses ustar/PAX/GNU headers, turns each
// entry's PAX records into file metadata and hands file data from its read
// buffer straight to the writer. Pure C++: decompression and progress stay with
// the caller (the Python layer reads gzip/zstd through the read function).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "cimfs/reader.hpp"
#include "cimfs/writer.hpp"

namespace cimfs::layer {

// Fill up to n bytes of buf with the next bytes of the tar; 0 at its end.
using ReadFn = std::function<std::size_t(unsigned char* buf, std::size_t n)>;
// Debug messages (a directory created because an entry needed it, a whiteout
// of a path that does not exist).
using LogFn = std::function<void(const std::string& message)>;

struct ImportStats {
    std::uint64_t entries = 0;
    std::uint64_t files = 0;
    std::uint64_t directories = 0;
    std::uint64_t implicit_directories = 0;
    std::uint64_t links = 0;
    std::uint64_t symlinks = 0;
    std::uint64_t streams = 0;
    std::uint64_t whiteouts = 0;
    std::uint64_t bytes = 0;  // file and stream data
};

// The layer cannot be imported: which entry (its name as the tar spells it,
// "" when the problem is the archive as a whole), which PAX record ("" when
// none is at fault), and why.
class ImportError : public std::runtime_error {
public:
    ImportError(std::string entry, std::string record, std::string reason);
    std::string entry;
    std::string record;
    std::string reason;
};

class LayerImporter {
public:
    // `parent`: the image the writer forks, for whiteouts and for alternate
    // streams of files that came from it (nullptr without a parent).
    LayerImporter(ImageWriter& writer, const Image* parent, std::size_t buffer_size = 1 << 20);
    ~LayerImporter();
    LayerImporter(const LayerImporter&) = delete;
    LayerImporter& operator=(const LayerImporter&) = delete;

    void set_log(LogFn log);
    // Import the whole tar. Throws ImportError; exceptions of `read` pass through.
    void run(const ReadFn& read);
    // Counts so far (valid during run(), from inside `read`).
    const ImportStats& stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cimfs::layer
