// Compile-time check of cimfs_api.h against the Windows SDK's cimfs.h: when the
// SDK header is there, cimfs_api.h asserts that its CIMFS_FILE_METADATA layout
// matches. (native_win32.cpp cannot do it: it declares the cimfs.dll functions
// itself, which would clash with the SDK's declarations.) Empty otherwise.
#include "cimfs_api.h"
