#!/usr/bin/env bash
# Builds recovery_bench in its own build directory and runs it once on a quiet
# machine, printing the Markdown tables that docs/performance.md keeps
# ("Recovery and checkpoints").
#
#   bench/run_recovery.sh [recovery_bench flags]     e.g. --scale=2 (a 1 GiB log)
#
# KEEL_BENCH_DIR picks the directory it writes in (default /var/tmp; never
# tmpfs). KEEL_BENCH_BUILD_DIR picks the build directory (default build/rbench).
# Cold figures drop the page cache, which needs root. Replay is CPU-bound when
# the log is cached, so a busy CPU lowers every figure: the script waits up to
# KEEL_BENCH_IDLE_WAIT seconds (default 300) for the CPUs to be at least 90%
# idle over two seconds, and says so if they never are.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${KEEL_BENCH_BUILD_DIR:-build/rbench}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_BUILD_TESTS=OFF -DKEEL_WERROR=ON >/dev/null
fi
cmake --build "$build" --target recovery_bench

source "$root/bench/wait_idle.sh"
wait_for_idle_cpus run_recovery.sh
exec "$build/bench/recovery_bench" "$@"
