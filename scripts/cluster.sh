#!/usr/bin/env bash
# Installs dependencies, builds, and starts a local 3-node Cloudless cluster on loopback with
# data under ./data (our embedded default). Every node gets the same --join list and
# --bootstrap-expect 3: they form one cluster the first time, and re-running the script (or
# any node's command, even after deleting its data dir) rejoins that cluster.
#   HTTP:  127.0.0.1:8081, :8082, :8083     raft: 127.0.0.1:7001, :7002, :7003
# Logs go to ./data/<node>.log; Ctrl-C stops all three (the leader hands over first).
# Restarting the script reuses ./data: the nodes restart from their raft state.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[[ -d build ]] || meson setup build --buildtype=release
ninja -C build cloudless-coordinator cloudlessctl
mkdir -p data
bin=build/cloudless-coordinator
pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT
start() { # id raft http extra...
  local id=$1 raft=$2 http=$3; shift 3
  "$bin" --node-id "$id" --raft-addr "$raft" --http-addr "$http" --data-dir "data/$id" "$@" \
    2>>"data/$id.log" &
  pids+=($!)
}
join=127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083
start coordinator-1 127.0.0.1:7001 127.0.0.1:8081 --join $join --bootstrap-expect 3
start coordinator-2 127.0.0.1:7002 127.0.0.1:8082 --join $join --bootstrap-expect 3
start coordinator-3 127.0.0.1:7003 127.0.0.1:8083 --join $join --bootstrap-expect 3
for i in $(seq 1 100); do
  n=$(curl -s 127.0.0.1:8081/raft/status 2>/dev/null | grep -o '"role":"voter"' | wc -l || true)
  [[ "$n" == 3 ]] && break
  sleep 0.1
done
echo "Cloudless cluster running (3 voters): http://127.0.0.1:8081 http://127.0.0.1:8082 http://127.0.0.1:8083"
echo "  curl -X PUT 127.0.0.1:8082/v1/kv/hello -d world; curl 127.0.0.1:8083/v1/kv/hello"
echo "  curl 127.0.0.1:8081/raft/status | jq .   (logs: data/*.log; Ctrl-C to stop)"
echo "  CLOUDLESS_ENDPOINTS=127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083 build/cloudlessctl cluster status"
wait
