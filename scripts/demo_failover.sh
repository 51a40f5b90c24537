#!/usr/bin/env bash
# demo_failover.sh: failover that happens by itself (etcd decides who leads).
#
#   scripts/demo_failover.sh [BUILD_DIR]        (default build/release)
#
# 1. Starts a real etcd on free loopback ports, then three keel-kv nodes with
#    --coordinator and --serve (Redis clients) and --sync-backups 1: no --role,
#    etcd decides; `keel status --coordinator` shows the cluster.
# 2. redis-cli writes keys to the primary (found by asking any member ROLE).
# 3. The primary is killed with SIGKILL. Nobody types a command: within about
#    one lease TTL (2 s here) a backup holding every acknowledged write leads.
# 4. Every acknowledged key is read back from the new primary.
# 5. The old node is restarted with the same command line: it rejoins as a
#    backup by itself and serves the keys written while it was down.
# Exits non-zero if any acknowledged key is missing or a step does not happen.
set -euo pipefail

BUILD_DIR="${1:-build/release}"
KV="$BUILD_DIR/examples/kv/keel-kv"
KEEL="$BUILD_DIR/tools/keel"
for binary in "$KV" "$KEEL" /usr/bin/etcd redis-cli; do
  if ! command -v "$binary" >/dev/null; then
    echo "demo_failover: $binary not found (build first; scripts/deps.sh installs etcd-server and redis-tools)" >&2
    exit 2
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/keel-failover-XXXXXX")"
declare -A PIDS=()
ETCD_PID=""
cleanup() {
  for pid in "${PIDS[@]}" $ETCD_PID; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {  # a loopback port nobody listens on now
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "demo_failover: no free port" >&2
  exit 2
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.1 s
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "demo_failover: $what did not happen within ${limit} s" >&2; exit 1; fi
    sleep 0.1
  done
}

ETCD_CLIENT=$(free_port)
ETCD_PEER=$(free_port)
ETCD_URL="http://127.0.0.1:$ETCD_CLIENT"
echo "== 1. etcd on $ETCD_URL, three keel-kv nodes coordinated by it"
/usr/bin/etcd --name demo --data-dir "$WORK/etcd" --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "demo=http://127.0.0.1:$ETCD_PEER" --heartbeat-interval 50 --election-timeout 500 \
  >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
wait_for 30 "etcd answering" "$KEEL" status --coordinator "$ETCD_URL" --cluster demo

declare -A SERVE=()
start_node() {  # start_node ID: the same command line every time
  local id=$1
  "$KV" "$WORK/node$id" --create --cluster demo --node-id "$id" --listen "127.0.0.1:${LISTEN[$id]}" \
    --serve "127.0.0.1:${SERVE[$id]}" --coordinator "$ETCD_URL" --sync-backups 1 --lease-ttl 2 \
    </dev/null >>"$WORK/node$id.log" 2>&1 &
  PIDS[$id]=$!
}
declare -A LISTEN=()
for id in 1 2 3; do
  LISTEN[$id]=$(free_port)
  SERVE[$id]=$(free_port)
  start_node "$id"
done

leader_id() {  # the node whose ROLE says master, or nothing
  for id in "${!PIDS[@]}"; do
    if [[ "$(redis-cli -p "${SERVE[$id]}" ROLE 2>/dev/null | head -1)" == master ]]; then echo "$id"; return 0; fi
  done
  return 1
}
wait_for 30 "a leader" leader_id
LEADER=$(leader_id)
"$KEEL" status --coordinator "$ETCD_URL" --cluster demo

echo "== 2. redis-cli writes 200 keys to the primary, node $LEADER"
ACKED=0
for i in $(seq 1 200); do
  for _ in $(seq 1 100); do  # the first writes wait for a backup to join the synchronous set
    if [[ "$(redis-cli -p "${SERVE[$LEADER]}" SET "key$i" "value$i")" == OK ]]; then ACKED=$((ACKED + 1)); break; fi
    sleep 0.1
  done
done
echo "acknowledged: $ACKED of 200"
[[ $ACKED -eq 200 ]] || { echo "demo_failover: writes were not acknowledged" >&2; exit 1; }

echo "== 3. SIGKILL the primary (node $LEADER); no command is typed after this"
KILLED_AT=$(date +%s.%N)
kill -KILL "${PIDS[$LEADER]}"
wait "${PIDS[$LEADER]}" 2>/dev/null || true
OLD=$LEADER
unset "PIDS[$OLD]"
wait_for 30 "a new leader" leader_id
NEW=$(leader_id)
until [[ "$(redis-cli -p "${SERVE[$NEW]}" SET after-failover yes 2>/dev/null)" == OK ]]; do sleep 0.05; done
echo "node $NEW leads and acknowledged a write $(awk -v a="$KILLED_AT" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after the kill"
"$KEEL" status --coordinator "$ETCD_URL" --cluster demo

echo "== 4. every acknowledged key on the new primary"
MISSING=0
for i in $(seq 1 200); do
  [[ "$(redis-cli -p "${SERVE[$NEW]}" GET "key$i")" == "value$i" ]] || MISSING=$((MISSING + 1))
done
echo "missing: $MISSING"
[[ $MISSING -eq 0 ]] || { echo "demo_failover: acknowledged keys were lost" >&2; exit 1; }

echo "== 5. node $OLD restarted with the same command line rejoins by itself"
start_node "$OLD"
rejoined() { [[ "$(redis-cli -p "${SERVE[$OLD]}" GET after-failover 2>/dev/null)" == yes ]]; }
wait_for 30 "node $OLD serving the write made while it was down" rejoined
shown_as_backup() { "$KEEL" status --coordinator "$ETCD_URL" --cluster demo | grep -q "^member $OLD backup"; }
wait_for 10 "etcd showing node $OLD as a backup" shown_as_backup
redis-cli -p "${SERVE[$OLD]}" ROLE | head -3 | tr '\n' ' '
echo
"$KEEL" status --coordinator "$ETCD_URL" --cluster demo
echo "demo_failover: OK"
