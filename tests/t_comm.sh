#!/usr/bin/env bash
# t_comm.sh — the communication layer and the mesh groups under mpirun: tests/mpi_comm.c with
# 1, 2 and 4 ranks (exact collective results, p2p, overlap, agreement, counters, typed f64 /
# i32 / bf16 calls, groups), then the watchdog: a rank that never joins makes the others'
# handler print and MPI_Abort, and the job must end non-zero, within seconds, with the message.
# Usage: bash tests/t_comm.sh BUILD_DIR
set -uo pipefail
BIN="${1:-build}/tests/mpi_comm"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Under -DMPT_SANITIZE=ON (make test-asan), OpenMPI's own allocations kept until exit are
# suppressed by tests/lsan.supp; any other leak fails.
# Shared memory only (ob1 over the self and vader transports: no network or UCX probing, works
# in a container); no binding, so the oversubscribed ranks share the cores freely.
MPIRUN=(mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
passes=0 fails=0
ok()  { passes=$((passes+1)); echo "ok   $*"; }
bad() { fails=$((fails+1)); echo "FAIL $*"; }
ms()  { echo $(( $(date +%s%N) / 1000000 )); }

if [ ! -x "$BIN" ]; then echo "FAIL: $BIN is not built"; echo "0 passed, 1 failed"; exit 1; fi

for np in 1 2 4; do
  t0=$(ms)
  timeout -k 5 60 "${MPIRUN[@]}" -np "$np" "$BIN" >"$TMP/out" 2>"$TMP/err"; rc=$?
  dt=$(( $(ms) - t0 ))
  sed 's/^/    /' "$TMP/out"
  if [ "$rc" = 0 ] && grep -q "^np=$np: [1-9][0-9]* passed, 0 failed" "$TMP/out"; then
    ok "mpi_comm with $np ranks (${dt} ms)"
  else
    bad "mpi_comm with $np ranks: exit $rc"; sed 's/^/    /' "$TMP/err" | head -40
  fi
done

# watchdog NP CASE REGEX: exit non-zero, the handler's message on stderr, and the job ended by
# the handler's MPI_Abort: one rank sleeps for 60 s, so a job that waited for it instead would
# be stopped by `timeout` at 45 s (exit 124, or 137 after the kill) and fail. No duration is
# asserted: the timeout only keeps a hang from stalling ctest.
watchdog() {
  local np=$1 case=$2 want=$3 t0 dt rc
  t0=$(ms)
  timeout -k 5 45 "${MPIRUN[@]}" -np "$np" "$BIN" "$case" >"$TMP/out" 2>"$TMP/err"; rc=$?
  dt=$(( $(ms) - t0 ))
  local line; line=$(grep -m1 '^WATCHDOG: ' "$TMP/err")
  if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$rc" != 137 ] && grep -Eq "^WATCHDOG: $want\$" "$TMP/err"; then
    ok "$case with $np ranks: exit $rc after ${dt} ms: ${line#WATCHDOG: }"
  else
    bad "$case with $np ranks: exit $rc after ${dt} ms, want a message like '$want'"
    sed 's/^/    /' "$TMP/err" | head -20
  fi
}
watchdog 4 watchdog "rank [0-2]: stuck for 2 s in allreduce on group world \(peer -\) at step 7"
watchdog 2 watchdog_recv "rank 0: stuck for 2 s in recv on group world \(peer 1\) at step 7"

echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
