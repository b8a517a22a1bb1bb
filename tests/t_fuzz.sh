#!/usr/bin/env bash
# t_fuzz.sh — every libFuzzer target of tests/fuzz (safetensors, config JSON, checkpoint
# manifest / state / weights, token files, the command-line parser, the GPT-2 tokenizer and its
# files) runs 10 s on its committed seed corpus and finds nothing (tests/fuzz/README.md; the
# longer runs are `make fuzz`). Builds with clang into a directory of its own next to BUILD_DIR.
# Usage: bash tests/t_fuzz.sh BUILD_DIR   (from the repository root, as ctest runs it)
set -uo pipefail
exec bash "$(dirname "$0")/fuzz/run.sh" "$1/../build-fuzz" "${MPT_FUZZ_SECONDS:-10}"
