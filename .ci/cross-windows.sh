#!/usr/bin/env bash
# Build the C++ core for 64-bit Windows with Debian's mingw-w64 cross compiler
# and run tools/cimfs_selftest.exe under Wine. Proves that the Win32 sources
# (platform_win32.cpp, sha512_bcrypt.cpp, native/native_win32.cpp) compile and
# that the portable writer/reader work on Windows APIs. Two runs:
#   1. plain Wine: cimfs.dll is absent, so the native backend must fail with a
#      clean "not available" error;
#   2. with tools/mock_cimfs_dll.cpp installed as System32\cimfs.dll in the
#      throwaway prefix: the native backend's dispatch table, structures, HRESULT
#      mapping and mount plumbing are exercised end to end.
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
        wine wine64
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
if command -v x86_64-w64-mingw32-objdump >/dev/null; then
    # Only system DLLs may be imported: libgcc, libstdc++ and winpthread are static.
    imports=$(x86_64-w64-mingw32-objdump -p "$exe" | sed -n 's/^[[:space:]]*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u)
    echo "imports: $(echo $imports)"
    if echo "$imports" | grep -E '^(libgcc|libstdc|libwinpthread)' >/dev/null; then
        echo "error: $exe needs mingw runtime DLLs" >&2
        exit 1
    fi
fi

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
