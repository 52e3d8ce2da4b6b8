#include "cimfs/metadata.hpp"

namespace cimfs {

Bytes null_dacl_security_descriptor() {
    // Revision 1, Sbz1 0, Control SE_SELF_RELATIVE|SE_DACL_PRESENT (0x8004),
    // then owner, group, SACL and DACL offsets all 0: a NULL DACL.
    static const unsigned char kSd[20] = {0x01, 0x00, 0x04, 0x80};
    return Bytes(reinterpret_cast<const char*>(kSd), sizeof kSd);
}

}  // namespace cimfs
