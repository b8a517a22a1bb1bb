#!/usr/bin/env bash
# t_fuzz.sh — every libFuzzer target of tests/fuzz (safetensors, config JSON, checkpoint
# manifest / state / weights, token files, the command-line parser, the GPT-2 tokenizer and its
# files) runs briefly, 3 s, on its committed seed corpus (every seed, then new inputs) and finds
# nothing (tests/fuzz/README.md). The suite and CI only check that each target builds, runs its
# seeds and fuzzes clean for a moment: the fuzzing itself is the longer session of
# bench/fuzz.sh (`make fuzz`, 300 s a target). Builds with clang into a directory of its own
# next to BUILD_DIR. MPT_FUZZ_SECONDS=N to run longer.
# Usage: bash tests/t_fuzz.sh BUILD_DIR   (from the repository root, as ctest runs it)
set -uo pipefail
exec bash "$(dirname "$0")/fuzz/run.sh" "$1/../build-fuzz" "${MPT_FUZZ_SECONDS:-3}"
