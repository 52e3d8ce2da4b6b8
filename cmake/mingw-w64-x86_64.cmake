# CMake toolchain file: cross-compile for 64-bit Windows with mingw-w64 (Debian's
# g++-mingw-w64-x86-64-posix: the POSIX thread model, needed for std::thread).
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
#
# Override the prefix or the compiler flavour with -DMINGW_PREFIX=... or
# -DMINGW_THREADS= (empty: the plain x86_64-w64-mingw32-g++).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)

if(NOT DEFINED MINGW_PREFIX)
  set(MINGW_PREFIX x86_64-w64-mingw32)
endif()
if(NOT DEFINED MINGW_THREADS)
  set(MINGW_THREADS -posix)
endif()

set(CMAKE_C_COMPILER ${MINGW_PREFIX}-gcc${MINGW_THREADS})
set(CMAKE_CXX_COMPILER ${MINGW_PREFIX}-g++${MINGW_THREADS})
set(CMAKE_RC_COMPILER ${MINGW_PREFIX}-windres)
set(CMAKE_AR ${MINGW_PREFIX}-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${MINGW_PREFIX}-ranlib CACHE FILEPATH "")

# Debian installs the target's headers and libraries here.
set(CMAKE_FIND_ROOT_PATH /usr/${MINGW_PREFIX} /usr/lib/gcc/${MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Executables that run without any mingw DLLs next to them (Wine, CI).
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static -static-libgcc -static-libstdc++")

# Run target programs (try_run, tests) under Wine when it is installed.
find_program(CIMFS_WINE NAMES wine64 wine)
if(CIMFS_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${CIMFS_WINE})
endif()
