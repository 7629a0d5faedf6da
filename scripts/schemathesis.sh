#!/usr/bin/env bash
# Validates forgeai's OpenAPI document and fuzzes the API it describes with Schemathesis:
# builds `forgeai`, serves it from a temporary data directory on a free loopback port, creates
# a user, validates GET /api/openapi.json with openapi-spec-validator, runs
# `schemathesis run … --checks not_a_server_error` with that user's token, then stops the
# server. Exits non-zero if the document is invalid, if any request is answered 5xx, or if the
# server logged a failed request or a panic. Needs what `forgeai serve` needs (root, for the
# local sandbox provider), python3 and curl.
#
# Schemathesis and openapi-spec-validator are installed once into a virtualenv under
# ${XDG_CACHE_HOME:-~/.cache}/forgeai. Environment:
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 30)
#   SCHEMATHESIS_SEED          seed, to reproduce a run
#   FORGEAI_DATABASE_URL       a postgres:// URL to fuzz against PostgreSQL instead of SQLite
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
VALIDATOR_VERSION="0.9.0"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/forgeai/schemathesis-$SCHEMATHESIS_VERSION"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION" \
    || ! "$venv/bin/python" -c "import openapi_spec_validator" 2>/dev/null; then
    echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$VALIDATOR_VERSION"
fi

cargo build --quiet -p forgeai
forgeai="${CARGO_TARGET_DIR:-target}/debug/forgeai"

work="$(mktemp -d -t forgeai-schemathesis.XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work" || echo "schemathesis.sh: could not remove $work" >&2
}
trap cleanup EXIT

export FORGEAI_DATA_DIR="$work/data"
unset DATABASE_URL
if [[ -n "${FORGEAI_DATABASE_URL:-}" ]]; then
    export DATABASE_URL="$FORGEAI_DATABASE_URL"
fi
export FORGEAI_LOG="warn,forgeai_server=info"
# The code-agent runs the fuzzer starts must do no real work: no model, sandbox cloud or image
# API, and a template that does not exist, so `serve` builds none and runs create no sandbox
# (they fail at their first step).
unset OPENAI_API_KEY OPENAI_BASE_URL E2B_API_KEY UNSPLASH_ACCESS_KEY
export FORGEAI_SANDBOX_TEMPLATE="schemathesis-no-template"

token="$("$forgeai" users add "schemathesis-$RANDOM$RANDOM" | tail -n 1)"

# Port 0: the kernel picks a free port, which the server prints.
FORGEAI_LISTEN=127.0.0.1:0 "$forgeai" serve >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 1 200); do
    url="$(sed -n 's/^forgeai is listening on \(http:[^ ]*\)$/\1/p' "$work/server.out")"
    [[ -n "$url" ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis.sh: the server did not start:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.05
done
if [[ -z "$url" ]]; then
    echo "schemathesis.sh: the server did not report its address in time" >&2
    exit 1
fi
echo "schemathesis.sh: forgeai serves $url"

curl --silent --show-error --fail "$url/api/openapi.json" -o "$work/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

status=0
args=(
    run "$url/api/openapi.json"
    -H "Authorization: Bearer $token"
    --checks not_a_server_error
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}"
    --workers 2
    # The realtime stream never ends by itself: each successful subscription waits this long.
    --request-timeout 3
    --no-color
    # Revoking tokens is left out: the fuzzer finds its own token's id in GET /api/tokens and
    # revokes it, and every later request would be refused (crates/server/tests/http/sessions.rs
    # covers the route).
    --exclude-operation-id revoke_token
)
if [[ -n "${SCHEMATHESIS_SEED:-}" ]]; then
    args+=(--seed "$SCHEMATHESIS_SEED")
fi
# A hard bound on top of --max-examples, so a hung run cannot stall a pipeline.
# From the temporary directory, where Schemathesis keeps its example database (.schemathesis/).
(cd "$work" && timeout 170 "$venv/bin/schemathesis" "${args[@]}") || status=$?

# The HTTP layer logs every 5xx it answers as an error; a panic would also show here.
if sed 's/\x1b\[[0-9;]*m//g' "$work/server.log" | grep -E "ERROR forgeai_server|panicked" >"$work/errors.log"; then
    echo "schemathesis.sh: the server logged failed requests:" >&2
    cat "$work/errors.log" >&2
    status=1
fi
exit "$status"
