#!/usr/bin/env bash
# ci_times.sh — CPU seconds and wall seconds of each ctest test of a build directory, to budget
# CI (.ci/run) on a machine that others load: CPU seconds (user + system of the test and every
# process it waited for, GNU time) barely change with the load, wall seconds do. Runs JOBS
# tests at once (each timed alone), nice 10, in the order given by ctest -N, and prints one line
# per test: "name rc cpu_s wall_s load1" (load1 = the 1-minute load average as the test ended),
# then the sums. The environment (ASAN_OPTIONS, MPT_TEST_SMALL, ...) is passed through, so run
# it the way the Makefile target would (see .ci/run's comments for the figures it gave).
# Usage: bash bench/ci_times.sh BUILD_DIR JOBS [REGEX [EXCLUDE_REGEX]]
set -uo pipefail
DIR=$(cd "${1:?usage: ci_times.sh BUILD_DIR JOBS [REGEX [EXCLUDE]]}" && pwd); JOBS=${2:-1}
RE=${3:-.}; EX=${4:-'^$'}
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
mapfile -t names < <(cd "$DIR" && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p' | grep -E -- "$RE" | grep -Ev -- "$EX")
one_() {
  local n=$1 t0 rc
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$OUT/$n.time" nice -n 10 ctest --test-dir "$DIR" --timeout 3600 \
    -R "^$n\$" --output-on-failure >"$OUT/$n.log" 2>&1; rc=$?
  awk -v n="$n" -v rc="$rc" -v t0="$t0" -v t1="$(date +%s.%N)" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'END{printf "%-20s %3d %8.1f %8.1f %6s\n", n, rc, $1 + $2, t1 - t0, l}' "$OUT/$n.time"
  [ "$rc" = 0 ] || tail -30 "$OUT/$n.log" | sed "s/^/    $n: /" >&2
}
export -f one_; export DIR OUT
printf '%s\n' "${names[@]}" | xargs -P "$JOBS" -I{} bash -c 'one_ {}' | tee "$OUT/all"
awk '{c += $3; w += $4; f += ($2 != 0)} END {printf "sum: %d tests, %d failed, %.0f CPU-s, %.0f s of test wall time\n", NR, f, c, w}' "$OUT/all"
