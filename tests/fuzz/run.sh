#!/usr/bin/env bash
# run.sh — builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan + libFuzzer, in a
# build directory of their own) and runs each for SECONDS on a copy of its committed seed
# corpus (tests/fuzz/corpus/<target>/, never modified here). A target passes when libFuzzer
# ends without finding a crash, a leak, undefined behaviour, a failed property (FUZZ_CHECK)
# or an input slower than 20 s; what it found is kept in BUILD_DIR/fuzz-artifacts/ to
# reproduce (`BUILD_DIR/fuzz/fuzz_x ARTIFACT`). Prints executions per target and
# "N passed, N failed".
# Usage: bash tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]   (from the repository root)
#   tests/t_fuzz.sh runs it briefly in the suite; `make fuzz` runs a longer session.
set -uo pipefail
DIR=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}; SECS=${2:?seconds per target}; shift 2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang >/dev/null || { echo "FAIL clang is not installed (scripts/setup.sh installs it)"; echo "0 passed, 1 failed"; exit 1; }
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
  for f in "$ROOT"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
CC=clang cmake -S "$ROOT" -B "$DIR" -DMPT_FUZZ=ON -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
if ! nice -n 15 cmake --build "$DIR" -j2 --target "${targets[@]}" >"$DIR/fuzz-build.log" 2>&1; then
  tail -30 "$DIR/fuzz-build.log"; echo "0 passed, 1 failed"; exit 1
fi
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
ART="$DIR/fuzz-artifacts"; mkdir -p "$ART"
export MPT_BPE_DIR="$ROOT/.cache/gpt2-bpe"
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
passes=0 fails=0
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  seeds="$ROOT/tests/fuzz/corpus/$name"
  mkdir -p "$WORK/$name/corpus" "$WORK/$name/tmp"
  (cd "$ROOT" && TMPDIR="$WORK/$name/tmp" nice -n 15 "$DIR/fuzz/$t" -max_total_time="$SECS" \
     -timeout=20 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
     -artifact_prefix="$ART/$name-" "$WORK/$name/corpus" "$seeds") >"$WORK/$name/log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$name/log" | tail -1)
  units=$(ls "$WORK/$name/corpus" | wc -l)
  if [ "$rc" = 0 ] && [ "${runs:-0}" -gt 0 ]; then
    passes=$((passes + 1))
    echo "ok   $t: ${runs} executions in ${SECS} s, ${units} new corpus units, no crash"
  else
    fails=$((fails + 1))
    echo "FAIL $t: exit $rc after ${runs:-0} executions; artifacts in $ART:"
    grep -E "ERROR|fuzz check failed|runtime error|SUMMARY|Test unit written" "$WORK/$name/log" | head -20
    tail -40 "$WORK/$name/log" | sed 's/^/    /'
  fi
done
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
