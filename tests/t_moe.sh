#!/usr/bin/env bash
# Mixture-of-Experts and expert parallelism (model/moe.h, parallel/ep.h): every expert-parallel
# layout trains like one rank with the same micro-batches (5 steps' losses, the logged aux loss
# and the final weights within 1e-5 relative, dropless), the memory plan equals the measured
# peak on every rank with E/ep experts per rank (ZeRO 1-3: those experts sharded over the edp
# group, parallel/dp.h), a checkpoint saved under one ep (and ZeRO stage) resumes under
# another, ep composes with cp and with the
# zero-bubble and interleaved schedules (the MoE split backward) and with tp + sp (each tp rank
# routes its own rows), a step whose routing exceeds the dropless bound stops every rank with
# exit 1, and layouts that do not compose yet end with exit 2 on every rank.
# The aux loss is per micro-batch (Megatron's convention), so the one-rank reference runs the
# replicas' micro-batches in order: dp d with m micro-batches = one rank with d*m.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
BIN=$(cd "$(dirname "$BIN")" && pwd)/mptrain   # refused runs in directories of their own
MODEL=(--model tiny --layers 3 --d-model 32 --heads 2 --seq-len 16 --batch 8 --steps 5
       --threads 1 --quiet --lr 3e-3 --experts 4 --top-k 2 --moe-every 2
       --lr-schedule constant)

# dispatch and combine alone (tests/mpi_ep.c): exact rows, order and local experts, with ranks
# that send or receive nothing
for np in 2 3; do
  if timeout -k 5 60 "${MPIRUN[@]}" -np $np "$(dirname "$BIN")/tests/mpi_ep" >"$TMP/mpi_ep" 2>&1; then
    ok "$(tail -1 "$TMP/mpi_ep")"
  else
    bad "mpi_ep on $np ranks: $(tail -5 "$TMP/mpi_ep")"
  fi
done

for m in 2 4 8; do
  "$BIN" train "${MODEL[@]}" --microbatches $m --log "$TMP/ref$m.jsonl" --save "$TMP/ref$m" \
    || bad "single-rank reference (m=$m)"
done

# name np reference-microbatches options...
layout() {
  local name=$1 np=$2 m=$3; shift 3
  if ! timeout -k 5 300 "${MPIRUN[@]}" -np "$np" "$BIN" train "${MODEL[@]}" "$@" \
       --log "$TMP/$name.jsonl" --save "$TMP/$name" >"$TMP/$name.out" 2>&1; then
    bad "$name: run failed: $(tail -3 "$TMP/$name.out")"; return
  fi
  if "${CMP[@]}" "$TMP/$name.jsonl" "$TMP/$name/latest/model.safetensors" \
       "$TMP/ref$m.jsonl" "$TMP/ref$m/latest/model.safetensors" --rtol 1e-5 >"$TMP/cmp" 2>&1; then
    ok "$name = one rank: $(tr '\n' ' ' < "$TMP/cmp")"
  else
    bad "$name differs from one rank: $(tr '\n' ' ' < "$TMP/cmp")"
  fi
  # the aux loss, the expert loads and the plan = peak per memory kind
  if /usr/bin/python3 - "$TMP/$name.jsonl" "$TMP/ref$m.jsonl" >"$TMP/aux" 2>&1 <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
msgs, worst = [], 0.0
for x, y in zip(a[1:-1], b[1:-1]):
    r = abs(x["aux_loss"] - y["aux_loss"]) / abs(y["aux_loss"])
    worst = max(worst, r)
    if r > 1e-5: msgs.append(f"step {x['step']}: aux_loss {x['aux_loss']} vs {y['aux_loss']}")
    if x["expert_tokens"] != y["expert_tokens"]:
        msgs.append(f"step {x['step']}: expert_tokens {x['expert_tokens']} vs {y['expert_tokens']}")
plan, peak = a[0]["memory_plan_bytes"], a[-1]["peak_mem_by_kind"]
# by kind: rank 0's plan against the largest measured peak of each kind, which are one rank's
# only without pipeline stages of different sizes (plan_is_peak checks every rank's total)
for k in ("params", "grads", "optimizer", "activations", "workspace"):
    if plan[k] != peak[k] and a[0]["layout"]["pp"] == 1:
        msgs.append(f"{k}: plan {plan[k]} != measured peak {peak[k]}")
print(f"aux_loss max rel diff {worst:.2e}, expert loads equal; params {plan['params']} bytes "
      f"per rank, plan = peak", *msgs)
sys.exit(1 if msgs else 0)
PY
  then ok "$name: $(cat "$TMP/aux")"; else bad "$name: $(cat "$TMP/aux")"; fi
  plan_is_peak "$name"
}

layout ep2 2 2 --dp 2 --ep 2
layout ep4 4 4 --dp 4 --ep 4
layout dp4-ep2 4 4 --dp 4 --ep 2
layout ep2-m2 2 4 --dp 2 --ep 2 --microbatches 2
layout ep2-pp2 4 4 --dp 2 --ep 2 --pp 2 --microbatches 2
layout ep2-tp2 4 2 --dp 2 --ep 2 --tp 2
# sequence parallelism: each tp rank routes only its own rows (the counts f and the router's
# and experts' gradients summed over tp), alone and with ep 2 x ZeRO-1
layout tp2-sp 2 2 --tp 2 --sp --microbatches 2
layout ep2-tp2-sp-zero1 4 2 --dp 2 --ep 2 --tp 2 --sp --zero 1
layout ep2-recompute 2 2 --dp 2 --ep 2 --recompute full
layout ep2-zero1 2 2 --dp 2 --ep 2 --zero 1
layout ep2-zero2 2 2 --dp 2 --ep 2 --zero 2
layout ep2-zero3 2 2 --dp 2 --ep 2 --zero 3
layout dp4-ep2-zero2 4 4 --dp 4 --ep 2 --zero 2
# the experts sliced over an edp group of 2 (ZeRO-3 gathers them over it, per layer or once a
# step), and of 1 (ep 4: each rank's slice is its whole expert part, no staging or gather)
layout dp4-ep2-zero3 4 4 --dp 4 --ep 2 --zero 3
layout dp4-ep2-zero3-step 4 4 --dp 4 --ep 2 --zero 3 --zero3-gather step
layout ep4-zero1 4 4 --dp 4 --ep 4 --zero 1
# with cp the routers' counts f are summed over cp, so the aux loss is the whole micro-batch's:
# ep over dp (dp 2 x cp 2), and ep spanning cp only (cp 2, dp 1)
layout ep2-cp2 4 2 --dp 2 --cp 2 --ep 2
layout cp2-ep2 2 2 --cp 2 --ep 2 --microbatches 2
# the split backward's expert path (model/moe.h): zb-h1 with and without ep, interleaved and
# zb-v (chunked, with and without ep) on 4 blocks against their own one-rank reference
layout ep2-pp2-zbh1 4 4 --dp 2 --ep 2 --pp 2 --microbatches 2 --schedule zb-h1
layout ep2-pp2-zbh1-full 4 4 --dp 2 --ep 2 --pp 2 --microbatches 2 --schedule zb-h1 --recompute full
# W stages a block's dense and expert gradient parts and reduce-scatters them over dp and edp
layout ep2-pp2-zbh1-zero2 4 4 --dp 2 --ep 2 --pp 2 --microbatches 2 --schedule zb-h1 --zero 2
layout pp2-zbh1 2 2 --pp 2 --microbatches 2 --schedule zb-h1
"$BIN" train "${MODEL[@]}" --layers 4 --microbatches 2 --log "$TMP/ref4l.jsonl" --save "$TMP/ref4l" \
  || bad "single-rank reference (4 blocks)"
layout pp2-interleaved 2 4l --pp 2 --microbatches 2 --schedule interleaved --virtual-stages 2 --layers 4
layout pp2-zbv 2 4l --pp 2 --microbatches 2 --schedule zb-v --layers 4
"$BIN" train "${MODEL[@]}" --layers 4 --microbatches 4 --log "$TMP/ref4l4.jsonl" --save "$TMP/ref4l4" \
  || bad "single-rank reference (4 blocks, 4 micro-batches)"
layout ep2-pp2-interleaved 4 4l4 --dp 2 --ep 2 --pp 2 --microbatches 2 --schedule interleaved --virtual-stages 2 --layers 4
layout ep2-pp2-zbv 4 4l4 --dp 2 --ep 2 --pp 2 --microbatches 2 --schedule zb-v --layers 4
# 2bw: MoE on one rank against the serial simulation of the rule (tests/torch_ref.py, losses,
# gradient norms and the aux loss within 1e-5), then pp 2 and ep 2 x pp 2 like one rank with it
/usr/bin/python3 "$HERE/torch_ref.py" --make-data "$TMP/bytes.bin" --vocab 256 --tokens 5000 --seed 0
if timeout 300 /usr/bin/python3 "$HERE/torch_ref.py" --mptrain "$BIN" --workdir "$TMP/ref2bw" \
     --name 2bw-moe --update-rule 2bw --tol 1e-5 -- --data "$TMP/bytes.bin" --layers 2 \
     --d-model 64 --heads 4 --seq-len 32 --batch 4 --microbatches 2 --lr 1e-3 --warmup 2 \
     --steps 4 --schedule 2bw --experts 4 --top-k 2 >"$TMP/ref2bw.out" 2>&1; then
  ok "2bw MoE = its serial simulation: $(grep -E '^  (loss|aux_loss) ' "$TMP/ref2bw.out" | tr -s ' ' | tr '\n' ';')"
else bad "2bw MoE against its serial simulation: $(tail -12 "$TMP/ref2bw.out")"; fi
for m in 2 4; do
  "$BIN" train "${MODEL[@]}" --schedule 2bw --microbatches $m --log "$TMP/ref2bw$m.jsonl" \
    --save "$TMP/ref2bw$m" || bad "single-rank 2bw reference (m=$m)"
done
layout pp2-2bw 2 2bw2 --pp 2 --microbatches 2 --schedule 2bw
layout ep2-pp2-2bw 4 2bw4 --dp 2 --ep 2 --pp 2 --microbatches 2 --schedule 2bw

# each rank holds E/ep experts: at dp 4 (units padded to 64 elements, an MoE block's experts
# starting aligned), ep 2 holds two experts of each of the 2 MoE blocks (0 and 2), ep 4 one
/usr/bin/python3 - "$TMP/dp4-ep2.jsonl" "$TMP/ep4.jsonl" >"$TMP/p" 2>&1 <<'PY'
import json, sys
p2, p4 = (json.loads(open(f).readline())["memory_plan_bytes"]["param_elements"] for f in sys.argv[1:3])
D, F, E = 32, 128, 4
expert = D * F + F + F * D + D
dense = 2 * D + D * 3 * D + 3 * D + D * D + D + 2 * D + D * E   # ln_1, attn, ln_2, router
unit = lambda El: -(-dense // 64) * 64 + -(-(El * expert) // 64) * 64
want = 2 * (unit(2) - unit(1))
print(f"param elements per rank: ep2 {p2}, ep4 {p4}: ep4 holds {p2 - p4} fewer ({want} expected)")
sys.exit(0 if p2 - p4 == want else 1)
PY
if [ $? = 0 ]; then ok "experts per rank: $(cat "$TMP/p")"; else bad "experts per rank: $(cat "$TMP/p")"; fi

# ZeRO 1-3 with ep keep only the rank's E/ep experts (sliced over edp): against the same ZeRO
# stage without ep (every expert in every table, sliced over dp: how ZeRO and ep composed
# before), parameters (ZeRO 1, 2, 3) and gradients (ZeRO 1) per rank drop; the optimizer state
# stays E/dp experts' either way (E/ep experts over dp/ep ranks), give or take the padding
for z in 1 2 3; do
  "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --zero $z --steps 0 --log "$TMP/all$z.jsonl" \
    >/dev/null 2>&1 || bad "dp 2 zero $z without ep: plan"
done
/usr/bin/python3 - "$TMP" >"$TMP/p" 2>&1 <<'PY'
import json, sys
plan = lambda n: json.loads(open(f"{sys.argv[1]}/{n}.jsonl").readline())["memory_plan_bytes"]
out, fail = [], False
for z, fewer in ((1, ("params", "grads")), (2, ("params", "grads")), (3, ("params", "grads"))):
    ep, every = plan(f"ep2-zero{z}"), plan(f"all{z}")
    for k in fewer:
        out.append(f"zero {z} {k} {ep[k]} < {every[k]}")
        fail |= not ep[k] < every[k]
    out.append(f"zero {z} optimizer {ep['optimizer']} <= {every['optimizer']}")
    fail |= not ep["optimizer"] <= every["optimizer"]
print("bytes per rank, dp 2 x ep 2 against every expert sliced over dp:", "; ".join(out))
sys.exit(1 if fail else 0)
PY
if [ $? = 0 ]; then ok "$(cat "$TMP/p")"; else bad "$(cat "$TMP/p")"; fi

# a checkpoint of ep 2 resumes under ep 4, under ep 1 on two ranks and on one rank, each with
# the same micro-batches as the run that saved it, and steps 4-5 match the uninterrupted run
resume() {   # name np cut ref options...
  local name=$1 np=$2 cut=$3 ref=$4; shift 4
  if ! timeout -k 5 300 "${MPIRUN[@]}" -np "$np" "$BIN" train "${MODEL[@]}" "$@" \
       --resume "$TMP/$cut" --log "$TMP/$name.jsonl" >"$TMP/$name.out" 2>&1; then
    bad "$name: $(tail -3 "$TMP/$name.out")"; return
  fi
  /usr/bin/python3 - "$TMP/$name.jsonl" "$TMP/$ref.jsonl" >"$TMP/r" 2>&1 <<'PY'
import json, sys
a = {j["step"]: j for j in map(json.loads, open(sys.argv[1])) if "step" in j}
b = {j["step"]: j for j in map(json.loads, open(sys.argv[2])) if "step" in j}
worst = max(abs(a[s]["loss"] - b[s]["loss"]) / b[s]["loss"] for s in a)
print(f"steps {sorted(a)}: loss max rel diff {worst:.2e} from the uninterrupted run")
sys.exit(0 if sorted(a) == [4, 5] and worst < 1e-5 else 1)
PY
  if [ $? = 0 ]; then ok "$name: $(cat "$TMP/r")"; else bad "$name: $(cat "$TMP/r")"; fi
}
for m in 1 2; do
  "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --ep 2 --microbatches $m --steps 3 \
    --save "$TMP/cut$m" >"$TMP/cut.out" 2>&1 || bad "ep2 m$m 3 steps: $(tail -3 "$TMP/cut.out")"
done
resume "resume ep2 -> ep4" 4 cut2 ref4 --dp 4 --ep 4
resume "resume ep2 -> dp2 ep1" 2 cut1 ref2 --dp 2
resume "resume ep2 -> one rank" 1 cut1 ref2 --microbatches 2
# saved under dp 4 x ep 2 x ZeRO-3 (the experts sliced over edp 2), resumed under ep 4 ZeRO-0
# and on one rank
"${MPIRUN[@]}" -np 4 "$BIN" train "${MODEL[@]}" --dp 4 --ep 2 --zero 3 --steps 3 \
  --save "$TMP/cutz3" >"$TMP/cut.out" 2>&1 || bad "dp4 ep2 zero3 3 steps: $(tail -3 "$TMP/cut.out")"
resume "resume dp4 ep2 zero3 -> ep4 zero0" 4 cutz3 ref4 --dp 4 --ep 4
resume "resume dp4 ep2 zero3 -> one rank" 1 cutz3 ref4 --microbatches 4

# the dropless bound: --moe-dropless-bound 1 plans rows for each rank's own N*K assignments
# only; this model's routing sends more to one rank in step 1, so every rank stops with exit 1
# and says so (the crafted skewed router is in tests/mpi_ep.c); 2 = ep, the worst case, runs
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --ep 2 --moe-dropless-bound 1 \
  >"$TMP/bound.out" 2>"$TMP/bound.err"; rc=$?
said=$(grep -c "^mptrain: error: expert dispatch: the experts of ep rank .* more than the .* the memory plan holds" "$TMP/bound.err")
if [ "$rc" = 1 ] && [ "$said" = 2 ]; then ok "dropless bound exceeded: exit 1 on both ranks: $(grep -m1 error "$TMP/bound.err" | cut -c1-150)"
else bad "dropless bound exceeded: exit $rc, $said ranks said so: $(head -c 400 "$TMP/bound.err")"; fi
refused "moe-dropless-bound 0.5" 2 "moe-dropless-bound" -- "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --ep 2 --moe-dropless-bound 0.5

# layouts that do not compose yet, refused up front on every rank
refused "ep splitting cp" 4 "--ep 2 does not divide --dp 1" -- "${MPIRUN[@]}" -np 4 "$BIN" train "${MODEL[@]}" --cp 4 --ep 2
finish
