#!/usr/bin/env bash
# The pipeline's measured bubble beside the schedule's own simulation and the theory: pp 2,
# m = 4 and 8 micro-batches, 1F1B and GPipe. For each run it prints, as medians over the steps
# after a warm-up (with the spread, min..max):
#   measured  1 - busy / (p x makespan) of the ranks (the log's `bubble`)
#   sim       the schedule replayed on the run's own measured mean F, B per stage and transfer
#             time (the log's `bubble_sim`; parallel/pp.h mpt_pp_measure)
#   theory    (p-1)/(m+p-1), equal stages and free transfers
# measured - sim is the executor's overhead (waits the schedule does not have); sim - theory is
# what unequal stages and transfers cost. A benchmark, not a test: it exits 0 whatever the
# timings, and 1 only when a run fails. Each stage wants a core of its own; on a shared machine
# the figures move from run to run.
# Usage: bash bench/pp_bubble.sh BUILD_DIR [STEPS]. The model keeps the two stages equal (a
# 32-token vocabulary makes the head negligible next to the blocks).
set -uo pipefail
BIN="$1/mptrain"
STEPS=${2:-10}
WARMUP=3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 - "$TMP/v32.bin" <<'PY'
import struct, sys, random
random.seed(1)
n = 200000
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
    f.write(struct.pack(f"<{n}H", *[random.randrange(32) for _ in range(n)]))
PY
echo "pp 2, $STEPS steps per run, medians over steps $((WARMUP + 1))..$STEPS (min..max)"
printf '%-7s %3s  %-22s %-22s %-8s %s\n' schedule m measured sim theory "measured-sim"
fails=0
for s in 1f1b gpipe; do
  for m in 4 8; do
    log="$TMP/$s-$m.jsonl"
    if ! mpirun --oversubscribe --bind-to none -np 2 "$BIN" train --model tiny --layers 4 \
        --d-model 256 --heads 4 --seq-len 128 --vocab 32 --data "$TMP/v32.bin" --batch 32 \
        --microbatches $m --steps "$STEPS" --threads 1 --quiet --pp 2 --schedule $s \
        --log "$log" >"$TMP/out" 2>&1; then
      echo "run $s m=$m failed: $(tail -3 "$TMP/out")"; fails=1; continue
    fi
    /usr/bin/python3 - "$log" $m $s $WARMUP <<'PY'
import json, statistics, sys
log, m, s, warm, p = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), 2
steps = [json.loads(l) for l in open(log)]
steps = [x for x in steps if "bubble" in x][warm:]
def cell(key):
    v = [x[key] for x in steps]
    return statistics.median(v), f"{statistics.median(v):.4f} ({min(v):.3f}..{max(v):.3f})"
(mb, mt), (sb, st) = cell("bubble"), cell("bubble_sim")
theory = (p - 1) / (m + p - 1)
print(f"{s:<7} {m:3d}  {mt:<22} {st:<22} {theory:<8.4f} {mb - sb:+.4f}")
PY
  done
done
exit $fails
