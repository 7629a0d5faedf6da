#!/usr/bin/env bash
# forgeai on the Restate engine, all on this machine: PostgreSQL (projects and realtime
# messages), restate-server (durable execution) and `forgeai serve` with FORGEAI_ENGINE=restate.
# The state of PostgreSQL and restate-server lives in $FORGEAI_STACK_DIR (default
# /var/lib/forgeai); both are stopped when forgeai stops. Extra arguments go to `forgeai serve`.
# To use a PostgreSQL of your own, set DATABASE_URL; to use a running Restate cluster, set
# RESTATE_INGRESS_URL and RESTATE_ADMIN_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

stack="${FORGEAI_STACK_DIR:-/var/lib/forgeai}"
mkdir -p "$stack"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n "${pg_dir:-}" ]]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir" -m fast stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

if [[ -z "${DATABASE_URL:-}" ]]; then
    # Debian's PostgreSQL keeps its programs out of PATH; a self-built one has them in it.
    pg_bin="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1 || true)")"
    [[ -x "$pg_bin/initdb" ]] || pg_bin="$(dirname "$(command -v initdb)")"
    pg_dir="$stack/postgres"
    pg_port="${FORGEAI_POSTGRES_PORT:-5439}"
    if [[ ! -f "$pg_dir/PG_VERSION" ]]; then
        mkdir -p "$pg_dir" && chown postgres: "$pg_dir" && chmod 700 "$pg_dir"
        runuser -u postgres -- "$pg_bin/initdb" -D "$pg_dir" -U postgres --auth=trust >/dev/null
    fi
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir" -l "$pg_dir/server.log" -w \
        -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1" start >/dev/null
    runuser -u postgres -- "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'forgeai'" | grep -q 1 ||
        runuser -u postgres -- "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE forgeai"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/forgeai"
fi

if [[ -z "${RESTATE_ADMIN_URL:-}" ]]; then
    export RESTATE_INGRESS_URL=http://127.0.0.1:8080 RESTATE_ADMIN_URL=http://127.0.0.1:9070
    RESTATE_BASE_DIR="$stack/restate" RESTATE_NODE_NAME=forgeai RESTATE_DISABLE_TELEMETRY=true \
        RESTATE_INGRESS__BIND_ADDRESS=127.0.0.1:8080 RESTATE_ADMIN__BIND_ADDRESS=127.0.0.1:9070 \
        RESTATE_BIND_ADDRESS=127.0.0.1:5122 restate-server >"$stack/restate.log" 2>&1 &
    pids+=("$!")
    # Ready once queries over its partitions answer, not just /health.
    for _ in $(seq 1 100); do
        curl -sf -X POST "$RESTATE_ADMIN_URL/query" -H 'content-type: application/json' \
            -d '{"query":"SELECT id FROM sys_invocation LIMIT 1"}' >/dev/null && break
        sleep 0.2
    done
fi

export FORGEAI_ENGINE=restate
forgeai="${FORGEAI_BIN:-target/release/forgeai}"
[[ -n "${FORGEAI_BIN:-}" ]] || cargo build --release --quiet -p forgeai
"$forgeai" serve "$@" &
pids+=("$!")
wait "${pids[-1]}"
