#!/usr/bin/env bash
# HA check for a 3-coordinator Cloudless cluster with 3 agents, in the spirit of the original
# script: exactly one node reports `cloudless_coordinator_is_leader 1`; three agents (two
# zones) enroll and heartbeat, and a 3-replica workload runs on them; after the leader stops,
# exactly one of the other two takes over while every agent keeps heartbeating and no replica
# restarts; the stopped node restarts and rejoins as a follower; the agents' logs show their
# enrollment and heartbeats.
#
#   compose/test-ha-cluster.sh            docker compose (compose/docker-compose-ha.yml)
#   LOCAL=1 compose/test-ha-cluster.sh    the same checks on local processes on loopback
#                                          (BIN=path to cloudless-coordinator,
#                                           AGENT_BIN=path to cloudless-agent (default: next
#                                           to BIN), DATA=dir, BASE_PORT=first of 12
#                                           consecutive free ports)
# Every wait polls with a deadline instead of sleeping a fixed time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LOCAL=${LOCAL:-0}
services=(coordinator-1 coordinator-2 coordinator-3)
agents=(agent-1 agent-2 agent-3)
zones=(zone-a zone-b zone-a)

if [[ $LOCAL == 1 ]]; then
  BIN=${BIN:-$here/../build/cloudless-coordinator}
  AGENT_BIN=${AGENT_BIN:-$(dirname "$BIN")/cloudless-agent}
  DATA=${DATA:-$(mktemp -d)}
  BASE_PORT=${BASE_PORT:-19090}
  metrics_ports=($BASE_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2)))
  agent_ports=($((BASE_PORT + 9)) $((BASE_PORT + 10)) $((BASE_PORT + 11)))
  api_ports=($((BASE_PORT + 6)) $((BASE_PORT + 7)) $((BASE_PORT + 8)))
  join=127.0.0.1:$((BASE_PORT + 6)),127.0.0.1:$((BASE_PORT + 7)),127.0.0.1:$((BASE_PORT + 8))
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
  start_agent() { # index 0..2
    local id=${agents[$1]}
    "$AGENT_BIN" --node-id "$id" --zone "${zones[$1]}" --coordinators "$join" \
      --data-dir "$DATA/$id" --metrics-addr 127.0.0.1:${agent_ports[$1]} \
      --stop-replicas-on-exit 2>>"$DATA/$id.log" &
    pid[$id]=$!
  }
  cleanup() {
    # Agents first: with --stop-replicas-on-exit they stop their replicas before exiting.
    for id in "${agents[@]}"; do kill -TERM "${pid[$id]:-0}" 2>/dev/null || true; done
    for id in "${agents[@]}"; do [[ -n ${pid[$id]:-} ]] && wait "${pid[$id]}" 2>/dev/null || true; done
    for id in "${services[@]}"; do kill -KILL "${pid[$id]:-0}" 2>/dev/null || true; done
  }
  trap cleanup EXIT
  up() { start_node 0; start_node 1; start_node 2; }
  agents_up() { start_agent 0; start_agent 1; start_agent 2; }
else
  metrics_ports=(9090 9091 9092)
  agent_ports=(9101 9102 9103)
  api_ports=(8080 8082 8084)
  compose=(docker compose -f "$here/docker-compose-ha.yml")
  up() { "${compose[@]}" up -d --build; }
  agents_up() { :; } # compose starts them with the coordinators
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

api=127.0.0.1:${api_ports[0]}
agent_metrics() { curl -s --max-time 2 "http://127.0.0.1:${agent_ports[$1]}/metrics"; }
agents_connected() {
  for i in 0 1 2; do agent_metrics "$i" | grep -q "^cloudless_agent_connected 1$" || return 1; done
  [[ $(curl -s --max-time 2 "http://$api/v1/agents?stale" | grep -o '"state":"ready"' | wc -l) == 3 ]]
}
agent_sum() { # metric sample, summed over the three agents
  local sum=0 v
  for i in 0 1 2; do
    v=$(agent_metrics "$i" | awk -v m="$1" '$1 == m { print $2 }')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
replicas_running() {
  [[ $(agent_sum 'cloudless_agent_replicas{state="running"}') == 3 ]] &&
    curl -s --max-time 2 "http://$api/v1/workloads/default/ha-check?stale" | grep -q '"running":3'
}

echo "== agents"
agents_up
wait_for "three agents enrolled and heartbeating" agents_connected
# PUT creates or replaces: re-running the script against the same cluster is fine.
curl -sf --max-time 5 -X PUT "http://$api/v1/workloads/default/ha-check" -d \
  '{"replicas":3,"command":["sh","-c","echo up $CLOUDLESS_REPLICA_ID; exec sleep 86400"],"kill_timeout_ms":1000}' >/dev/null
wait_for "three replicas running on the agents" replicas_running
restarts=$(agent_sum cloudless_agent_replica_restarts_total)
echo "agents: ${agents[*]} enrolled; 3 replicas running"

echo "== stopping the leader"
stop_node "${services[$l]}"
others=()
for i in 0 1 2; do ((i != l)) && others+=("$i"); done
wait_for "a new leader among the other two" one_leader_among "${others[@]}"
n=$(current_leader)
echo "new leader: ${services[$n]}"
api=127.0.0.1:${api_ports[${others[0]}]}
wait_for "every agent heartbeating again after the failover" agents_connected
wait_for "the three replicas still running" replicas_running
[[ $(agent_sum cloudless_agent_replica_restarts_total) == "$restarts" ]] || { echo "FAIL: replicas restarted during the failover" >&2; exit 1; }

echo "== restarting ${services[$l]}"
start_node "$l"
wait_for "${services[$l]} back as a follower" is_follower "$l"
wait_for "still exactly one leader" one_leader_among 0 1 2
logs "${services[$l]}" | grep -Eiq "raft|follower|joined" || { echo "FAIL: restarted node logs nothing about raft" >&2; exit 1; }
for a in "${agents[@]}"; do
  logs "$a" | grep -Eiq "enrolled" || { echo "FAIL: $a logs no enrollment" >&2; exit 1; }
  logs "$a" | grep -Eiq "heartbeat" || { echo "FAIL: $a logs no heartbeat" >&2; exit 1; }
done
echo "PASS: one leader, failover and rejoin work"
echo "PASS: agents enrolled and heartbeating through the failover, replicas running"
