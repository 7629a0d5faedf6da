#!/usr/bin/env bash
# The test command of the README: system set-up, the API fuzzing run, then every test of the
# workspace (Rust unit and integration tests, the end-to-end and browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/schemathesis.sh
# The transcript suite leaves its timings here; cargo shows a passing test's output to nobody.
timings="${CARGO_TARGET_DIR:-target}/test-artifacts/transcripts/timings.txt"
rm -f "$timings"
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
if [[ -f "$timings" ]]; then
    echo "Recorded transcripts on forgeai-v1 (crates/cli/tests/transcripts.rs):"
    cat "$timings"
fi
exit "$status"
