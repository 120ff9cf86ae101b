#!/usr/bin/env bash
# Installs dependencies, builds, and starts a local Cloudless cluster on loopback with data
# under ./data: 3 coordinators and 3 agents (cloudless-agent) in two zones. Every coordinator
# gets the same --join list and --bootstrap-expect 3: they form one cluster the first time,
# and re-running the script (or any node's command, even after deleting its data dir) rejoins
# that cluster.
#   coordinators  HTTP 127.0.0.1:8081, :8082, :8083     raft 127.0.0.1:7001, :7002, :7003
#   agents        agent-1 (zone-a), agent-2 (zone-b), agent-3 (zone-a);
#                 /metrics and /status on 127.0.0.1:9101, :9102, :9103
# Logs go to ./data/<name>.log, each replica's output to
# ./data/<agent>/replicas/<namespace>/<name>/<N>/stdout.log. Ctrl-C stops everything: the
# agents stop their replicas, the leader hands over first. Restarting the script reuses
# ./data: coordinators restart from their raft state, agents from their state file.
#
# For tests and side-by-side clusters: CLUSTER_BUILD (an existing build dir, default build),
# CLUSTER_DATA (default data) and CLUSTER_PORT_OFFSET (added to every port above, default 0).
# CLUSTER_TLS=1 runs the same cluster over TLS (docs/operations.md, "TLS"): a local CA and a
# certificate per coordinator are made once under ./data/tls with openssl, the coordinators
# serve https, the agents verify them; curl then needs --cacert data/tls/ca.pem.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${CLUSTER_BUILD:-build}
data=${CLUSTER_DATA:-data}
off=${CLUSTER_PORT_OFFSET:-0}
tls=${CLUSTER_TLS:-0}
scripts/install-deps.sh
[[ -d $build ]] || meson setup "$build" --buildtype=release
ninja -C "$build" cloudless-coordinator cloudless-agent cloudlessctl
mkdir -p "$data"
pids=()
agent_pids=()
stop() {
  trap - INT TERM EXIT
  # Agents first, while the coordinators still see their replicas stop.
  kill -TERM "${agent_pids[@]}" 2>/dev/null || true
  wait "${agent_pids[@]}" 2>/dev/null || true
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT
port() { echo $(($1 + off)); }
# TLS: one CA and a certificate per coordinator naming 127.0.0.1, made once and kept.
scheme=http
curl_tls=()
agent_tls=()
make_certs() {
  local d=$data/tls id
  command -v openssl >/dev/null || { echo "CLUSTER_TLS=1 needs openssl (apt-get install openssl)" >&2; exit 1; }
  [[ -f $d/ca.pem ]] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj /CN=cloudless-local-ca -keyout "$d/ca.key" -out "$d/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/ext.txt"
  for id in coordinator-1 coordinator-2 coordinator-3; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$id" \
      -keyout "$d/$id.key" -out "$d/$id.csr" 2>/dev/null
    openssl x509 -req -in "$d/$id.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -days 825 -extfile "$d/ext.txt" -out "$d/$id.pem" 2>/dev/null
  done
}
if [[ $tls == 1 ]]; then
  make_certs
  scheme=https
  curl_tls=(--cacert "$data/tls/ca.pem")
  agent_tls=(--ca-file "$data/tls/ca.pem")
fi
coordinator_tls() { # id
  [[ $tls == 1 ]] || return 0
  echo --tls-cert "$data/tls/$1.pem" --tls-key "$data/tls/$1.key" --ca-file "$data/tls/ca.pem"
}
coordinator() { # id raft-port http-port
  # shellcheck disable=SC2046 # the TLS flags are words without spaces (paths under $data)
  "$build/cloudless-coordinator" --node-id "$1" --raft-addr "127.0.0.1:$(port "$2")" \
    --http-addr "127.0.0.1:$(port "$3")" --data-dir "$data/$1" \
    --join "$join" --bootstrap-expect 3 $(coordinator_tls "$1") 2>>"$data/$1.log" &
  pids+=($!)
}
agent() { # id zone metrics-port
  "$build/cloudless-agent" --node-id "$1" --zone "$2" --coordinators "$join" \
    --data-dir "$data/$1" --metrics-addr "127.0.0.1:$(port "$3")" --stop-replicas-on-exit \
    "${agent_tls[@]}" 2>>"$data/$1.log" &
  agent_pids+=($!)
}
join=127.0.0.1:$(port 8081),127.0.0.1:$(port 8082),127.0.0.1:$(port 8083)
first=127.0.0.1:$(port 8081)
coordinator coordinator-1 7001 8081
coordinator coordinator-2 7002 8082
coordinator coordinator-3 7003 8083
for i in $(seq 1 100); do
  n=$(curl -s "${curl_tls[@]}" "$scheme://$first/raft/status" 2>/dev/null | grep -o '"role":"voter"' | wc -l || true)
  [[ "$n" == 3 ]] && break
  sleep 0.1
done
agent agent-1 zone-a 9101
agent agent-2 zone-b 9102
agent agent-3 zone-a 9103
for i in $(seq 1 100); do
  ready=$(curl -s "${curl_tls[@]}" "$scheme://$first/v1/agents" 2>/dev/null | grep -o '"state":"ready"' | wc -l || true)
  [[ "$ready" == 3 ]] && break
  sleep 0.1
done
if [[ $tls == 1 ]]; then
  ca=$data/tls/ca.pem
  echo "Cloudless cluster running over TLS (3 voters, $ready agents ready): https://$first" \
    "https://127.0.0.1:$(port 8082) https://127.0.0.1:$(port 8083)"
  echo "  curl --cacert $ca -X PUT https://127.0.0.1:$(port 8082)/v1/kv/hello -d world"
  echo "  curl --cacert $ca https://$first/raft/status | jq .   (logs: $data/*.log; Ctrl-C to stop)"
  echo "  CLOUDLESS_ENDPOINTS=$join $build/cloudlessctl --ca-file $ca cluster status"
else
  echo "Cloudless cluster running (3 voters, $ready agents ready): http://$first" \
    "http://127.0.0.1:$(port 8082) http://127.0.0.1:$(port 8083)"
  echo "  curl -X PUT 127.0.0.1:$(port 8082)/v1/kv/hello -d world; curl 127.0.0.1:$(port 8083)/v1/kv/hello"
  echo "  a first workload: see the README; agents at http://127.0.0.1:$(port 9101)/status .. :$(port 9103)"
  echo "  curl $first/raft/status | jq .   (logs: $data/*.log; Ctrl-C to stop)"
  echo "  CLOUDLESS_ENDPOINTS=$join $build/cloudlessctl cluster status"
fi
wait
