# lib.sh — shared by the script tests (source it after `set -uo pipefail`; $1 is the build dir).
# Gives BIN, MPIRUN (oversubscribed, shared memory), TMP (removed on exit), HERE, CMP (the run
# comparer), ok/bad and check to record one check each, and finish to print "N passed, N failed" and
# return the exit status: non-zero when a check failed or when no check ran at all (a script
# whose checks were all skipped has shown nothing).
BIN="$1/mptrain"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl self,vader)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CMP=(/usr/bin/python3 "$HERE/compare_runs.py")
fails=0; passes=0
ok()  { passes=$((passes+1)); echo "ok   $*"; }
bad() { fails=$((fails+1)); echo "FAIL $*"; }
check() { # check "what" command...: one check that the command succeeds
  local what="$1"; shift
  if "$@"; then passes=$((passes + 1)); else fails=$((fails + 1)); echo "FAIL: $what" >&2; fi
}
finish() {
  [ "$passes" -gt 0 ] || { fails=$((fails + 1)); echo "FAIL no check ran"; }
  echo "$passes passed, $fails failed"; [ "$fails" = 0 ]
}
