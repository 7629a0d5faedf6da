#!/usr/bin/env bash
# Installs what forgeai needs from the system on Debian: sandboxing tools, PostgreSQL for the
# Postgres tests, Chromium for the browser tests. Idempotent: installs only what is missing.
set -euo pipefail

packages=(bubblewrap nftables iproute2 e2fsprogs busybox procps psmisc postgresql chromium ca-certificates curl)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: node and npm are needed to build the web UI; install Node.js 20 or newer and re-run" >&2
    exit 1
fi
# The web UI: dependencies when the lockfile changed, then the build `forgeai serve` serves.
ui="$(dirname "$0")/../ui"
if [[ ! -f "$ui/node_modules/.package-lock.json" || "$ui/package-lock.json" -nt "$ui/node_modules/.package-lock.json" ]]; then
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$ui" && npm run --silent build >/dev/null)

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) and re-run" >&2
    exit 1
fi
