#!/usr/bin/env bash
# The whole test suite, as CI runs it: every GoogleTest suite under the release
# build (CLI, install/consumer, process and crash-campaign tests included), again
# under AddressSanitizer+UBSan and ThreadSanitizer, the crash harness against
# each planted bug, then each libFuzzer target for a bounded time. Exits
# non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds="${KEEL_FUZZ_SECONDS:-30}"
jobs="$(nproc)"

scripts/deps.sh

step() { printf '\n==== %s ====\n' "$*"; }

step "release: build and test"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

step "asan+ubsan: build and test"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --preset asan -j "$jobs"

step "tsan: build and test"
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$jobs"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --preset tsan -j "$jobs"

step "planted bugs: the crash harness must catch each one"
# A separate build with the planted bugs compiled in (they never are in the
# presets above): crash_planted_test fails unless every planted bug is caught.
cmake -S . -B build/planted -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_PLANTED_BUGS=ON \
  -DKEEL_BUILD_BENCH=OFF -DKEEL_WERROR=ON >/dev/null
cmake --build build/planted --target crash_planted_test -j "$jobs"
build/planted/tests/crash_planted_test

step "fuzz: ${fuzz_seconds}s per target"
scripts/fuzz.sh "$fuzz_seconds"

step "all suites passed"
