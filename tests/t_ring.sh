#!/usr/bin/env bash
# t_ring.sh — the data-parallel gradient ring (parallel/dp_ring.h): tests/mpi_ring.c with 1, 2,
# 3 and 4 ranks (every rank holds bit-identical sums within 1e-6 of the exact ones; reduce-
# scatter and all-gather; several rings in flight finished by stepwise progress alone).
# Usage: bash tests/t_ring.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
RING="$1/tests/mpi_ring"
[ -x "$RING" ] || { bad "$RING is not built"; finish; exit 1; }
for np in 1 2 3 4; do
  if timeout -k 5 120 "${MPIRUN[@]}" -np "$np" "$RING" >"$TMP/out" 2>"$TMP/err" \
     && grep -q "^np=$np: [0-9]* passed, 0 failed" "$TMP/out"; then
    ok "mpi_ring with $np ranks: $(grep -v passed "$TMP/out" | tr '\n' ' ')$(grep passed "$TMP/out")"
  else
    bad "mpi_ring with $np ranks: $(cat "$TMP/out") $(head -20 "$TMP/err")"
  fi
done
finish
