#!/usr/bin/env bash
# The main command of the README: system set-up, then `forgeai` built in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --quiet -p forgeai -- "$@"
