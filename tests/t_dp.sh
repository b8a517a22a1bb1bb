#!/usr/bin/env bash
# Data parallelism and ZeRO: every layout trains like one rank (5 steps' losses and final
# weights within 1e-5 relative), per-rank memory follows the ZeRO stage, and bad layouts end
# with exit 2 on every rank without a hang.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
# 4 layers so that buckets, prefetch and slots all take several turns; small bucket for overlap
MODEL=(--model tiny --layers 4 --d-model 32 --heads 2 --seq-len 32 --batch 16 --steps 5
       --threads 1 --quiet --lr 3e-3 --bucket-mb 0.02)

for mb in 1 4; do
  "$BIN" train "${MODEL[@]}" --microbatches $mb --log "$TMP/ref$mb.jsonl" --save "$TMP/ref$mb" \
    || bad "single-rank reference (m=$mb)"
done
for dp in 2 4; do
  for zero in 0 1 2 3; do
    for mb in 1 4; do
      name="dp$dp-zero$zero-m$mb"
      if ! "${MPIRUN[@]}" -np $dp "$BIN" train "${MODEL[@]}" --dp $dp --zero $zero --microbatches $mb \
           --log "$TMP/$name.jsonl" --save "$TMP/$name" >"$TMP/$name.out" 2>&1; then
        bad "$name: run failed: $(tail -3 "$TMP/$name.out")"; continue
      fi
      if /usr/bin/python3 "$HERE/compare_runs.py" "$TMP/$name.jsonl" "$TMP/$name/latest/model.safetensors" \
           "$TMP/ref$mb.jsonl" "$TMP/ref$mb/latest/model.safetensors" --rtol 1e-5 >"$TMP/cmp" 2>&1; then
        ok "$name = one rank: $(tr '\n' ' ' < "$TMP/cmp")"
      else
        bad "$name differs from one rank: $(tr '\n' ' ' < "$TMP/cmp")"
      fi
      # per-rank memory: plan equals the measured peak, and the optimizer/grads/params shrink as ZeRO says
      if /usr/bin/python3 - "$TMP/$name.jsonl" $dp $zero >"$TMP/mem" 2>&1 <<'PY'
import json, sys
log, R, zero = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = [json.loads(l) for l in open(log)]
plan, peak = lines[0]["memory_plan_bytes"], lines[-1]["peak_mem_by_kind"]
P, pool = plan["param_elements"], plan["zero_pool_elements"]
msgs = []
for k in ("params", "grads", "optimizer", "activations", "workspace"):
    if plan[k] != peak[k]:
        msgs.append(f"{k}: plan {plan[k]} != measured peak {peak[k]}")
# bytes per parameter 16 -> 8 + 8/N -> 4 + 12/N -> 16/N, plus ZeRO-2/3 staging / working units
want = {0: (4 * P, 4 * P, 8 * P),
        1: (4 * P, 4 * P, 8 * P // R),
        2: (4 * P, 4 * P // R + 4 * (pool + pool // R), 8 * P // R),
        3: (4 * P // R + 4 * pool, 4 * P // R + 4 * (pool + pool // R), 8 * P // R)}[zero]
for k, w in zip(("params", "grads", "optimizer"), want):
    if peak[k] != w:
        msgs.append(f"{k}: measured {peak[k]} bytes, formula {w}")
core = sum(peak[k] for k in ("params", "grads", "optimizer")) / P
print(f"params+grads+optimizer {core:.2f} bytes/param (P={P}, pool={pool}); plan = peak", *msgs)
sys.exit(1 if msgs else 0)
PY
      then ok "$name memory: $(cat "$TMP/mem")"; else bad "$name memory: $(cat "$TMP/mem")"; fi
    done
  done
done

# the default bucket on one node: the whole gradient in one bucket, reduced after the backward
# (parallel/dp_node.c); it trains like one rank and its plan (one ring buffer of a bucket's 1/N)
# is the arena's measured peak
DEFAULT=("${MODEL[@]:0:${#MODEL[@]}-2}") # MODEL without --bucket-mb
for zero in 0 1; do
  name="dp2-zero$zero-m4-default-bucket"
  if ! "${MPIRUN[@]}" -np 2 "$BIN" train "${DEFAULT[@]}" --dp 2 --zero $zero --microbatches 4 \
       --log "$TMP/$name.jsonl" --save "$TMP/$name" >"$TMP/$name.out" 2>&1; then
    bad "$name: run failed: $(tail -3 "$TMP/$name.out")"; continue
  fi
  if /usr/bin/python3 "$HERE/compare_runs.py" "$TMP/$name.jsonl" "$TMP/$name/latest/model.safetensors" \
       "$TMP/ref4.jsonl" "$TMP/ref4/latest/model.safetensors" --rtol 1e-5 >"$TMP/cmp" 2>&1; then
    ok "$name = one rank: $(tr '\n' ' ' < "$TMP/cmp")"
  else
    bad "$name differs from one rank: $(tr '\n' ' ' < "$TMP/cmp")"
  fi
  if /usr/bin/python3 - "$TMP/$name.jsonl" >"$TMP/mem" 2>&1 <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
plan, peak = lines[0]["memory_plan_bytes"], lines[-1]["peak_mem_by_kind"]
bucket = lines[0]["layout"].get("bucket_mb")
msgs = [f"{k}: plan {plan[k]} != measured peak {peak[k]}" for k in plan if k in peak and plan[k] != peak[k]]
if bucket != "whole": msgs.append(f"bucket_mb {bucket!r}, not 'whole'")
print(f"bucket {bucket}, workspace {plan['workspace']} B; plan = peak", *msgs)
sys.exit(1 if msgs else 0)
PY
  then ok "$name memory: $(cat "$TMP/mem")"; else bad "$name memory: $(cat "$TMP/mem")"; fi
done

# ... unless its receive buffer (a bucket's 1/N) breaks --mem-limit: then 4 MB buckets. A model
# whose gradient (44 MB) is well above 4 MB, given a limit 1 MiB under its whole-bucket plan
SMALL=(--model small --batch 4 --seq-len 64 --steps 1 --threads 1 --quiet)
"${MPIRUN[@]}" -np 2 "$BIN" train "${SMALL[@]}" --dp 2 --log "$TMP/bw.jsonl" >/dev/null 2>&1 || bad "small dp 2 run"
lim=$(/usr/bin/python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['memory_plan_bytes']['total'] - 2**20)" "$TMP/bw.jsonl")
"${MPIRUN[@]}" -np 2 "$BIN" train "${SMALL[@]}" --dp 2 --mem-limit "$lim" --log "$TMP/b4.jsonl" >/dev/null 2>&1 || bad "small dp 2 under --mem-limit $lim"
if /usr/bin/python3 - "$TMP/bw.jsonl" "$TMP/b4.jsonl" >"$TMP/bmem" 2>&1 <<'PY'
import json, sys
w, f = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
bw, bf = w[0]["layout"]["bucket_mb"], f[0]["layout"]["bucket_mb"]
pw, pf = w[0]["memory_plan_bytes"]["total"], f[0]["memory_plan_bytes"]["total"]
msgs = [] if (bw, bf) == ("whole", 4) else [f"buckets {bw!r}, {bf!r}: expected 'whole', 4"]
if f[-1]["peak_mem_bytes"] != pf: msgs.append(f"plan {pf} != peak {f[-1]['peak_mem_bytes']}")
print(f"whole-gradient plan {pw} B; under --mem-limit {pw - 2**20} B: bucket {bf} MB, plan {pf} B = peak", *msgs)
sys.exit(1 if msgs else 0)
PY
then ok "default bucket under --mem-limit: $(cat "$TMP/bmem")"; else bad "default bucket under --mem-limit: $(cat "$TMP/bmem")"; fi

# a bad layout on 4 ranks: every rank exits 2 with the same message, without a hang (a hang is
# stopped by `timeout` and fails with its exit status 124; no duration is asserted)
timeout -k 5 60 "${MPIRUN[@]}" -np 4 "$BIN" train "${MODEL[@]}" --dp 3 >"$TMP/bad.out" 2>"$TMP/bad.err"; code=$?
n=$(grep -c "mptrain: error: .*--dp 3" "$TMP/bad.err")
if [ "$code" = 2 ] && [ "$n" = 4 ]; then ok "bad layout: exit 2 on all 4 ranks: $(head -1 "$TMP/bad.err")"
else bad "bad layout: exit $code, $n messages: $(cat "$TMP/bad.err" | head -5)"; fi
timeout -k 5 60 "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --batch 6 --microbatches 2 >/dev/null 2>"$TMP/bad2.err"; code=$?
[ "$code" = 2 ] && grep -q "divisible" "$TMP/bad2.err" && ok "batch not divisible by dp*m: exit 2" || bad "batch check: exit $code $(cat "$TMP/bad2.err")"

# a checkpoint saved under dp 4 / ZeRO-3 resumes under dp 1 and dp 2 / ZeRO-2 with the same losses
"${MPIRUN[@]}" -np 4 "$BIN" train "${MODEL[@]}" --dp 4 --zero 3 --save "$TMP/x4" --save-every 3 \
  --log "$TMP/x4.jsonl" >/dev/null 2>&1 || bad "dp4 zero3 run with checkpoints"
"$BIN" train "${MODEL[@]}" --resume "$TMP/x4/step_000003" --log "$TMP/x1.jsonl" --save "$TMP/x1" >/dev/null 2>&1 \
  || bad "resume at dp 1"
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --zero 2 --resume "$TMP/x4/step_000003" \
  --log "$TMP/x2.jsonl" --save "$TMP/x2" >/dev/null 2>&1 || bad "resume at dp 2"
for n in 1 2; do
  grep -v '"step":[123],' "$TMP/x4.jsonl" > "$TMP/x4tail.jsonl"
  if /usr/bin/python3 "$HERE/compare_runs.py" "$TMP/x$n.jsonl" "$TMP/x$n/latest/model.safetensors" \
       "$TMP/x4tail.jsonl" "$TMP/x4/latest/model.safetensors" >"$TMP/cmp" 2>&1; then
    ok "dp4/zero3 checkpoint resumed at dp $n: $(tr '\n' ' ' < "$TMP/cmp")"
  else bad "resume across layouts (dp $n): $(tr '\n' ' ' < "$TMP/cmp")"; fi
done

# the watchdog: rank 1 stalls before step 3 (for the default --debug-stall-seconds, an hour);
# rank 0 reports where it waits (the gradient ring waiting for its neighbour) and the job ends.
# A job that waited for the stalled rank instead is stopped by `timeout` (exit 124, or 137 after the kill) and fails; no duration is asserted.
timeout -k 5 120 "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --comm-timeout 3 --debug-stall-rank 1 \
  --debug-stall-step 3 >/dev/null 2>"$TMP/wd.err"; code=$?
if [ "$code" != 0 ] && [ "$code" != 124 ] && [ "$code" != 137 ] &&
   grep -Eq "rank 0: stuck for 3 s in recv on group dp \\(peer 1\\) at step 3" "$TMP/wd.err"; then
  ok "watchdog: exit $code: $(grep 'stuck' "$TMP/wd.err" | head -1)"
else bad "watchdog: exit $code: $(head -5 "$TMP/wd.err")"; fi

finish
