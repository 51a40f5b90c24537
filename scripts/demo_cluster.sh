#!/usr/bin/env bash
# demo_cluster.sh: failover with nothing acknowledged lost (P7), in under thirty seconds.
#
#   scripts/demo_cluster.sh [BUILD_DIR]        (default build/release)
#
# 1. Three keel-kv replication nodes on loopback, each in its own directory,
#    sharing a secret file of mode 600 (--secret-file):
#    a primary (node 1) acknowledging a put only once it is durable on itself
#    AND on at least one backup (--sync-backups 1 --ack durable), and two
#    backups (nodes 2 and 3). Ports are picked by the kernel (--listen :0) and
#    read back from each node's "listening on" line.
# 2. A stream of `put k<i> value-<i>-...` lines flows into the primary; every
#    `OK <lsn>` reply is recorded: the i-th OK acknowledges put i.
# 3. The primary is killed with SIGKILL mid-stream, with writes in flight.
# 4. `keel status` on both backups; the one with the highest last_lsn is made
#    the primary with `keel promote` (a new epoch, which fences the old one).
# 5. Every acknowledged key must be on the new primary with its value.
# 6. The old primary's directory restarts as a backup of the new primary: any
#    divergent tail (records it wrote but nobody acknowledged) is cut into
#    DIR/quarantine, and it streams. The other backup is re-pointed too.
# 7. More puts on the new primary are acknowledged and reach both backups.
# The script exits non-zero if any check fails.
set -euo pipefail
export LC_ALL=C

BUILD_DIR="${1:-build/release}"
KV="$BUILD_DIR/examples/kv/keel-kv"
KEEL="$BUILD_DIR/tools/keel"
TARGET_ACKS=3000
WAIT_LIMIT_SECONDS=15
NODE_FLAGS=(--segment-size 4m --sync-backups 1 --ack durable)
PAD=pppppppppppppppppppppppppppppppppppppppppppppppppp

for binary in "$KV" "$KEEL"; do
  if [[ ! -x "$binary" ]]; then
    echo "demo_cluster: $binary not found; build first (cmake --preset release && cmake --build --preset release)" >&2
    exit 2
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/keel-demo-cluster-XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The cluster's shared secret, private to its owner: nodes and tools refuse a
# secret file that group or others can read.
SECRET="$WORK/secret"
(umask 077 && head -c 32 /dev/urandom | base64 >"$SECRET")
chmod 600 "$SECRET"
NODE_FLAGS+=(--secret-file "$SECRET")

fail() {
  echo "demo_cluster: FAILED: $*" >&2
  exit 1
}

# Waits for a node's "keel-kv: listening on HOST:PORT" line; prints HOST:PORT.
wait_listening() {
  local err="$1" pid="$2" deadline=$((SECONDS + WAIT_LIMIT_SECONDS)) address
  for (( ; ; )); do
    address=$(sed -n 's/^keel-kv: listening on //p' "$err" 2>/dev/null | head -n 1)
    if [[ -n "$address" ]]; then
      echo "$address"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$err" >&2
      fail "a node exited before it listened (stderr above)"
    fi
    (( SECONDS < deadline )) || fail "no 'listening on' line in $err after ${WAIT_LIMIT_SECONDS}s"
    sleep 0.02
  done
}

# start_node NAME DIR ARGS...: keel-kv --role ... on DIR, its stdin a fifo this
# script keeps open (IN_FD[NAME]); stdout in $WORK/NAME.out, stderr in
# $WORK/NAME.err. Sets PID[NAME] and ADDR[NAME].
declare -A IN_FD PID ADDR
start_node() {
  local name="$1" dir="$2" fd
  shift 2
  mkfifo "$WORK/$name.in"
  exec {fd}<>"$WORK/$name.in"  # read-write: never blocks, and the node never sees EOF
  IN_FD[$name]=$fd
  : >"$WORK/$name.err"  # exists before wait_listening reads it
  "$KV" "$dir" --create "${NODE_FLAGS[@]}" --listen 127.0.0.1:0 "$@" \
    <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PID[$name]=$!
  PIDS+=("$!")
  ADDR[$name]=$(wait_listening "$WORK/$name.err" "${PID[$name]}")
}

# Sends one command line to a node's stdin.
send() { printf '%s\n' "$2" >&"${IN_FD[$1]}"; }

# Forgets a process that has been waited for (so cleanup never signals a reused pid).
forget_pid() {
  local kept=() pid
  for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
  PIDS=("${kept[@]}")
}

# Stops a node with `quit` and waits for it.
stop_node() {
  local status=0
  send "$1" quit
  wait "${PID[$1]}" || status=$?
  forget_pid "${PID[$1]}"
  (( status == 0 )) || fail "node $1 exited with status $status on quit; its stderr: $(tail -n 5 "$WORK/$1.err")"
}

# status_field ADDRESS KEY: the value of one line of `keel status` (empty if it fails).
status_field() { { "$KEEL" status --secret-file "$SECRET" "$1" 2>/dev/null || true; } | awk -v key="$2" '$1 == key { print $2; exit }'; }

# lsn_is ADDRESS KEY LSN: whether that status line shows LSN.
lsn_is() { [[ "$(status_field "$1" "$2")" == "$3" ]]; }

# lost_primary BACKUP: whether the backup has seen its primary's connection end
# (so nothing more arrives and its last_lsn holds still).
lost_primary() { local state; state=$(status_field "$1" primary); [[ -n "$state" && "$state" != streaming ]]; }

# streams PRIMARY NODE_ID: whether the primary shows that backup streaming.
streams() { [[ "$(backup_line "$1" "$2")" == *" state=streaming "* ]]; }

# The `backup node_id=N ...` line of a primary's status for node N.
backup_line() { { "$KEEL" status --secret-file "$SECRET" "$1" 2>/dev/null || true; } | grep "^backup node_id=$2 " || true; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_until() {
  local limit="$1" what="$2" deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@"; do
    (( SECONDS < deadline )) || fail "$what (waited ${limit}s)"
    sleep 0.05
  done
}

echo "== 1. a primary and two backups on loopback (sync: a put is acknowledged once durable on 1 backup)"
# put i carries value-<i>- and padding; the generator dies of SIGPIPE once the primary is gone.
: >"$WORK/n1.err"
seq 1 1000000000 | sed "s/.*/put k& value-&-$PAD/" |
  "$KV" "$WORK/n1" --create "${NODE_FLAGS[@]}" --role primary --listen 127.0.0.1:0 --node-id 1 \
    >"$WORK/n1.out" 2>"$WORK/n1.err" &
PID[n1]=$!
PIDS+=("$!")
ADDR[n1]=$(wait_listening "$WORK/n1.err" "${PID[n1]}")
echo "   node 1  primary  ${ADDR[n1]}  dir $WORK/n1"
start_node n2 "$WORK/n2" --role backup --primary "${ADDR[n1]}" --node-id 2
echo "   node 2  backup   ${ADDR[n2]}  dir $WORK/n2"
start_node n3 "$WORK/n3" --role backup --primary "${ADDR[n1]}" --node-id 3
echo "   node 3  backup   ${ADDR[n3]}  dir $WORK/n3"

echo "== 2. streaming puts into the primary; OK <lsn> = durable on the primary and on a backup"
deadline=$((SECONDS + WAIT_LIMIT_SECONDS))
while (( $(wc -l <"$WORK/n1.out") < TARGET_ACKS )); do
  if ! kill -0 "${PID[n1]}" 2>/dev/null; then
    cat "$WORK/n1.err" >&2
    fail "the primary exited before $TARGET_ACKS acknowledgements"
  fi
  (( SECONDS < deadline )) || fail "fewer than $TARGET_ACKS acknowledgements after ${WAIT_LIMIT_SECONDS}s"
  sleep 0.01
done
echo "   $(wc -l <"$WORK/n1.out") acknowledged so far; the primary's view:"
"$KEEL" status --secret-file "$SECRET" "${ADDR[n1]}" | grep -E '^(role|epoch|last_lsn|committed_lsn|backup) ' | sed 's/^/     /'

echo "== 3. kill -9 the primary mid-stream"
kill -KILL "${PID[n1]}"
wait "${PID[n1]}" 2>/dev/null || true
forget_pid "${PID[n1]}"
# Only whole lines count: the kill may have cut the last one short.
acknowledged=$(wc -l <"$WORK/n1.out")
head -n "$acknowledged" "$WORK/n1.out" >"$WORK/acked.txt"
if grep -qv '^OK [0-9][0-9]*$' "$WORK/acked.txt"; then
  grep -v '^OK [0-9][0-9]*$' "$WORK/acked.txt" | head -n 5 >&2
  fail "the primary replied something other than OK (above)"
fi
last_acked_lsn=$(tail -n 1 "$WORK/acked.txt" | cut -d ' ' -f 2)
echo "   the primary acknowledged $acknowledged puts (k1..k$acknowledged, last LSN $last_acked_lsn) before it died"

echo "== 4. keel status on both backups; promote the one with the highest last_lsn"
best=""
best_lsn=-1
for name in n2 n3; do
  wait_until 10 "node ${name#n} still streams from the dead primary" lost_primary "${ADDR[$name]}"
  lsn=$(status_field "${ADDR[$name]}" last_lsn)
  [[ -n "$lsn" ]] || fail "keel status ${ADDR[$name]} gave no last_lsn"
  echo "   ${name#n}: node at ${ADDR[$name]}: last_lsn $lsn, durable_lsn $(status_field "${ADDR[$name]}" durable_lsn)"
  if (( lsn > best_lsn )); then
    best=$name
    best_lsn=$lsn
  fi
done
other=$([[ $best == n2 ]] && echo n3 || echo n2)
(( best_lsn >= last_acked_lsn )) || fail "no backup holds the last acknowledged LSN $last_acked_lsn (best: $best_lsn)"
NEW="${ADDR[$best]}"
echo "   \$ keel promote $NEW"
"$KEEL" promote --secret-file "$SECRET" "$NEW" | sed 's/^/     /'
[[ $(status_field "$NEW" role) == primary ]] || fail "node ${best#n} is not the primary after keel promote"
echo "   node ${best#n} is the primary now: epoch $(status_field "$NEW" epoch), history $("$KEEL" status --secret-file "$SECRET" "$NEW" |
  awk '$1 == "epoch_history" { $1 = ""; print substr($0, 2) }')"

echo "== 5. is every acknowledged key on the new primary, with its value?"
send "$best" "scan k 1000000"
wait_until 10 "the new primary did not answer scan" grep -q '^END$' "$WORK/$best.out"
read -r present wrong extra < <(awk -v n="$acknowledged" -v pad="$PAD" '
  $0 == "END" { exit }
  {
    i = substr($1, 2) + 0
    if (substr($0, length($1) + 2) != "value-" i "-" pad) wrong++
    else if (i <= n) present++
    else extra++
  }
  END { print present + 0, wrong + 0, extra + 0 }' "$WORK/$best.out")
lost=$((acknowledged - present))
echo "   acknowledged: $acknowledged, present on the new primary: $present, lost: $lost"
echo "   (and $extra more puts that were replicated but never acknowledged; $wrong wrong values)"
(( lost == 0 )) || fail "$lost acknowledged puts are missing from the new primary (P7)"
(( wrong == 0 )) || fail "$wrong keys hold a value that was never written"

echo "== 6. the old primary rejoins as a backup of the new one"
old_last=$("$KEEL" info "$WORK/n1" | awk -F': *' '$1 == "last LSN" { print $2 }')
echo "   its log (keel info, read-only) reaches LSN $old_last: $((old_last - last_acked_lsn)) records past the last acknowledged one"
start_node n1b "$WORK/n1" --role backup --primary "$NEW" --node-id 1
echo "   \$ keel-kv $WORK/n1 --role backup --primary $NEW --node-id 1"
wait_until 10 "the old primary does not stream from the new primary" streams "$NEW" 1
new_last=$(status_field "$NEW" last_lsn)
wait_until 10 "the old primary did not catch up with LSN $new_last" lsn_is "${ADDR[n1b]}" last_lsn "$new_last"
cut_line=$(grep 'into quarantine' "$WORK/n1b.err" | head -n 1 | sed 's/^keel node [0-9]*: //' || true)
if [[ -n "$cut_line" ]]; then
  echo "   it had a divergent tail (written, never acknowledged, never replicated): ${cut_line}"
  echo "   $WORK/n1/quarantine holds it:"
  ls -l "$WORK/n1/quarantine" | tail -n +2 | sed 's/^/     /'
else
  echo "   its log was a prefix of the new primary's: nothing to cut"
fi
echo "   the new primary sees it: $(backup_line "$NEW" 1 | cut -d ' ' -f 2-4)"
echo "   re-pointing node ${other#n} (restart it with --primary $NEW)"
stop_node "$other"
start_node "${other}b" "$WORK/$other" --role backup --primary "$NEW" --node-id "${other#n}"
wait_until 10 "node ${other#n} does not stream from the new primary" streams "$NEW" "${other#n}"
echo "   the new primary sees it: $(backup_line "$NEW" "${other#n}" | cut -d ' ' -f 2-4)"

echo "== 7. the new cluster takes writes: 100 more puts on node ${best#n}"
oks_before=$(grep -c '^OK ' "$WORK/$best.out" || true)
for i in $(seq 1 100); do send "$best" "put after$i value-after-$i"; done
acked_after() { (( $(grep -c '^OK ' "$WORK/$best.out" || true) >= oks_before + 100 )); }
wait_until 10 "the new primary did not acknowledge 100 more puts" acked_after
new_last=$(status_field "$NEW" last_lsn)
for name in n1b "${other}b"; do
  wait_until 10 "node ${name:1:1} did not reach LSN $new_last" lsn_is "${ADDR[$name]}" durable_lsn "$new_last"
  send "$name" "get after100"
done
serve_it() { [[ "$(tail -n 1 "$WORK/n1b.out")" == value-after-100 && "$(tail -n 1 "$WORK/${other}b.out")" == value-after-100 ]]; }
wait_until 5 "the backups do not serve the new write" serve_it
echo "   acknowledged; both backups are durable through LSN $new_last and serve reads of it:"
"$KEEL" status --secret-file "$SECRET" "$NEW" | grep -E '^(role|epoch|last_lsn|committed_lsn|backup) ' |
  sed -E 's/ (lag_bytes|lag_seconds|last_heartbeat_s)=[^ ]*//g; s/^/     /'
for name in "$best" n1b "${other}b"; do stop_node "$name"; done

echo "acknowledged: $acknowledged, present after failover: $present, lost: $lost"
echo "demo_cluster: OK"
