#!/usr/bin/env bash
# t_tp_ring.sh — the tensor-parallel sums (parallel/tp_ring.c) and the ring of any count they
# use: tests/mpi_tp_ring.c with 1, 2, 3 and 4 ranks (odd counts and counts below the rank count
# within 1e-6 of the exact sums and bit-identical on every rank; four rings in flight; the
# overlapped row-parallel GEMM and input-gradient sums against references).
# Usage: bash tests/t_tp_ring.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
PROG="$1/tests/mpi_tp_ring"
[ -x "$PROG" ] || { bad "$PROG is not built"; finish; exit 1; }
for np in 1 2 3 4; do
  if timeout -k 5 120 "${MPIRUN[@]}" -np "$np" "$PROG" >"$TMP/out" 2>"$TMP/err" \
     && grep -q "^np=$np: [0-9]* passed, 0 failed" "$TMP/out"; then
    ok "mpi_tp_ring with $np ranks: $(grep -v passed "$TMP/out" | tr '\n' ' ')$(grep passed "$TMP/out")"
  else
    bad "mpi_tp_ring with $np ranks: $(cat "$TMP/out") $(head -20 "$TMP/err")"
  fi
done
finish
