#!/usr/bin/env bash
# ThreadSanitizer over the core's threads (background SHA-512 workers, the
# importer's read callbacks): builds the extension with -fsanitize=thread into
# its own virtual environment and runs the tests that write images with
# duplicates, large and small files, forks and layer imports. Any data race
# report fails the script.
#
#   .ci/tsan.sh            # from the repository root or anywhere
set -euo pipefail
cd "$(dirname "$0")/.."

# The ThreadSanitizer runtime (Debian's libtsan2; g++ normally brings it).
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && ! dpkg -s libtsan2 >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libtsan2
fi

VENV=.venv-tsan
BUILD=${CIMFS_TSAN_BUILD:-build/tsan}
rm -rf "$VENV"
python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" pytest hypothesis numpy zstandard isal
python -m pip install -q --no-build-isolation . -C build-dir="$BUILD" -C cmake.build-type=RelWithDebInfo \
  -C cmake.define.CMAKE_CXX_FLAGS="-fsanitize=thread -g -O1" \
  -C cmake.define.CMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread"

LIBTSAN=$(g++ -print-file-name=libtsan.so)
[ -f "$LIBTSAN" ] || { echo "tsan.sh: libtsan.so not found (install libtsan2)" >&2; exit 2; }
LOG=$(mktemp)
# The interpreter itself is not instrumented: libtsan is preloaded so that the
# extension's threads are checked; reports go to the log and fail the run.
TSAN_OPTIONS="halt_on_error=0 report_signal_unsafe=0 log_path=$LOG.report" LD_PRELOAD="$LIBTSAN" \
  python -m pytest -q -p no:cacheprovider tests/test_dedup_determinism.py tests/test_layer_import.py \
  tests/test_chains.py tests/test_buffers.py | tee "$LOG"
deactivate
if ls "$LOG".report.* >/dev/null 2>&1; then
  cat "$LOG".report.*
  echo "tsan.sh: ThreadSanitizer reported data races (above)" >&2
  exit 1
fi
echo "tsan.sh: no data race reported"
