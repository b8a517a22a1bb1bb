#!/usr/bin/env bash
# fuzz.sh — the longer fuzzing session (issue 12, item 6): every libFuzzer target of tests/fuzz
# for SECONDS (default 300) on its committed seed corpus, in build-fuzz/ (clang, ASan + UBSan).
# The test suite's t_fuzz runs each target only 3 s; the executions and findings of a longer
# run go to tests/fuzz/README.md's "Results". Same as `make fuzz FUZZ_SECONDS=...`.
# Usage: bash bench/fuzz.sh [SECONDS [TARGET...]]   (from the repository root)
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-300}; shift || true
exec bash tests/fuzz/run.sh build-fuzz "$SECS" "$@"
