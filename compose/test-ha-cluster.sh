#!/usr/bin/env bash
# HA check for a 3-coordinator Cloudless cluster, in the spirit of the original script:
# exactly one node reports `cloudless_coordinator_is_leader 1`; after the leader stops, exactly
# one of the other two takes over; the stopped node restarts and rejoins as a follower.
#
#   compose/test-ha-cluster.sh            docker compose (compose/docker-compose-ha.yml)
#   LOCAL=1 compose/test-ha-cluster.sh    the same checks on local processes on loopback
#                                          (BIN=path to cloudless-coordinator, DATA=dir,
#                                           BASE_PORT=first of 9 consecutive free ports)
# Every wait polls with a deadline instead of sleeping a fixed time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LOCAL=${LOCAL:-0}
services=(coordinator-1 coordinator-2 coordinator-3)

if [[ $LOCAL == 1 ]]; then
  BIN=${BIN:-$here/../build/cloudless-coordinator}
  DATA=${DATA:-$(mktemp -d)}
  BASE_PORT=${BASE_PORT:-19090}
  metrics_ports=($BASE_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2)))
  declare -A pid
  start_node() { # index 0..2
    local i=$1 id=${services[$1]}
    local raft=127.0.0.1:$((BASE_PORT + 3 + i)) http=127.0.0.1:$((BASE_PORT + 6 + i))
    local join=127.0.0.1:$((BASE_PORT + 6)),127.0.0.1:$((BASE_PORT + 7)),127.0.0.1:$((BASE_PORT + 8))
    # The same command shape on every node: re-running any of them is always safe.
    "$BIN" --node-id "$id" --raft-addr "$raft" --http-addr "$http" \
      --metrics-addr 127.0.0.1:${metrics_ports[$i]} --data-dir "$DATA/$id" \
      --join "$join" --bootstrap-expect 3 2>>"$DATA/$id.log" &
    pid[$id]=$!
  }
  stop_node() { kill -TERM "${pid[$1]}"; wait "${pid[$1]}" || true; }
  logs() { cat "$DATA/$1.log"; }
  cleanup() { for id in "${services[@]}"; do kill -KILL "${pid[$id]:-0}" 2>/dev/null || true; done; }
  trap cleanup EXIT
  up() { start_node 0; start_node 1; start_node 2; }
else
  metrics_ports=(9090 9091 9092)
  compose=(docker compose -f "$here/docker-compose-ha.yml")
  up() { "${compose[@]}" up -d --build; }
  stop_node() { "${compose[@]}" stop "$1"; }
  start_node() { "${compose[@]}" start "${services[$1]}"; }
  logs() { "${compose[@]}" logs "$1"; }
fi

is_leader() { curl -s --max-time 2 "http://127.0.0.1:${metrics_ports[$1]}/metrics" | grep -q "^cloudless_coordinator_is_leader 1$"; }
is_follower() { curl -s --max-time 2 "http://127.0.0.1:${metrics_ports[$1]}/metrics" | grep -q "^cloudless_coordinator_is_leader 0$"; }
one_leader_among() { # indexes...
  local n=0
  for i in "$@"; do is_leader "$i" && n=$((n + 1)); done
  [[ $n == 1 ]]
}
wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" && return 0; sleep 0.1; done
  echo "FAIL: timed out waiting for $what" >&2
  return 1
}
leader_index() { for i in 0 1 2; do is_leader "$i" && { echo "$i"; return; }; done; return 1; }
# The leader's index, once a node says it leads (leadership can move between two checks).
current_leader() {
  local l
  for _ in $(seq 1 300); do l=$(leader_index) && { echo "$l"; return 0; }; sleep 0.1; done
  echo "FAIL: timed out waiting for a leader" >&2
  return 1
}

echo "== starting cluster"
up
wait_for "exactly one leader of three" one_leader_among 0 1 2
three_voters_everywhere() {
  for i in 0 1 2; do
    curl -s --max-time 2 "http://127.0.0.1:${metrics_ports[$i]}/metrics" | grep -q "^cloudless_raft_voters 3$" || return 1
  done
}
wait_for "all three nodes to see three voters" three_voters_everywhere
l=$(current_leader)
echo "leader: ${services[$l]}"

echo "== stopping the leader"
stop_node "${services[$l]}"
others=()
for i in 0 1 2; do ((i != l)) && others+=("$i"); done
wait_for "a new leader among the other two" one_leader_among "${others[@]}"
n=$(current_leader)
echo "new leader: ${services[$n]}"

echo "== restarting ${services[$l]}"
start_node "$l"
wait_for "${services[$l]} back as a follower" is_follower "$l"
wait_for "still exactly one leader" one_leader_among 0 1 2
logs "${services[$l]}" | grep -Eiq "raft|follower|joined" || { echo "FAIL: restarted node logs nothing about raft" >&2; exit 1; }
echo "PASS: one leader, failover and rejoin work"
