#!/usr/bin/env bash
# Installs what forgeai needs from the system on Debian: sandboxing tools, PostgreSQL for the
# Postgres tests, Chromium for the browser tests. Idempotent: installs only what is missing.
set -euo pipefail

packages=(bubblewrap nftables iproute2 e2fsprogs busybox procps psmisc postgresql chromium ca-certificates curl python3 python3-venv)
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
# restate-server, for the Restate engine (`FORGEAI_ENGINE=restate`): the pinned release from the
# npm registry, whose platform package ships the binary (`--ignore-scripts` skips an install-time
# analytics hook).
restate_version=1.7.12
restate_dir=/usr/local/lib/forgeai/restate-server-$restate_version
if [[ ! -x "$restate_dir/bin/restate-server" ]]; then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    echo "setup: installing restate-server $restate_version"
    staging="$(mktemp -d)"
    npm install --silent --ignore-scripts --no-audit --no-fund --prefix "$staging" \
        "@restatedev/restate-server@$restate_version" >/dev/null
    "${sudo_cmd[@]}" mkdir -p "$restate_dir/bin"
    case "$(uname -m)" in
        aarch64 | arm64) platform=linux-arm64 ;;
        *) platform=linux-x64 ;;
    esac
    "${sudo_cmd[@]}" install -m 0755 "$staging/node_modules/@restatedev/restate-server-$platform/bin/restate-server" \
        "$restate_dir/bin/restate-server"
    rm -rf "$staging"
fi
if [[ "$(readlink -f /usr/local/bin/restate-server 2>/dev/null)" != "$restate_dir/bin/restate-server" ]]; then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" ln -sf "$restate_dir/bin/restate-server" /usr/local/bin/restate-server
fi

# E2B's official Python SDK, pinned: the tests run it against the mock E2B to prove that the
# mock speaks E2B's protocols the way E2B's own client expects.
e2b_sdk_version=2.63.0
e2b_sdk_dir=/usr/local/lib/forgeai/e2b-sdk-$e2b_sdk_version
if ! "$e2b_sdk_dir/bin/python" -c "import e2b" 2>/dev/null; then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    echo "setup: installing the e2b Python SDK $e2b_sdk_version"
    "${sudo_cmd[@]}" rm -rf "$e2b_sdk_dir"
    "${sudo_cmd[@]}" python3 -m venv "$e2b_sdk_dir"
    "${sudo_cmd[@]}" "$e2b_sdk_dir/bin/pip" install --quiet --disable-pip-version-check "e2b==$e2b_sdk_version"
fi
# ...and its official JavaScript SDK, for the same check.
e2b_js_version=2.51.0
e2b_js_dir=/usr/local/lib/forgeai/e2b-js-sdk-$e2b_js_version
if [[ ! -f "$e2b_js_dir/node_modules/e2b/package.json" ]]; then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    echo "setup: installing the e2b JavaScript SDK $e2b_js_version"
    "${sudo_cmd[@]}" mkdir -p "$e2b_js_dir"
    "${sudo_cmd[@]}" npm install --silent --no-audit --no-fund --prefix "$e2b_js_dir" "e2b@$e2b_js_version" >/dev/null
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
