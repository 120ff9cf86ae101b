#!/usr/bin/env bash
# Makes the tokens of the compose cluster (docs/HA-CLUSTER-SETUP.md, "Tokens"): compose/auth/
# with the coordinators' --auth-file (hashes only) and one NAME.SECRET file per token, and
# compose/.env, which docker compose reads, with the join and enroll tokens. Run it once before
# `docker compose up`; test-ha-cluster.sh runs it when compose/auth/auth is missing (and, with
# LOCAL=1, into its data dir: AUTH_DIR and ENV_FILE say where).
#   compose/make-auth.sh            hash with the image's cloudless-coordinator (docker run)
#   BIN=build/cloudless-coordinator compose/make-auth.sh   or with a local build
# Tokens: admin (every scope: cloudlessctl, curl), peers (operator,read: the coordinators'
# --join-token), agents (enroll: the agents' --token), prometheus (metrics). Existing files are
# replaced: restart the cluster afterwards (or SIGHUP the coordinators and restart the rest).
set -euo pipefail
if [[ ${BIN:-} == */* ]]; then BIN=$(realpath "$BIN"); fi
cd "$(dirname "$0")"

hash_token() {
  if [[ -n ${BIN:-} ]]; then
    "$BIN" hash-token "$@"
  else
    docker run --rm -i --entrypoint /usr/local/bin/cloudless-coordinator \
      cloudless-coordinator:latest hash-token "$@"
  fi
}

secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

AUTH_DIR=${AUTH_DIR:-auth}
ENV_FILE=${ENV_FILE:-.env}
mkdir -p "$AUTH_DIR"
chmod 700 "$AUTH_DIR"
tmp=$(mktemp "$AUTH_DIR/auth.XXXXXX")
trap 'rm -f "$tmp"' EXIT
echo "# made by compose/make-auth.sh; one line per token (cloudless-coordinator hash-token)" >"$tmp"
for t in admin:read,write,operator,enroll,metrics peers:operator,read agents:enroll \
  prometheus:metrics; do
  name=${t%%:*}
  s=$(secret)
  hash_token --name "$name" --scopes "${t#*:}" <<<"$s" >>"$tmp"
  (umask 077 && printf '%s.%s\n' "$name" "$s" >"$AUTH_DIR/$name.token")
done
# The containers run as other users: the auth file holds only hashes, and Prometheus (nobody)
# reads its own token; the directory stays private to this user on the host.
chmod 644 "$tmp" "$AUTH_DIR/prometheus.token"
mv "$tmp" "$AUTH_DIR/auth"
trap - EXIT
(umask 077 && printf 'CLOUDLESS_JOIN_TOKEN=%s\nCLOUDLESS_ENROLL_TOKEN=%s\n' \
  "$(cat "$AUTH_DIR/peers.token")" "$(cat "$AUTH_DIR/agents.token")" >"$ENV_FILE")
echo "$AUTH_DIR/auth: $(grep -vc '^#' "$AUTH_DIR/auth") tokens; $ENV_FILE: the join and enroll tokens"
echo "admin token: $AUTH_DIR/admin.token (CLOUDLESS_TOKEN=\$(cat $AUTH_DIR/admin.token) cloudlessctl ...)"
