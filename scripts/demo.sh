#!/usr/bin/env bash
# demo.sh: keel's durability promise (P1, P2) in thirty seconds, with the real binary.
#
#   scripts/demo.sh [BUILD_DIR]        (default build/release)
#
# 1. `keel append --count ... --threads 4 --print-lsn` appends generated
#    records from four threads; it prints each record's LSN only once the
#    record is durable (acknowledged).
# 2. After about 3000 acknowledgements the writer is killed with SIGKILL,
#    mid-stream, with appends and fdatasyncs in flight.
# 3. `keel verify` reads what is on disk (a clean end or a torn tail is fine;
#    corruption is not), opening the log once recovers it (cuts the torn tail),
#    and `keel dump` shows the recovered log.
# 4. Every acknowledged LSN must be in the recovered log, and the log must be a
#    gap-free prefix 1..N. The script exits non-zero if any is lost.
set -euo pipefail
export LC_ALL=C  # sort and comm must agree on the order

BUILD_DIR="${1:-build/release}"
KEEL="$BUILD_DIR/tools/keel"
TARGET_ACKS=3000
WAIT_LIMIT_SECONDS=20

if [[ ! -x "$KEEL" ]]; then
  echo "demo: $KEEL not found; build first (cmake --preset release && cmake --build --preset release)" >&2
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/keel-demo-XXXXXX")"
WRITER_PID=""
cleanup() {
  if [[ -n "$WRITER_PID" ]]; then
    kill -KILL "$WRITER_PID" 2>/dev/null || true
    wait "$WRITER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

LOG="$WORK/log"
ACKED="$WORK/acknowledged.txt"

echo "== 1. appending from 4 threads into $LOG; each LSN is printed once durable"
"$KEEL" append "$LOG" --create --segment-size 1m --count 100000000 --threads 4 --size 128 --print-lsn \
  >"$ACKED" 2>"$WORK/append.err" &
WRITER_PID=$!

deadline=$((SECONDS + WAIT_LIMIT_SECONDS))
while (( $(wc -l <"$ACKED") < TARGET_ACKS )); do
  if ! kill -0 "$WRITER_PID" 2>/dev/null; then
    echo "demo: the writer exited before $TARGET_ACKS acknowledgements:" >&2
    cat "$WORK/append.err" >&2
    exit 1
  fi
  if (( SECONDS >= deadline )); then
    echo "demo: fewer than $TARGET_ACKS acknowledgements after ${WAIT_LIMIT_SECONDS}s" >&2
    exit 1
  fi
  sleep 0.02
done

echo "== 2. kill -9 the writer mid-stream"
kill -KILL "$WRITER_PID"
wait "$WRITER_PID" 2>/dev/null || true
WRITER_PID=""
# Only whole lines count: the kill may have cut the last one short.
complete_lines=$(wc -l <"$ACKED")
head -n "$complete_lines" "$ACKED" | sort -u >"$WORK/acked.sorted"
acknowledged=$(wc -l <"$WORK/acked.sorted")
echo "   the writer acknowledged $acknowledged records before it died"

echo "== 3. verify what is on disk, recover, and look at the result"
echo "-- keel verify (read-only), as the crash left the log:"
"$KEEL" verify "$LOG"
# Opening the log for append (with no input) runs recovery: a torn tail is cut.
echo "-- recovery (open the log, append nothing), then keel verify again:"
"$KEEL" append "$LOG" </dev/null
"$KEEL" verify "$LOG"
echo "-- keel dump --stats (first lines):"
"$KEEL" dump "$LOG" --stats >"$WORK/stats.txt"
head -n 12 "$WORK/stats.txt"
echo "   ..."

echo "== 4. is every acknowledged record still there?"
"$KEEL" dump "$LOG" --json | sed -E 's/^\{"lsn":([0-9]+),.*$/\1/' >"$WORK/present.txt"
records=$(wc -l <"$WORK/present.txt")
highest=$(sort -n "$WORK/present.txt" | tail -n 1)
sort -u "$WORK/present.txt" >"$WORK/present.sorted"
lost=$(comm -23 "$WORK/acked.sorted" "$WORK/present.sorted" | wc -l)
present=$((acknowledged - lost))

echo "   records in the recovered log: $records (LSN 1..${highest:-0}; the extra ones were written but not yet acknowledged)"
echo "acknowledged: $acknowledged, present after recovery: $present, lost: $lost"
if (( lost != 0 )); then
  echo "demo: FAILED: acknowledged records were lost (P1):" >&2
  comm -23 "$WORK/acked.sorted" "$WORK/present.sorted" | head -n 10 >&2
  exit 1
fi
if [[ "$records" != "${highest:-0}" ]]; then
  echo "demo: FAILED: the recovered log is not a gap-free prefix 1..N (P2)" >&2
  exit 1
fi
echo "demo: OK"
