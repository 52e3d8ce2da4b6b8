// Small Win32 helpers shared by platform_win32.cpp, sha512_bcrypt.cpp and the
// native backend: UTF-8 <-> UTF-16 conversion and system error texts.
// Windows-only; implemented in platform_win32.cpp.
#pragma once

#ifndef _WIN32
#error "win32_util.hpp is for Windows builds only"
#endif

#include <cstdint>
#include <string>

namespace cimfs::win32 {

// Strict UTF-8 -> UTF-16 for Win32 "W" functions. Throws Error(invalid_argument)
// naming `what` when the text is not valid UTF-8 or contains NUL.
std::wstring widen(const std::string& utf8, const char* what = "path");
// Like widen(), for file-system paths: absolute paths too long for the classic
// API get the "\\?\" (or "\\?\UNC\") prefix so that they are not cut at MAX_PATH.
std::wstring widen_path(const std::string& utf8);
// UTF-16 -> UTF-8 (unpaired surrogates become U+FFFD).
std::string narrow(const wchar_t* s, std::size_t n);
inline std::string narrow(const std::wstring& s) { return narrow(s.data(), s.size()); }

// FormatMessage text of a Win32 error or HRESULT, without the trailing
// newline/period; "error 0x%08x" when the system has no text.
std::string error_text(std::uint32_t code);

// errno value closest to a Win32 error code (0 when there is none), so that
// the Python layer builds the same OSError subclass as on POSIX.
int errno_of(std::uint32_t win32_error);

}  // namespace cimfs::win32
