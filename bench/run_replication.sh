#!/usr/bin/env bash
# Runs replication_bench from an existing build directory, once, on a quiet
# machine, printing the Markdown tables that docs/performance.md keeps
# ("Replication"). It builds nothing: build the replication_bench target first.
#
#   bench/run_replication.sh BUILD_DIR [replication_bench flags]
#   e.g. bench/run_replication.sh build/rbench2 --catchup-mib=128 --reps=1
#
# KEEL_BENCH_DIR picks the directory the nodes write in (default /var/tmp;
# never tmpfs). KEEL_BENCH_CATCHUP_MIB sets the catch-up log size (default 512).
# A synchronous append hands work between threads, two nodes and the disk, so a
# busy CPU inflates its latency many times over: the script waits up to
# KEEL_BENCH_IDLE_WAIT seconds (default 300) for the CPUs to be at least 90%
# idle over two seconds before it starts, and says so if they never are.
set -euo pipefail

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bench/run_replication.sh BUILD_DIR [replication_bench flags]" >&2
  exit 2
fi
build="$1"
shift
binary="$build/bench/replication_bench"
if [ ! -x "$binary" ]; then
  echo "run_replication.sh: $binary not found; build it first: cmake --build $build --target replication_bench" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/bench/wait_idle.sh"
wait_for_idle_cpus run_replication.sh
exec "$binary" "$@"
