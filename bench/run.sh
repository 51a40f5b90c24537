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

# Percentage of CPU time idle over the next two seconds.
idle_percent() {
  local -a a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 2
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $((total > 0 ? 100 * idle / total : 100))
}

deadline=$((SECONDS + ${KEEL_BENCH_IDLE_WAIT:-300}))
while :; do
  idle="$(idle_percent)"
  [ "$idle" -ge 90 ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "run.sh: warning: the CPUs are only ${idle}% idle; the figures will be pessimistic" >&2
    break
  fi
done
# Repetitions interleaved at random, so that a disturbance (another process's
# fsyncs, a cold page cache) spreads over all benchmarks instead of one.
exec "$build/bench/log_bench" --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true "$@"
