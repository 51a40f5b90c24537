#!/usr/bin/env bash
# Builds log_bench (release preset) and runs it three times over, on a quiet
# machine, printing the Markdown table of medians that docs/performance.md keeps.
#
#   bench/run.sh [extra log_bench flags]      e.g. --keel_scale=2
#
# KEEL_BENCH_DIR picks the directory the benchmarks write in (default /var/tmp;
# never tmpfs). KEEL_BENCH_BUILD_DIR picks an existing build directory instead of
# building the release preset. A durable append hands work between threads, so
# a busy CPU (a compiler, a test suite) inflates its latency many times over:
# the script waits up to KEEL_BENCH_IDLE_WAIT seconds (default 300) for the CPUs
# to be at least 90% idle over two seconds before it starts, and says so if not.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${KEEL_BENCH_BUILD_DIR:-}"
if [ -z "$build" ]; then
  cmake --preset release >/dev/null
  cmake --build --preset release --target log_bench
  build=build/release
fi

source "$root/bench/wait_idle.sh"
wait_for_idle_cpus run.sh
# Repetitions interleaved at random, so that a disturbance (another process's
# fsyncs, a cold page cache) spreads over all benchmarks instead of one.
exec "$build/bench/log_bench" --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true "$@"
