#!/usr/bin/env bash
# Pipeline parallelism: every schedule and split trains like one rank (5 steps' losses and final
# weights within 1e-5 relative), with recomputation and composed with tp, dp and ZeRO 1/2/3; the
# memory plan counts the activation sets the schedule keeps (1F1B stage 0: p, GPipe: m) and
# every rank's measured peak equals its plan; bad input exits 2.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
MODEL=(--model tiny --layers 4 --d-model 32 --heads 4 --ffn 64 --seq-len 32 --batch 8 --steps 5
       --threads 1 --quiet --lr 3e-3)

# run NAME NP ARGS...: a run with a log and a final checkpoint
run() {
  local name=$1 np=$2; shift 2
  local launch=("$BIN"); [ "$np" -gt 1 ] && launch=("${MPIRUN[@]}" -np "$np" "$BIN")
  timeout 120 "${launch[@]}" train "${MODEL[@]}" "$@" --log "$TMP/$name.jsonl" --save "$TMP/$name" \
     >"$TMP/$name.out" 2>&1 || { bad "$name failed: $(tail -3 "$TMP/$name.out")"; return 1; }
}
# same NAME REF
same() {
  local w=""
  if w=$("${CMP[@]}" "$TMP/$1.jsonl" "$TMP/$1/latest/model.safetensors" "$TMP/$2.jsonl" "$TMP/$2/latest/model.safetensors" 2>&1); then
    ok "$1 = $2: $(echo $w)"
  else bad "$1 differs from $2: $(echo $w)"; fi
}

for m in 1 4 8; do run ref$m 1 --microbatches $m; done
for p in 2 4; do
  for s in naive gpipe 1f1b; do
    for m in 1 4 8; do run pp$p-$s-m$m $p --pp $p --schedule $s --microbatches $m && same pp$p-$s-m$m ref$m; done
  done
done

# every step line of a pipeline run has the measured bubble and the schedule replayed on its
# measured costs (bubble_sim per action, bubble_sim_mean per stage mean), fractions in [0, 1); a
# one-stage run has none (no timing
# is asserted: the values depend on the machine)
/usr/bin/python3 - "$TMP/pp2-1f1b-m4.jsonl" "$TMP/ref4.jsonl" >"$TMP/bsim" <<'PY' && ok "bubble_sim: $(cat "$TMP/bsim")" || bad "bubble_sim: $(cat "$TMP/bsim")"
import json, sys
pp = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l and '"event"' not in l]
one = [json.loads(l) for l in open(sys.argv[2]) if '"step"' in l and '"event"' not in l]
good = len(pp) == 5 and all(0 <= x.get("bubble", -1) < 1 and 0 <= x.get("bubble_sim", -1) < 1 for x in pp)
good = good and all(0 <= x.get("bubble_sim_mean", -1) < 1 for x in pp)  # the per-stage-mean replay
good = good and not any("bubble" in x or "bubble_sim" in x or "bubble_sim_mean" in x for x in one)
print(f"pp 2 1f1b m 4: {len(pp)} steps, bubble_sim " + " ".join(f"{x.get('bubble_sim', 'missing')}"[:6] for x in pp))
sys.exit(0 if good else 1)
PY

# activation checkpointing, alone and in the pipeline: the same numbers; full recompute keeps
# less. Selective keeps exactly what none keeps: the fused attention stores no s^2 term for it
# to drop (model/gpt.h)
for rc in selective full; do
  run rc-$rc 1 --microbatches 4 --recompute $rc && same rc-$rc ref4
  run pp2-rc-$rc 2 --pp 2 --microbatches 4 --recompute $rc && same pp2-rc-$rc ref4
done
/usr/bin/python3 - "$TMP/ref4.jsonl" "$TMP/rc-selective.jsonl" "$TMP/rc-full.jsonl" >"$TMP/rcmem" <<'PY' && ok "recompute memory: $(cat "$TMP/rcmem")" || bad "recompute memory: $(cat "$TMP/rcmem")"
import json, sys
act = [json.loads(open(f).readline())["memory_plan_bytes"]["activations"] for f in sys.argv[1:]]
print(f"activations none {act[0]}, selective {act[1]}, full {act[2]} bytes")
sys.exit(0 if act[0] == act[1] > act[2] else 1)
PY

# compositions
run pp2tp2 4 --pp 2 --tp 2 --microbatches 4 && same pp2tp2 ref4
run pp2tp2sp 4 --pp 2 --tp 2 --sp --microbatches 4 && same pp2tp2sp ref4
for z in 1 2 3; do run pp2dp2z$z 4 --pp 2 --dp 2 --zero $z --microbatches 2 && same pp2dp2z$z ref4; done
# ZeRO-3 in a pipeline keeps its memory promise by default (--zero3-gather layer): parameters
# are the 1/N slice plus the per-layer working copies (4P/N + 4*pool bytes on stage 0), as
# without a pipeline. --zero3-gather step gathers each unit of the stage once per step (stage 0
# here: embeddings and 2 blocks = 3 all-gathers a step, not one per micro-batch pass; the final
# checkpoint adds none: it streams the slices to the writer point to point) for 4P more bytes.
run pp2dp2z3step 4 --pp 2 --dp 2 --zero 3 --microbatches 2 --zero3-gather step && same pp2dp2z3step ref4
/usr/bin/python3 - "$TMP/pp2dp2z3.jsonl" "$TMP/pp2dp2z3step.jsonl" >"$TMP/z3" <<'PY' && ok "ZeRO-3 x pp: $(cat "$TMP/z3")" || bad "ZeRO-3 x pp: $(cat "$TMP/z3")"
import json, sys
good, msgs = True, []
for f, want_mode in zip(sys.argv[1:], ("layer", "step")):
    l = [json.loads(x) for x in open(f)]
    mode, calls, steps = l[0]["layout"]["zero3_gather"], l[-1]["comm"]["dp"]["allgather"]["calls"], l[-1]["steps"]
    plan = l[0]["memory_plan_bytes"]
    P, pool, R = plan["param_elements"], plan["zero_pool_elements"], 2
    want_params = 4 * P // R + 4 * (pool if mode == "layer" else P)
    good &= mode == want_mode and plan["params"] == want_params
    if mode == "step":
        good &= calls == 3 * steps
    msgs.append(f"{mode}: stage 0 params {plan['params']} bytes (P={P}, pool={pool}, want {want_params}), {calls} all-gathers over {steps} steps and a checkpoint")
print("; ".join(msgs))
sys.exit(0 if good else 1)
PY
run pp2tp2dp2 8 --pp 2 --tp 2 --dp 2 --zero 1 --microbatches 2 && same pp2tp2dp2 ref4
run pp2untied 2 --pp 2 --microbatches 4 --untied && run ref4untied 1 --microbatches 4 --untied && same pp2untied ref4untied

# uneven layers: 5 blocks over 2 and 3 stages, auto and explicit splits
MODEL=(--model tiny --layers 5 --d-model 32 --heads 4 --ffn 64 --seq-len 32 --batch 8 --steps 5 --threads 1 --quiet --lr 3e-3)
run ref5 1 --microbatches 4
run pp2auto 2 --pp 2 --partition auto --microbatches 4 && same pp2auto ref5
run pp3list 3 --pp 3 --partition 1,3,1 --microbatches 4 && same pp3list ref5
grep -q '"stage_layers":\[1,3,1\]' "$TMP/pp3list.jsonl" && ok "partition 1,3,1 logged" || bad "partition not in the log"
# auto keeps every stage's plan under --mem-limit: [3,2] plans 1334272 / 1130496 bytes and
# [2,3] 996864 / 1467904 (checkpoint staging included), so 1.34 MB admits only [3,2]
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 --partition auto --microbatches 4 --steps 1 \
  --mem-limit 1340000 --log "$TMP/auto.jsonl" >/dev/null 2>&1 && grep -q '"stage_layers":\[3,2\]' "$TMP/auto.jsonl" \
  && ok "auto under --mem-limit 1340000 picks [3,2]" || bad "auto with a memory limit"
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 --partition auto --microbatches 4 --mem-limit 1300000 >/dev/null 2>"$TMP/e0"; c=$?
[ $c = 2 ] && grep -q "no split" "$TMP/e0" && ok "auto with no split under the limit: exit 2" || bad "auto no split: exit $c $(cat "$TMP/e0")"

# memory: each rank's measured peak equals its plan; 1F1B's first stage keeps p activation sets,
# GPipe's keeps m
/usr/bin/python3 - "$TMP" >"$TMP/mem" <<'PY' && ok "pipeline memory: $(cat "$TMP/mem")" || bad "pipeline memory: $(cat "$TMP/mem")"
import json, sys, os
tmp, msgs, good = sys.argv[1], [], True
for name, p, m, sets0 in [("pp4-1f1b-m8", 4, 8, 4), ("pp4-gpipe-m8", 4, 8, 8), ("pp2-1f1b-m8", 2, 8, 2), ("pp4-naive-m8", 4, 8, 1)]:
    lines = [json.loads(l) for l in open(os.path.join(tmp, name + ".jsonl"))]
    ranks = lines[-1]["ranks"]
    if len(ranks) != p:   # one entry per rank, or the loop below checks fewer than it claims
        good = False; msgs.append(f"{name}: {len(ranks)} ranks in the end line, expected {p}")
        continue
    for i, r in enumerate(ranks):
        if r["planned_mem_bytes"] != r["peak_mem_bytes"] or r["planned_activation_bytes"] != r["peak_activation_bytes"]:
            good = False; msgs.append(f"{name} rank {i}: plan {r['planned_mem_bytes']} peak {r['peak_mem_bytes']}")
    # stage 0's activation bytes divided by one set's bytes (from the single-set, m=1 run of the same split)
    one = json.loads(open(os.path.join(tmp, f"pp{p}-naive-m8.jsonl")).readlines()[-1])["ranks"][0]["planned_activation_bytes"]
    held = ranks[0]["planned_activation_bytes"] / one
    msgs.append(f"{name}: stage 0 holds {held:g} sets")
    good &= held == sets0
print("; ".join(msgs))
sys.exit(0 if good else 1)
PY

# --trace: one process per rank, compute events F/B for every micro-batch, communication events
"${MPIRUN[@]}" -np 4 "$BIN" train "${MODEL[@]}" --pp 2 --dp 2 --microbatches 4 --steps 2 --trace "$TMP/trace.json" >/dev/null 2>&1
/usr/bin/python3 - "$TMP/trace.json" >"$TMP/tr" <<'PY' && ok "trace: $(cat "$TMP/tr")" || bad "trace: $(cat "$TMP/tr")"
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
good = True
for rank in range(4):
    names = [e["name"] for e in ev if e["pid"] == rank and e["tid"] == 0]
    for mb in range(4):
        good &= names.count(f"F{mb}") == 2 and names.count(f"B{mb}") == 2
    good &= any(e["pid"] == rank and e["tid"] == 1 for e in ev)
print(f"{len(ev)} events over 4 ranks; F0-3 and B0-3 twice (2 steps) on every rank, communication on every rank: {good}")
sys.exit(0 if good else 1)
PY

# bad input: exit 2 with a message on every rank
"${MPIRUN[@]}" -np 4 "$BIN" train --model tiny --layers 3 --seq-len 32 --batch 8 --threads 1 --quiet --pp 4 >/dev/null 2>"$TMP/e1"; c=$?
[ $c = 2 ] && [ "$(grep -c 'more pipeline stages than' "$TMP/e1")" = 4 ] && ok "pp > layers: $(head -1 "$TMP/e1")" || bad "pp > layers: exit $c $(cat "$TMP/e1")"
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 --partition 2,2 >/dev/null 2>"$TMP/e2"; c=$?
[ $c = 2 ] && grep -q "adds up to 4 blocks" "$TMP/e2" && ok "bad partition: $(head -1 "$TMP/e2")" || bad "bad partition: exit $c $(cat "$TMP/e2")"
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 --schedule interleaved --microbatches 4 >/dev/null 2>"$TMP/e3"; c=$?
[ $c = 2 ] && grep -q "error" "$TMP/e3" && ok "unsupported schedule: $(head -1 "$TMP/e3")" || bad "schedule: exit $c $(cat "$TMP/e3")"
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 --schedule zigzag >/dev/null 2>"$TMP/e4"; c=$?
[ $c = 2 ] && grep -q "zigzag" "$TMP/e4" && ok "unknown schedule: $(head -1 "$TMP/e4")" || bad "unknown schedule: exit $c $(cat "$TMP/e4")"

finish
