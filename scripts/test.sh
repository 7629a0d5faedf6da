#!/usr/bin/env bash
# The test command of the README: system set-up, the API fuzzing run, then every test of the
# workspace (Rust unit and integration tests, the end-to-end and browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/schemathesis.sh
cargo test --workspace --no-fail-fast "$@"
