#!/usr/bin/env bash
# The pipeline schedules side by side at pp 2 (4 blocks) and pp 4 (8 blocks; oversubscribed on
# a 2-core machine, so read its bubble columns only), m 8: tokens/s, the measured bubble beside the
# schedule's own simulation on the run's measured F, B (and, for zb-h1, W) costs, and every
# rank's planned = measured peak memory (largest rank, total and activations). Medians over the
# steps after a warm-up. 2bw runs without a flush over the 8 steps (parallel/pp_2bw.h); its
# last window (the one before ran to the end) shares the time of the two steps it holds.
# Two simulations (parallel/pp_replay.h): sim = the log's bubble_sim, the lists replayed on every
# action's own measured duration and every transfer's own time, so meas-sim is the executor's
# own overhead; sim_mean = bubble_sim_mean, the same on each stage's mean F, B, W and the mean
# transfer, so meas-mean adds the spread of compute durations around their means.
# A benchmark, not a test: it exits 0 whatever the timings, 1 only when a run fails. Each stage
# wants a core of its own; on a shared machine the figures move from run to run, so compare
# the rows of one run only.
# PP_TRACE=1 also traces each run and splits a flushed schedule's overhead (measured - sim) into
# the executor's gaps and the spread of compute durations (bench/pp_overhead.py --summary).
# Usage: bash bench/pp_schedules.sh BUILD_DIR [STEPS] [PP...] (default PP: 2 4)
set -uo pipefail
BIN="$1/mptrain"
STEPS=${2:-8}
read -r -a PPS <<<"${*:3}"; [ ${#PPS[@]} -gt 0 ] || PPS=(2 4)
WARMUP=2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 "$(dirname "$0")/../tests/torch_ref.py" --make-data "$TMP/v32.bin" --vocab 32 --tokens 200000 --seed 1 >/dev/null
M=8
echo "m $M, $STEPS steps per run, medians over steps $((WARMUP + 1))..$STEPS; bytes: the largest rank's"
printf '%-3s %-15s %10s %9s %9s %9s %9s %9s %12s %12s\n' pp schedule tokens/s bubble sim meas-sim \
  sim_mean meas-mean peak_bytes act_bytes
fails=0
for P in "${PPS[@]}"; do
for spec in "1f1b" "interleaved --virtual-stages 2" "zb-h1" "zb-v" "2bw"; do
  s=${spec%% *}
  log="$TMP/$s.$P.jsonl"
  if ! mpirun --oversubscribe --bind-to none -np $P "$BIN" train --model tiny --layers $((2 * P)) \
      --d-model 256 --heads 4 --seq-len 128 --vocab 32 --data "$TMP/v32.bin" --batch 32 \
      --microbatches $M --steps "$STEPS" --threads 1 --quiet --pp $P --schedule $spec \
      --log "$log" ${PP_TRACE:+--trace "$TMP/$s.$P.json"} >"$TMP/out" 2>&1; then
    echo "$s: failed: $(grep -m1 'error' "$TMP/out" | cut -c1-110)"
    fails=1
    continue
  fi
  /usr/bin/python3 - "$log" "$s" $WARMUP $P <<'PY'
import json, statistics, sys
log, s, warm, P = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines = [json.loads(l) for l in open(log)]
steps = [x for x in lines if "bubble" in x][warm:]
med = lambda k: statistics.median(x[k] for x in steps)
ranks = lines[-1]["ranks"]
peak = max(r["peak_mem_bytes"] for r in ranks)
act = max(r["peak_activation_bytes"] for r in ranks)
same = all(r["peak_mem_bytes"] == r["planned_mem_bytes"] for r in ranks)
b, sim, mean = med("bubble"), med("bubble_sim"), med("bubble_sim_mean")
print(f"{P:<3} {s:<15} {med('tokens_per_s'):10.0f} {b:9.4f} {sim:9.4f} {b - sim:+9.4f} {mean:9.4f}"
      f" {b - mean:+9.4f} {peak:12d} {act:12d}" + ("" if same else "  (plan != peak!)"))
PY
  if [ -n "${PP_TRACE:-}" ] && [ "$s" != 2bw ]; then
    v=1; [ "$s" = interleaved ] && v=2; [ "$s" = zb-v ] && v=2
    /usr/bin/python3 "$(dirname "$0")/pp_overhead.py" "$TMP/$s.$P.json" "$BIN" "$P" "$M" "$s" $v \
      --warmup $WARMUP --summary --log "$log" | sed 's/^/    /'
  fi
done
done
exit $fails
