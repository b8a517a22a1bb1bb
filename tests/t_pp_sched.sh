#!/usr/bin/env bash
# Pipeline schedules beyond 1F1B in the trainer (issue 11). Interleaved 1F1B (2 and 3 chunks per
# rank), ZB-H1 (split backward) and ZB-V (two chunks per rank in a V) train like one rank (5
# steps' losses and final weights within 1e-5 relative) on pp 2 and 4, composed with dp 2
# (interleaved: ZeRO-1 and 2; zb-h1, zb-v: ZeRO-1, 2 and 3, the gradients staged by W), tp 2
# (zb-h1 also with sp) and full recompute (zb: W recomputes the blocks); evaluation gives one rank's
# validation loss; every rank's measured peak equals its plan, which counts each chunk's
# activation sets from the schedule's action list; a checkpoint of an interleaved run resumes
# under 1F1B; the trace shows F, B and W apart; what they cannot run exits 2 with the reason.
# Models are tiny (d 32): about two minutes on two shared cores.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
base() { # base LAYERS: the model options
  MODEL=(--model tiny --layers "$1" --d-model 32 --heads 4 --ffn 64 --seq-len 32 --batch 8 --steps 5
         --threads 1 --quiet --lr 3e-3)
}

# run NAME NP ARGS...: a run with a log and a final checkpoint
run() {
  local name=$1 np=$2; shift 2
  local launch=("$BIN"); [ "$np" -gt 1 ] && launch=("${MPIRUN[@]}" -np "$np" "$BIN")
  timeout 120 "${launch[@]}" train "${MODEL[@]}" "$@" --comm-timeout 60 --log "$TMP/$name.jsonl" \
     --save "$TMP/$name" >"$TMP/$name.out" 2>&1 || { bad "$name failed: $(tail -3 "$TMP/$name.out")"; return 1; }
}
# same NAME REF
same() {
  local w=""
  if w=$("${CMP[@]}" "$TMP/$1.jsonl" "$TMP/$1/latest/model.safetensors" "$TMP/$2.jsonl" "$TMP/$2/latest/model.safetensors" 2>&1); then
    ok "$1 = $2: $(echo $w)"
  else bad "$1 differs from $2: $(echo $w)"; fi
}
IL=(--schedule interleaved)

base 4
run ref4 1 --microbatches 4
run il-p2v2 2 --pp 2 "${IL[@]}" --virtual-stages 2 --microbatches 4 && same il-p2v2 ref4
run il-p2v2-dp2z2 4 --pp 2 --dp 2 --zero 2 "${IL[@]}" --virtual-stages 2 --microbatches 2 && same il-p2v2-dp2z2 ref4
run il-p2v2-dp2z1 4 --pp 2 --dp 2 --zero 1 "${IL[@]}" --virtual-stages 2 --microbatches 2 && same il-p2v2-dp2z1 ref4
run il-p2v2-tp2 4 --pp 2 --tp 2 "${IL[@]}" --virtual-stages 2 --microbatches 4 && same il-p2v2-tp2 ref4
# zb-h1: the backward split into B (input gradients) and W (weight gradients, deferred)
ZB=(--schedule zb-h1)
run zb-p2 2 --pp 2 "${ZB[@]}" --microbatches 4 && same zb-p2 ref4
# zb-v: two chunks per rank in a V; the embedding and the tied head both on rank 0
ZV=(--schedule zb-v)
run zv-p2 2 --pp 2 "${ZV[@]}" --microbatches 4 && same zv-p2 ref4
run zv-p2-dp2z1 4 --pp 2 --dp 2 --zero 1 "${ZV[@]}" --microbatches 2 && same zv-p2-dp2z1 ref4
run zv-p2-tp2 4 --pp 2 --tp 2 "${ZV[@]}" --microbatches 4 && same zv-p2-tp2 ref4
run zb-p2-dp2z1 4 --pp 2 --dp 2 --zero 1 "${ZB[@]}" --microbatches 2 && same zb-p2-dp2z1 ref4
run zb-p2-tp2 4 --pp 2 --tp 2 "${ZB[@]}" --microbatches 4 && same zb-p2-tp2 ref4
# the split backward with ZeRO-2/3 (W stages and reduces a block's gradients), sp (own D-wide
# stash slots) and full recompute (W runs the block's forward again)
run zb-p2-dp2z2 4 --pp 2 --dp 2 --zero 2 "${ZB[@]}" --microbatches 2 && same zb-p2-dp2z2 ref4
run zb-p2-dp2z3 4 --pp 2 --dp 2 --zero 3 "${ZB[@]}" --microbatches 2 && same zb-p2-dp2z3 ref4
run zv-p2-dp2z2 4 --pp 2 --dp 2 --zero 2 "${ZV[@]}" --microbatches 2 && same zv-p2-dp2z2 ref4
run zv-p2-dp2z3 4 --pp 2 --dp 2 --zero 3 "${ZV[@]}" --microbatches 2 && same zv-p2-dp2z3 ref4
run zb-p2-tp2sp 4 --pp 2 --tp 2 --sp "${ZB[@]}" --microbatches 4 && same zb-p2-tp2sp ref4
run zb-p2-rc 2 --pp 2 "${ZB[@]}" --microbatches 4 --recompute full && same zb-p2-rc ref4
run zv-p2-rc 2 --pp 2 "${ZV[@]}" --microbatches 4 --recompute full && same zv-p2-rc ref4
run zb-p2-dp2z3-rc 4 --pp 2 --dp 2 --zero 3 "${ZB[@]}" --microbatches 2 --recompute full && same zb-p2-dp2z3-rc ref4
base 6
run ref6 1 --microbatches 4
run il-p2v3 2 --pp 2 "${IL[@]}" --virtual-stages 3 --microbatches 4 && same il-p2v3 ref6
base 8
run ref8 1 --microbatches 4
run il-p4v2 4 --pp 4 "${IL[@]}" --virtual-stages 2 --microbatches 4 && same il-p4v2 ref8
run il-p4v2-rc 4 --pp 4 "${IL[@]}" --virtual-stages 2 --microbatches 4 --recompute full && same il-p4v2-rc ref8
run zb-p4 4 --pp 4 "${ZB[@]}" --microbatches 8 && same zb-p4 ref8
run zv-p4 4 --pp 4 "${ZV[@]}" --microbatches 8 && same zv-p4 ref8

# memory: every rank's measured peak equals its plan; the plan counts the activation sets of
# each chunk that the action list keeps alive at once
/usr/bin/python3 - "$TMP" >"$TMP/mem" <<'PY' && ok "interleaved memory: $(cat "$TMP/mem")" || bad "interleaved memory: $(cat "$TMP/mem")"
import json, sys, os
tmp, msgs, good = sys.argv[1], [], True
for name, p in [("il-p2v2", 2), ("il-p2v3", 2), ("il-p4v2", 4), ("il-p2v2-dp2z2", 4), ("il-p4v2-rc", 4),
                ("zb-p2", 2), ("zb-p4", 4), ("zb-p2-tp2", 4), ("zv-p2", 2), ("zv-p4", 4),
                ("zv-p2-dp2z1", 4), ("zb-p2-dp2z2", 4), ("zb-p2-dp2z3", 4), ("zv-p2-dp2z2", 4),
                ("zv-p2-dp2z3", 4), ("zb-p2-tp2sp", 4), ("zb-p2-rc", 2), ("zv-p2-rc", 2),
                ("zb-p2-dp2z3-rc", 4)]:
    lines = [json.loads(l) for l in open(os.path.join(tmp, name + ".jsonl"))]
    ranks = lines[-1]["ranks"]
    if len(ranks) != p:
        good = False; msgs.append(f"{name}: {len(ranks)} ranks in the end line, expected {p}"); continue
    for i, r in enumerate(ranks):
        if r["planned_mem_bytes"] != r["peak_mem_bytes"] or r["planned_activation_bytes"] != r["peak_activation_bytes"]:
            good = False; msgs.append(f"{name} rank {i}: plan {r['planned_mem_bytes']} peak {r['peak_mem_bytes']}")
    msgs.append(f"{name}: plan = peak on {p} ranks, rank 0 activations {ranks[0]['planned_activation_bytes']}")
print("; ".join(msgs))
sys.exit(0 if good else 1)
PY

# zb-h1's activation memory is 1F1B's (issue 11 items 2 and 3): W's stash lives in the
# activations B has finished with, the until-B slots (the head's, the received gradient) come
# from a pool of their own counted from F to B, and a receive posted after a W reuses W's set.
# Per rank: equal on rank 0, and no rank above 1F1B's largest. ZB-H1 keeps p micro-batches
# between F and W on every rank (1F1B: p - rank), so the last stage holds p sets of its blocks
# and one head: it stays under 1F1B's largest (rank 0's p sets with their boundary tensors)
# while the head is light, hence a 32-token vocabulary at pp 4
/usr/bin/python3 "$HERE/torch_ref.py" --make-data "$TMP/v32.bin" --vocab 32 --tokens 20000 --seed 1 >/dev/null
base 8
MODEL+=(--steps 1)
run mem-1f1b-p2 2 --pp 2 --microbatches 8
run mem-zb-p2 2 --pp 2 "${ZB[@]}" --microbatches 8
run mem-1f1b-p4 4 --pp 4 --microbatches 8 --vocab 32 --data "$TMP/v32.bin"
run mem-zb-p4 4 --pp 4 "${ZB[@]}" --microbatches 8 --vocab 32 --data "$TMP/v32.bin"
/usr/bin/python3 - "$TMP" >"$TMP/zbmem" <<'PY' && ok "zb-h1 memory: $(cat "$TMP/zbmem")" || bad "zb-h1 memory: $(cat "$TMP/zbmem")"
import json, sys, os
good, msgs = True, []
for p in (2, 4):
    act = {}
    for s in ("1f1b", "zb"):
        ranks = [json.loads(l) for l in open(os.path.join(sys.argv[1], f"mem-{s}-p{p}.jsonl"))][-1]["ranks"]
        good &= all(r["planned_activation_bytes"] == r["peak_activation_bytes"] for r in ranks)
        act[s] = [r["peak_activation_bytes"] for r in ranks]
    good &= act["zb"][0] == act["1f1b"][0] and max(act["zb"]) <= max(act["1f1b"])
    msgs.append(f"pp {p}: 1f1b {act['1f1b']}, zb-h1 {act['zb']}")
print("; ".join(msgs))
sys.exit(0 if good else 1)
PY

# the log has the schedule and its chunks, and the bubble replayed on the measured costs
/usr/bin/python3 - "$TMP/il-p2v2.jsonl" >"$TMP/lg" <<'PY' && ok "log: $(cat "$TMP/lg")" || bad "log: $(cat "$TMP/lg")"
import json, sys
l = [json.loads(x) for x in open(sys.argv[1])]
lay = l[0]["layout"]
steps = [x for x in l if "step" in x and "event" not in x]
good = lay["schedule"] == "interleaved" and lay["virtual_stages"] == 2
good = good and len(steps) == 5 and all(0 <= x["bubble"] < 1 and 0 <= x["bubble_sim"] < 1 for x in steps)
print(f"schedule {lay['schedule']} v {lay.get('virtual_stages')}, bubble_sim {steps[-1].get('bubble_sim')}")
sys.exit(0 if good else 1)
PY

# --trace: zb-h1 shows F, B and W of every micro-batch on every rank, W after its B
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 "${ZB[@]}" --microbatches 4 --steps 1 \
  --trace "$TMP/trace.json" >/dev/null 2>&1
/usr/bin/python3 - "$TMP/trace.json" >"$TMP/tr" <<'PY' && ok "trace: $(cat "$TMP/tr")" || bad "trace: $(cat "$TMP/tr")"
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
good = True
for rank in range(2):
    names = [e["name"] for e in sorted(ev, key=lambda e: e["ts"]) if e["pid"] == rank and e["tid"] == 0]
    for mb in range(4):
        good &= all(names.count(f"{k}{mb}") == 1 for k in "FBW")
        good &= f"B{mb}" in names and f"W{mb}" in names and names.index(f"B{mb}") < names.index(f"W{mb}")
print(f"{len(ev)} events; F, B and W of micro-batches 0-3 once each on both ranks, W after B: {good}")
sys.exit(0 if good else 1)
PY

# --trace with two chunks per rank (zb-v): the names carry the chunk, F0.0 and F0.1 on rank 0
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 "${ZV[@]}" --microbatches 4 --steps 1 \
  --trace "$TMP/trace-v.json" >/dev/null 2>&1
/usr/bin/python3 - "$TMP/trace-v.json" >"$TMP/trv" <<'PY' && ok "zb-v trace: $(cat "$TMP/trv")" || bad "zb-v trace: $(cat "$TMP/trv")"
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X" and e["pid"] == 0 and e["tid"] == 0]
names = {e["name"] for e in ev}
good = all(f"{k}{mb}.{c}" in names for k in "FBW" for mb in range(4) for c in range(2))
print(f"rank 0: {len(ev)} events; F, B, W of micro-batches 0-3 on chunks 0 and 1: {good}")
sys.exit(0 if good else 1)
PY

# evaluation walks the chunks in stage order: the same validation loss as one rank
base 4
MODEL+=(--steps 2 --val-fraction 0.1 --eval-every 2)
run ev-one 1 --microbatches 4
run ev-il 2 --pp 2 "${IL[@]}" --virtual-stages 2 --microbatches 4
run ev-zv 2 --pp 2 "${ZV[@]}" --microbatches 4
/usr/bin/python3 - "$TMP" >"$TMP/ev" <<'PY' && ok "val_loss: $(cat "$TMP/ev")" || bad "val_loss: $(cat "$TMP/ev")"
import json, sys, os
v = {}
for n in ("ev-one", "ev-il", "ev-zv"):
    s = [json.loads(x) for x in open(os.path.join(sys.argv[1], n + ".jsonl")) if '"val_loss"' in x]
    v[n] = s[-1]["val_loss"] if s else None
vals = list(v.values())
good = None not in vals and max(vals) - min(vals) <= 1e-5 * abs(vals[0])
print(" ".join(f"{k} {x}" for k, x in v.items()))
sys.exit(0 if good else 1)
PY

# a checkpoint of an interleaved run (chunks round the ranks) resumes under plain 1F1B and on
# one rank: the same step-6 loss
base 4
MODEL+=(--steps 6)
run res-il 2 --pp 2 --resume "$TMP/il-p2v2" --microbatches 4 "${IL[@]}" --virtual-stages 2
run res-1f1b 2 --pp 2 --resume "$TMP/il-p2v2" --microbatches 4
run res-one 1 --resume "$TMP/il-p2v2" --microbatches 4
/usr/bin/python3 - "$TMP" >"$TMP/res" <<'PY' && ok "resume: $(cat "$TMP/res")" || bad "resume: $(cat "$TMP/res")"
import json, sys, os
loss = {}
for n in ("res-il", "res-1f1b", "res-one"):
    s = [json.loads(x) for x in open(os.path.join(sys.argv[1], n + ".jsonl")) if '"step"' in x and '"event"' not in x]
    loss[n] = s[-1]["loss"] if s and s[-1]["step"] == 6 else None
vals = list(loss.values())
good = None not in vals and max(vals) - min(vals) <= 1e-5 * abs(vals[0])
print(" ".join(f"{k} {v}" for k, v in loss.items()))
sys.exit(0 if good else 1)
PY

# what interleaved cannot run: exit 2 on every rank, with the reason
base 4
refused "m not a multiple of p" 2 "multiple of --pp" -- "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 "${IL[@]}" --virtual-stages 2 --microbatches 3
refused "layers not in p*v chunks" 2 "equal chunks" -- "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 "${IL[@]}" --virtual-stages 3 --microbatches 4
refused "explicit partition" 2 "partition uniform" -- "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 "${IL[@]}" --virtual-stages 2 --microbatches 4 --partition 1,3
refused "v without interleaved" 2 "virtual-stages" -- "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 --virtual-stages 2 --microbatches 4
refused "interleaved with v 1" 2 "virtual-stages" -- "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --pp 2 "${IL[@]}" --microbatches 4
refused "zb-v with an odd chunk count" 2 "equal chunks" -- "${MPIRUN[@]}" -np 2 "$BIN" train --model tiny --layers 6 --d-model 32 --heads 4 --ffn 64 --seq-len 32 --batch 8 --threads 1 --quiet --pp 2 "${ZV[@]}" --microbatches 4

finish
