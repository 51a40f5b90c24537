# Sourced by the bench scripts: wait_for_idle_cpus NAME waits up to
# KEEL_BENCH_IDLE_WAIT seconds (default 300) for the CPUs to be at least 90%
# idle over two seconds, and warns when they never were. A durable append hands
# work between threads and the disk, so a busy machine inflates its figures.

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

wait_for_idle_cpus() {
  local name="$1" idle
  local deadline=$((SECONDS + ${KEEL_BENCH_IDLE_WAIT:-300}))
  while :; do
    idle="$(idle_percent)"
    [ "$idle" -ge 90 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name: warning: the CPUs are only ${idle}% idle; the figures will be pessimistic" >&2
      break
    fi
  done
  echo "$name: CPUs ${idle}% idle, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}
