#!/usr/bin/env bash
# Installs the Debian 12 packages Cloudless needs to build, run and test. Idempotent: it only
# calls apt-get for packages that are missing, so a second run is a fast no-op.
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also what the test suite uses (jq, prometheus + promtool,
#                                    docker-compose for `config` checks of compose/,
#                                    shellcheck for the HA script, npm,
#                                    clang, valgrind, iproute2 + iptables for the fault
#                                    harness's partitions, etcd 3.4 for the side-by-side
#                                    benchmark, and openssl for the TLS tests' certificates)
set -euo pipefail

pkgs=(build-essential pkg-config meson ninja-build python3 curl
      libraft-dev libuv1-dev librocksdb-dev libmicrohttpd-dev libgnutls28-dev nettle-dev libcurl4-openssl-dev libjansson-dev libjemalloc-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(jq prometheus docker-compose shellcheck clang libclang-rt-14-dev clang-format iproute2 iptables valgrind
         etcd-server etcd-client openssl)
  # Node.js may come from another packaging (nodesource bundles npm); only add Debian's when
  # there is no npm at all, since Debian's npm conflicts with those builds.
  command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
