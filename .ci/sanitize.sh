#!/usr/bin/env bash
# Sanitizer and fuzzing check, bounded to 10 minutes: builds the core with
# ASan/UBSan and the libFuzzer harnesses (fuzz/) with clang, runs every committed
# seed (fuzz/corpus/) and regression case (tests/should_fail/) through each
# harness once, then fuzzes each harness briefly from those inputs. Any crash,
# sanitizer report, leak, timeout or oversized allocation fails the script (and
# leaves the input in $OUT/artifacts/).
#
#   .ci/sanitize.sh                  # from the repository root or anywhere
#   CIMFS_FUZZ_SECONDS=60            # fuzzing time per harness (default 60)
#   CIMFS_SANITIZE_BUILD=DIR         # build directory (default build/sanitize)
#
# Harnesses and their committed inputs: fuzz_reader (fuzz/corpus/reader and
# tests/should_fail), fuzz_writer_paths (fuzz/corpus/writer), fuzz_layer_import
# (fuzz/corpus/layer). fuzz/<harness>.dict, when present, is the harness's
# libFuzzer dictionary.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=600                                   # seconds for the whole script
FUZZ_SECONDS=${CIMFS_FUZZ_SECONDS:-60}
OUT=${CIMFS_SANITIZE_BUILD:-build/sanitize}
START=$SECONDS
left() {  # seconds of the budget still available (at least 1)
  local l=$((BUDGET - (SECONDS - START)))
  [ "$l" -gt 0 ] && echo "$l" || echo 1
}
step() { echo "== sanitize.sh [$((SECONDS - START))s]: $*"; }

# ---- tools: clang 14 with the libFuzzer/ASan/UBSan runtimes, CMake, OpenSSL headers
CLANGXX=${CLANGXX:-clang++-14}
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  for pkg in clang-14 libclang-rt-14-dev libssl-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
  command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
  if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    timeout "$(left)" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout "$(left)" apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
fi
command -v "$CLANGXX" >/dev/null 2>&1 || { echo "sanitize.sh: $CLANGXX not found" >&2; exit 2; }

# ---- build -----------------------------------------------------------------------
step "building the sanitized core and the fuzzers in $OUT"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
timeout "$(left)" cmake -S . -B "$OUT" "${gen[@]}" -DCMAKE_CXX_COMPILER="$CLANGXX" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCIMFS_SANITIZE=ON -DCIMFS_BUILD_FUZZERS=ON >/dev/null
timeout "$(left)" cmake --build "$OUT" --target fuzz_reader fuzz_writer_paths fuzz_layer_import -j "$(nproc)"

# The harnesses write each input's image files into a scratch directory (tmpfs when
# possible); one that dies on a crash cannot remove its own, so this script does.
CIMFS_FUZZ_TMP=$(mktemp -d /dev/shm/cimfs-sanitize.XXXXXX 2>/dev/null || mktemp -d)
export CIMFS_FUZZ_TMP
trap 'rm -rf "$CIMFS_FUZZ_TMP"' EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ART="$OUT/artifacts"
rm -rf "$ART" "$OUT/corpus-run"
mkdir -p "$ART"
# -malloc_limit_mb: no single allocation may exceed 64 MB; inputs are at most a few
# hundred KB, so anything larger is an allocation the input does not justify.
common=(-timeout=10 -malloc_limit_mb=64 -rss_limit_mb=2048 -print_final_stats=1)

run_harness() {  # name, inputs dir(s)...
  local name=$1; shift
  local bin="$OUT/$name" files=()
  local d
  for d in "$@"; do
    [ -d "$d" ] && while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$d" -name '*.bin' -print0 | sort -z)
  done
  step "$name: each of ${#files[@]} committed inputs once"
  if [ ${#files[@]} -gt 0 ]; then
    timeout "$(left)" "$bin" "${common[@]}" -artifact_prefix="$ART/$name-" "${files[@]}"
  fi
  local budget=$FUZZ_SECONDS
  [ "$budget" -gt $(( $(left) - 30 )) ] && budget=$(( $(left) - 30 ))
  if [ "$budget" -lt 5 ]; then
    echo "sanitize.sh: out of time before fuzzing $name" >&2
    return 1
  fi
  step "$name: fuzzing for ${budget}s"
  local corpus="$OUT/corpus-run/$name" dict=()
  mkdir -p "$corpus"
  [ ${#files[@]} -gt 0 ] && cp "${files[@]}" "$corpus/"
  [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
  timeout $((budget + 60)) "$bin" "${common[@]}" "${dict[@]}" -max_total_time="$budget" -max_len=65536 \
    -artifact_prefix="$ART/$name-" "$corpus" 2>"$OUT/$name.log" || {
    tail -n 60 "$OUT/$name.log" >&2
    echo "sanitize.sh: $name failed; input saved in $ART/" >&2
    return 1
  }
  grep -E '^#[0-9]+ +DONE|^stat::' "$OUT/$name.log" || true
}

run_harness fuzz_reader fuzz/corpus/reader tests/should_fail
run_harness fuzz_writer_paths fuzz/corpus/writer
run_harness fuzz_layer_import fuzz/corpus/layer

step "done: no crash, sanitizer report or timeout"
