#!/usr/bin/env bash
# Build the C++ core for 64-bit Windows with Debian's mingw-w64 cross compiler
# and run tools/cimfs_selftest.exe under Wine. Proves that the Win32 sources
# (platform_win32.cpp, sha512_bcrypt.cpp, native/native_win32.cpp) compile and
# that the portable writer/reader work on Windows APIs. Two runs:
#   1. plain Wine: cimfs.dll is absent, so the native backend must fail with a
#      clean "not available" error;
#   2. with tools/mock_cimfs_dll.cpp installed as System32\cimfs.dll in the
#      throwaway prefix: the native backend's calls through the delay-loaded
#      cimfs.dll imports, structures, HRESULT mapping and mount plumbing are
#      exercised end to end.
# Before that, the exe's imports are checked: cimfs.dll must be a delay-load
# import (with exactly the functions of src/native/cimfs.def), never an ordinary
# one, so that the program starts where cimfs.dll does not exist (run 1).
#
# Usage (from anywhere in a checkout; needs root or sudo for apt-get):
#   .ci/cross-windows.sh
# Environment:
#   BUILD_DIR     build directory (default: build/cross-windows in the checkout)
#   SKIP_APT=1    do not install packages (they are already there)
#   WINE_TIMEOUT  seconds allowed for the Wine run (default 600)
# Exits non-zero when installing, configuring, building or any test fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build/cross-windows}
timeout_s=${WINE_TIMEOUT:-600}

log() { printf '\n==> %s\n' "$*"; }

# ---- packages (Debian 12 names) ------------------------------------------------------
if [ "${SKIP_APT:-0}" != 1 ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    log "installing mingw-w64 and wine"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends \
        cmake make \
        g++-mingw-w64-x86-64-posix mingw-w64-tools binutils-mingw-w64-x86-64 \
        wine wine64 python3
fi

# ---- configure and build -----------------------------------------------------------------
log "configuring in $build"
cmake -S "$root" -B "$build" \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/mingw-w64-x86_64.cmake" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCIMFS_BUILD_TOOLS=ON \
    -DSKBUILD=OFF
log "building"
cmake --build "$build" --target cimfs_selftest mock_cimfs -j"$(nproc 2>/dev/null || echo 2)"

exe="$build/cimfs_selftest.exe"
test -f "$exe"
objdump=x86_64-w64-mingw32-objdump
if ! command -v "$objdump" >/dev/null; then
    echo "error: $objdump not found (binutils-mingw-w64-x86-64)" >&2
    exit 1
fi
log "checking the imports of $(basename "$exe")"
private_headers=$("$objdump" -p "$exe")
# Only system DLLs may be imported: libgcc, libstdc++ and winpthread are static.
imports=$(echo "$private_headers" | sed -n 's/^[[:space:]]*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u)
echo "imports: $(echo $imports)"
if echo "$imports" | grep -E '^(libgcc|libstdc|libwinpthread)' >/dev/null; then
    echo "error: $exe needs mingw runtime DLLs" >&2
    exit 1
fi
# cimfs.dll must be delay-loaded: an ordinary import would stop the program (and
# the Python module) from loading where cimfs.dll is missing. cimwriter.dll is
# resolved at run time and must not be imported at all.
if echo "$imports" | grep -x -E 'cimfs\.dll|cimwriter\.dll' >/dev/null; then
    echo "error: $exe imports cimfs.dll or cimwriter.dll in its ordinary import table" >&2
    exit 1
fi
# objdump 2.40 does not list delay imports, and GNU ld leaves the delay-import
# directory empty (shown here for the record); tools/pe_delay_imports.py reads
# the descriptors that dlltool's delay-import library put in the image.
echo "$private_headers" | grep -i 'Delay Import Directory' || true
python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
    echo "error: python3 not found (needed by tools/pe_delay_imports.py)" >&2
    exit 1
fi
delay_imports=$("$python" "$root/tools/pe_delay_imports.py" "$exe")
echo "$delay_imports"
expected=$(sed -e 's/;.*//' "$root/src/native/cimfs.def" | awk 'f && NF {print $1} /^[[:space:]]*EXPORTS/ {f=1}' | sort)
actual=$(echo "$delay_imports" | sed -n 's/^cimfs\.dll: //p' | tr ' ' '\n' | sed '/^$/d' | sort)
if [ -z "$actual" ]; then
    echo "error: cimfs.dll is not a delay-load import of $exe" >&2
    exit 1
fi
if [ "$expected" != "$actual" ]; then
    echo "error: the delay-loaded cimfs.dll functions differ from src/native/cimfs.def:" >&2
    diff <(echo "$expected") <(echo "$actual") >&2 || true
    exit 1
fi
echo "cimfs.dll: delay-loaded, $(echo "$actual" | wc -l) functions, as in cimfs.def"

# ---- run under Wine -------------------------------------------------------------------------
wine_bin=""
for candidate in wine64 wine /usr/lib/wine/wine64; do
    if command -v "$candidate" >/dev/null 2>&1; then wine_bin=$(command -v "$candidate"); break; fi
done
if [ -z "$wine_bin" ]; then
    echo "error: wine not found" >&2
    exit 1
fi

WINEPREFIX=$(mktemp -d "${TMPDIR:-/tmp}/cimfs-wine.XXXXXX")
export WINEPREFIX
export WINEDEBUG=-all
export WINEARCH=win64
# No Mono/Gecko install prompts while the prefix is created.
export WINEDLLOVERRIDES="mscoree,mshtml="
cleanup() {
    wineserver -k >/dev/null 2>&1 || true
    rm -rf "$WINEPREFIX"
}
trap cleanup EXIT

run_selftest() {  # $1: log name; environment passed through
    local out="$build/$1.log" status
    set +e
    timeout "$timeout_s" "$wine_bin" "$exe" 2> >(grep -v -E '^wine: (failed to open|configuration in)' >&2) | tee "$out"
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" != 0 ]; then
        echo "error: selftest ($1) exited with status $status" >&2
        exit 1
    fi
    if ! tail -n 1 "$out" | tr -d '\r' | grep -E '^[0-9]+ passed, 0 failed$' >/dev/null; then
        echo "error: selftest ($1) did not report success" >&2
        exit 1
    fi
    summary="$summary
  $1: $(tail -n 1 "$out" | tr -d '\r')"
}
summary=""

log "run 1: $(basename "$exe") under $wine_bin, no cimfs.dll (timeout ${timeout_s}s)"
run_selftest selftest-wine

system32="$WINEPREFIX/drive_c/windows/system32"
if [ ! -d "$system32" ]; then
    echo "error: Wine prefix has no $system32" >&2
    exit 1
fi
cp "$build/mock_cimfs.dll" "$system32/cimfs.dll"
log "run 2: with the mock cimfs.dll in the prefix's System32"
CIMFS_SELFTEST_MOCK=1 run_selftest selftest-wine-mock-cimfs

log "Windows cross build passed:$summary"
