# lib.sh — shared by the script tests (source it after `set -uo pipefail`; $1 is the build dir).
# Gives BIN, MPIRUN (oversubscribed, shared memory), TMP (removed on exit), HERE, CMP (the run
# comparer), ok/bad and check to record one check each, refused for a clean bad-input failure,
# and finish to print "N passed, N failed" and
# return the exit status: non-zero when a check failed or when no check ran at all (a script
# whose checks were all skipped has shown nothing).
BIN="$1/mptrain"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl self,vader)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CMP=(/usr/bin/python3 "$HERE/compare_runs.py")
fails=0; passes=0
# SMALL=1 in the checking builds (CMakeLists.txt sets MPT_TEST_SMALL=1 under ASan and valgrind):
# a slow script then runs the same code paths on smaller numbers, with the same tolerances,
# and says what it shrinks (tests/check.h's check_small() for the C tests)
SMALL=0; [ -n "${MPT_TEST_SMALL:-}" ] && [ "$MPT_TEST_SMALL" != 0 ] && SMALL=1
ok()  { passes=$((passes+1)); echo "ok   $*"; }
bad() { fails=$((fails+1)); echo "FAIL $*"; }
check() { # check "what" command...: one check that the command succeeds
  local what="$1"; shift
  if "$@"; then passes=$((passes + 1)); else fails=$((fails + 1)); echo "FAIL: $what" >&2; fi
}
# refused NAME NP WANT -- command...: one check that the command fails cleanly on bad input
# (CONTRACT §7): exit status 2 exactly (a signal, a crash or the timeout gives another), at
# least NP lines "mptrain: error: ...WANT..." on stderr (one per rank: every rank finds it), no
# core file, within 20 s. Runs in a directory of its own under $TMP.
# REFUSED_JOBS=N (default 1): up to N cases run at once in the background, each still under
# its own 20 s limit; their verdicts are counted by refused_wait (finish calls it).
refused_n=0
REFUSED_JOBS=${REFUSED_JOBS:-1}
refused() {
  refused_n=$((refused_n + 1))
  local dir="$TMP/refused$refused_n"; mkdir -p "$dir"
  if [ "$REFUSED_JOBS" -le 1 ]; then refused_case_ "$dir" "$@"; return; fi
  while [ "$(jobs -rp | wc -l)" -ge "$REFUSED_JOBS" ]; do wait -n; done
  (refused_case_ "$dir" "$@" >"$dir/verdict" 2>&1) &
}
refused_wait() { # the verdicts of the background cases, in case order, into the counts
  wait
  local i v
  for ((i = 1; i <= refused_n; i++)); do
    v="$TMP/refused$i/verdict"; [ -f "$v" ] || continue
    cat "$v"
    passes=$((passes + $(grep -c '^ok ' "$v"))); fails=$((fails + $(grep -c '^FAIL' "$v")))
    rm -f "$v"
  done
}
refused_case_() { # DIR NAME NP WANT -- command...
  local dir=$1 what=$2 np=$3 want=$4; shift 5
  local t0; t0=$(date +%s%N)
  (cd "$dir" && timeout -k 5 20 "$@" >"$dir/out" 2>"$dir/err"); local rc=$?
  local secs; secs=$(( ($(date +%s%N) - t0) / 100000000 )); secs="$((secs / 10)).$((secs % 10)) s"
  local said; said=$(grep -c "^mptrain: error: .*$want" "$dir/err")
  local cores; cores=$(find "$dir" -maxdepth 1 -name 'core*' | wc -l)
  if [ "$rc" = 2 ] && [ "$said" -ge "$np" ] && [ "$cores" = 0 ]; then
    ok "$what ($secs): $(grep -m1 '^mptrain: error: ' "$dir/err" | cut -c1-160)"
  else
    bad "$what ($secs): exit $rc (want 2), $said of $np ranks said '$want', $cores core files: $(head -c 600 "$dir/err")"
  fi
}
# plan_is_peak NAME: in $TMP/NAME.jsonl (a run's log), every rank's measured arena peak equals
# its plan, to the byte
plan_is_peak() {
  local msg
  if msg=$(/usr/bin/python3 - "$TMP/$1.jsonl" <<'PY'
import json, sys
end = [json.loads(l) for l in open(sys.argv[1]) if '"event": "end"' in l or '"event":"end"' in l][-1]
ranks = end["ranks"]
bad = [i for i, r in enumerate(ranks) if int(r["planned_mem_bytes"]) != int(r["peak_mem_bytes"])]
print(", ".join(f"rank {i}: plan {int(r['planned_mem_bytes'])} peak {int(r['peak_mem_bytes'])}" for i, r in enumerate(ranks)))
sys.exit(1 if bad or not ranks else 0)
PY
); then ok "$1 plan = arena peak: $msg"; else bad "$1 plan != arena peak: $msg"; fi
}
finish() {
  refused_wait
  [ "$passes" -gt 0 ] || { fails=$((fails + 1)); echo "FAIL no check ran"; }
  echo "$passes passed, $fails failed"; [ "$fails" = 0 ]
}
