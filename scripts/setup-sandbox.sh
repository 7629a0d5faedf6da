#!/usr/bin/env bash
# Installs the Debian packages the local sandbox provider (crates/sandbox) needs:
# bubblewrap (process isolation), nftables (per-sandbox firewall rules) and
# iproute2 (network namespaces and veth pairs). Idempotent: it only touches apt
# when something is missing, and only refreshes the package lists in that case.
set -euo pipefail

packages=(bubblewrap nftables iproute2)
missing=()
for p in "${packages[@]}"; do
    # dpkg-query reports "install ok installed" only for fully installed packages.
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup-sandbox: all packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-sandbox: missing ${missing[*]}; run this script as root to install them" >&2
    exit 1
fi

echo "setup-sandbox: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
