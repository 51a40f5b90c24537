#!/usr/bin/env bash
# demo_kv.sh: a key-value store on keel survives kill -9 (P1, P2, P6), in under thirty seconds.
#
#   scripts/demo_kv.sh [BUILD_DIR]        (default build/release)
#
# 1. keel-kv starts on a fresh directory with a small checkpoint threshold and
#    a stream of `put k<i> value-<i>-...` lines on stdin. It prints `OK <lsn>`
#    for a put only once that put is durable: the i-th OK acknowledges put i.
# 2. After a few thousand acknowledgements, with checkpoints taken in the
#    background meanwhile, keel-kv is killed with SIGKILL mid-stream.
# 3. A fresh keel-kv recovers the directory: it restores the newest checkpoint,
#    replays the log after it, and prints its recovery report.
# 4. It is asked for every acknowledged key; each must hold exactly the value
#    acknowledged. The script exits non-zero if any is lost.
# 5. With redis-cli installed (redis-tools), the same store serves Redis
#    clients (keel-kv --serve): redis-cli reads an acknowledged key back and
#    writes one more.
set -euo pipefail
export LC_ALL=C

BUILD_DIR="${1:-build/release}"
KV="$BUILD_DIR/examples/kv/keel-kv"
TARGET_ACKS=4000
WAIT_LIMIT_SECONDS=20
STORE_FLAGS=(--checkpoint-bytes 64k --segment-size 256k)

if [[ ! -x "$KV" ]]; then
  echo "demo_kv: $KV not found; build first (cmake --preset release && cmake --build --preset release)" >&2
  exit 2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/keel-demo-kv-XXXXXX")"
KV_PID=""
cleanup() {
  if [[ -n "$KV_PID" ]]; then
    kill -KILL "$KV_PID" 2>/dev/null || true
    wait "$KV_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

STORE="$WORK/store"
REPLIES="$WORK/replies.txt"
# put i carries value-<i>- and a little padding, so checkpoints have something to compress.
value_sed='s/.*/put k& value-&-ppppppppppppppppppppppppppppppppppppppppppppppppp/'

echo "== 1. keel-kv $STORE --create ${STORE_FLAGS[*]}, streaming puts; OK <lsn> = durable"
mkfifo "$WORK/puts"
: >"$REPLIES"
# The generator runs ahead of keel-kv; it dies of SIGPIPE once keel-kv is gone.
(seq 1 100000000 | sed "$value_sed" >"$WORK/puts" 2>/dev/null || true) &
"$KV" "$STORE" --create "${STORE_FLAGS[@]}" <"$WORK/puts" >"$REPLIES" 2>"$WORK/first.err" &
KV_PID=$!

deadline=$((SECONDS + WAIT_LIMIT_SECONDS))
while (( $(wc -l <"$REPLIES") < TARGET_ACKS )); do
  if ! kill -0 "$KV_PID" 2>/dev/null; then
    echo "demo_kv: keel-kv exited before $TARGET_ACKS acknowledgements:" >&2
    cat "$WORK/first.err" >&2
    exit 1
  fi
  if (( SECONDS >= deadline )); then
    echo "demo_kv: fewer than $TARGET_ACKS acknowledgements after ${WAIT_LIMIT_SECONDS}s" >&2
    exit 1
  fi
  sleep 0.02
done

echo "== 2. kill -9 keel-kv mid-stream"
kill -KILL "$KV_PID"
wait "$KV_PID" 2>/dev/null || true
KV_PID=""
wait 2>/dev/null || true  # the generator
# Only whole lines count: the kill may have cut the last one short. Every
# reply must be an OK: the i-th acknowledges put i.
acknowledged=$(wc -l <"$REPLIES")
if head -n "$acknowledged" "$REPLIES" | grep -qv '^OK [0-9][0-9]*$'; then
  echo "demo_kv: keel-kv replied something other than OK:" >&2
  head -n "$acknowledged" "$REPLIES" | grep -v '^OK [0-9][0-9]*$' | head -n 5 >&2
  exit 1
fi
checkpoints=$(find "$STORE/checkpoints" -name '*.ckpt' | wc -l)
echo "   keel-kv acknowledged $acknowledged puts; $checkpoints checkpoint file(s) on disk:"
ls -l "$STORE/checkpoints" | sed 's/^/     /'

echo "== 3. restart keel-kv: recovery report"
{
  seq 1 "$acknowledged" | sed 's/.*/get k&/'
  echo stats
  echo quit
} >"$WORK/gets.txt"
"$KV" "$STORE" "${STORE_FLAGS[@]}" <"$WORK/gets.txt" >"$WORK/got.txt" 2>"$WORK/second.err" || {
  echo "demo_kv: recovery failed:" >&2
  cat "$WORK/second.err" >&2
  exit 1
}
sed 's/^/   /' "$WORK/second.err"
echo "   $(tail -n 1 "$WORK/got.txt")"

echo "== 4. get every acknowledged key"
seq 1 "$acknowledged" | sed "$value_sed" | sed 's/^put k[0-9]* //' >"$WORK/expected.txt"
head -n "$acknowledged" "$WORK/got.txt" >"$WORK/present.txt"
# Line i of each file is key k<i>: expected value, recovered value.
lost=$(paste -d '\n' "$WORK/expected.txt" "$WORK/present.txt" | awk 'NR % 2 == 1 { want = $0; next } $0 != want { n++ } END { print n + 0 }')
present=$((acknowledged - lost))
echo "acknowledged: $acknowledged, present after recovery: $present, lost: $lost"
if (( lost != 0 )); then
  echo "demo_kv: FAILED: acknowledged puts were lost or changed (P1):" >&2
  paste "$WORK/expected.txt" "$WORK/present.txt" | awk -F '\t' '$1 != $2' | head -n 10 >&2
  exit 1
fi
echo "== 5. the same store serves Redis clients: keel-kv --serve 127.0.0.1:0"
if command -v redis-cli >/dev/null 2>&1; then
  "$KV" "$STORE" "${STORE_FLAGS[@]}" --serve 127.0.0.1:0 </dev/null 2>"$WORK/serve.err" &
  KV_PID=$!
  port=""
  for _ in $(seq 1 1000); do
    port=$(sed -n 's/^keel-kv: serving Redis clients on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/serve.err")
    [[ -n "$port" ]] && break
    kill -0 "$KV_PID" 2>/dev/null || break
    sleep 0.02
  done
  if [[ -z "$port" ]]; then
    echo "demo_kv: keel-kv --serve did not start:" >&2
    cat "$WORK/serve.err" >&2
    exit 1
  fi
  echo "   \$ redis-cli -p $port GET k1"
  echo "   $(redis-cli -p "$port" GET k1)"
  echo "   \$ redis-cli -p $port SET greeting hello"
  echo "   $(redis-cli -p "$port" SET greeting hello)"
  echo "   \$ redis-cli -p $port DBSIZE"
  echo "   $(redis-cli -p "$port" DBSIZE)"
  kill -TERM "$KV_PID"
  wait "$KV_PID"
  KV_PID=""
else
  echo "   (skipped: redis-cli is not installed; scripts/deps.sh installs redis-tools)"
fi
echo "demo_kv: OK"
