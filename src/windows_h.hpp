// <windows.h> with the settings every Windows-only source of the core uses
// (lean headers, no min/max macros, Windows 10 API level). Include this
// instead of <windows.h> directly.
#pragma once

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0A00
#endif
#include <windows.h>
