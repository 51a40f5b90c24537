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
    echo "run_recovery.sh: warning: the CPUs are only ${idle}% idle; the figures will be pessimistic" >&2
    break
  fi
done
echo "run_recovery.sh: CPUs ${idle}% idle, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$build/bench/recovery_bench" "$@"
