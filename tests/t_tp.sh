#!/usr/bin/env bash
# Tensor parallelism: every tensor-parallel layout trains like one rank (step-1 gradients of
# every tensor, 5 steps' losses and final weights within 1e-5 relative), the communication per
# step is exactly the expected count and bytes, checkpoints move between tp sizes, and bad
# layouts exit 2 naming the numbers.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
COMMON=(--seq-len 32 --batch 8 --steps 5 --threads 1 --quiet --lr 3e-3)

# run NAME NP ARGS...: one layout, with a step-1 gradient dump, a log and a final checkpoint
run() {
  local name=$1 np=$2; shift 2
  local launch=("$BIN"); [ "$np" -gt 1 ] && launch=("${MPIRUN[@]}" -np "$np" "$BIN")
  "${launch[@]}" train "${COMMON[@]}" "$@" --log "$TMP/$name.jsonl" --save "$TMP/$name" \
     --dump-step1 "$TMP/$name.grads" >"$TMP/$name.out" 2>&1 || { bad "$name failed: $(tail -3 "$TMP/$name.out")"; return 1; }
}
# same NAME REF: gradients, losses and weights of NAME equal those of REF
same() {
  local g="" w=""
  if g=$("${CMP[@]}" --tensors "$TMP/$1.grads" "$TMP/$2.grads" 2>&1) &&
     w=$("${CMP[@]}" "$TMP/$1.jsonl" "$TMP/$1/latest/model.safetensors" "$TMP/$2.jsonl" "$TMP/$2/latest/model.safetensors" 2>&1); then
    ok "$1 = $2: step-1 grads$(echo $g | sed 's/^ *//') | $(echo $w)"
  else bad "$1 differs from $2: $g $w"; fi
}

BASE=(--model tiny --layers 2 --d-model 32 --heads 4 --ffn 96)
run ref 1 "${BASE[@]}" && {
  run tp2 2 "${BASE[@]}" --tp 2 && same tp2 ref
  run tp4 4 "${BASE[@]}" --tp 4 && same tp4 ref
  run tp2dp2 4 "${BASE[@]}" --tp 2 --dp 2 --microbatches 2 && run ref_m2 1 "${BASE[@]}" --microbatches 2 && same tp2dp2 ref_m2
}
# the row-parallel GEMMs split in 4 row chunks whose all-reduces overlap the next chunk's GEMM
# (parallel/tp_overlap.c: 1024 rows x 64 = 256 KiB of output, 64 KiB per chunk): same numbers,
# the same bytes in 4x the calls for each row-parallel layer; likewise the backward's input-
# gradient all-reduces (the head's and the column-parallel layers', 1 + 2L), each in 4 row
# chunks beside the weight gradient's GEMMs (model/gpt_tp.h); the cross-entropy's row statistics in
# one all-gather per row chunk of the logits (parallel/tp_vocab.c: 1024 rows x 128 vocabulary
# rows = 512 KiB, 4 chunks), 3 numbers per row, instead of two all-reduces; and the embedding's
# sum in the same 4 chunks as it is looked up (model/gpt_tp.h)
BO=(--model tiny --layers 2 --d-model 64 --heads 4 --ffn 192 --seq-len 128)
run refo 1 "${BO[@]}" && run tp2o 2 "${BO[@]}" --tp 2 && same tp2o refo &&
/usr/bin/python3 - "$TMP/tp2o.jsonl" >"$TMP/ocomm" <<'PY' && ok "tp2 overlap communication: $(cat "$TMP/ocomm")" || bad "tp2 overlap communication: $(cat "$TMP/ocomm")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
start, end = lines[0], lines[-1]
L, D, T, B, S = start["n_layer"], start["d_model"], start["seq_len"], start["batch"], end["steps"]
N = B * T
k = max(1, min(4, N * D * 4 // 65536))
kc = max(1, min(4, N * start["padded_vocab"] // 2 * 4 // 65536))
calls = S * (k * (1 + 2 * L) + k * (1 + 2 * L) + 1)  # the embedding's sum in k chunks too
nbytes = S * (4 * (1 + 2 * L) * N * D + 4 * (1 + 2 * L) * N * D + 8)
got, gg = end["comm"]["tp"]["allreduce"], end["comm"]["tp"].get("allgather", {"calls": 0, "bytes": 0})
print(f"{k} chunks: {got['calls']} all-reduces, {int(got['bytes'])} bytes (expected {calls}, {nbytes}); "
      f"{kc} loss chunks: {gg['calls']} all-gathers, {int(gg['bytes'])} bytes (expected {S * kc}, {S * 4 * 3 * N})")
sys.exit(0 if k == 4 and kc == 4 and (got["calls"], int(got["bytes"]), gg["calls"], int(gg["bytes"])) ==
         (calls, nbytes, S * kc, S * 4 * 3 * N) else 1)
PY
# sequence parallelism: the same numbers with LayerNorm / residual regions split over tp
run ref_t2 1 "${BASE[@]}" --batch 4 && {
  run sp2 2 "${BASE[@]}" --tp 2 --sp && same sp2 ref
  run sp4 4 "${BASE[@]}" --tp 4 --sp && same sp4 ref
}
"${MPIRUN[@]}" -np 4 "$BIN" train "${COMMON[@]}" "${BASE[@]}" --tp 2 --sp --dp 2 --zero 2 --microbatches 2 \
   --log "$TMP/spz2.jsonl" --save "$TMP/spz2" >/dev/null 2>&1 &&
  w=$("${CMP[@]}" "$TMP/spz2.jsonl" "$TMP/spz2/latest/model.safetensors" "$TMP/ref_m2.jsonl" "$TMP/ref_m2/latest/model.safetensors") &&
  ok "tp2 x sp x dp2 x zero2 x m2 = one rank: $(echo $w)" || bad "tp2 sp dp2 zero2: $w"
# activation memory per rank: Korthikanti et al. 2022 in fp32 for this engine (4 bytes per
# value; no dropout masks): per layer s*b*h*(4*4 + (3h+h+2F)/h / t) + 4*a*s*b/t + 4*2*2*s*b,
# i.e. sbh(10 + 24/t + 5as/(ht)) becomes 4*sbh*(4 + 12/t) + 4*asb/t (+ LayerNorm stats) for
# F = 4h: the fused attention keeps a per-row log-sum-exp (a*s*b/t values) where the paper's
# as^2b/t softmax term was; with sp the 4 replicated sbh terms and the statistics shrink by t.
/usr/bin/python3 - "$TMP/sp2.jsonl" "$TMP/tp2.jsonl" >"$TMP/spmem" <<'PY' && ok "sp memory: $(cat "$TMP/spmem")" || bad "sp memory: $(cat "$TMP/spmem")"
import json, sys
def expect(st):
    L, h, a, F, s = st["n_layer"], st["d_model"], st["n_head"], st["ffn"], st["seq_len"]
    lay, Vp = st["layout"], st["padded_vocab"]
    t, sp, b = lay["tp"], lay["sp"], st["batch"] // (lay["dp"] * st["microbatches"])
    r = t if sp else 1                      # the sequence-parallel split of replicated regions
    per_layer = 4 * (4 * s * b * h / r + (3 * h + h + 2 * F) * s * b / t + a * s * b / t + 4 * s * b / r)
    other = 4 * (2 * s * b * h / r + 2 * s * b / r + s * b * Vp / t + s * b)  # embeddings, ln_f, logits, losses
    return int(L * per_layer + other)
msgs, ok = [], True
for f in sys.argv[1:3]:
    st = json.loads(open(f).readline())
    got, want = st["memory_plan_bytes"]["activations"], expect(st)
    ok &= got == want
    msgs.append(f"{'sp' if st['layout']['sp'] else 'no sp'} {got} bytes (formula {want})")
print(", ".join(msgs))
sys.exit(0 if ok else 1)
PY

# ZeRO-1 over the dp group of each tp rank (no gradient dump under ZeRO)
w=""
"${MPIRUN[@]}" -np 4 "$BIN" train "${COMMON[@]}" "${BASE[@]}" --tp 2 --dp 2 --zero 1 --log "$TMP/z1.jsonl" --save "$TMP/z1" >/dev/null 2>&1 &&
  w=$("${CMP[@]}" "$TMP/z1.jsonl" "$TMP/z1/latest/model.safetensors" "$TMP/ref.jsonl" "$TMP/ref/latest/model.safetensors") &&
  ok "tp2 x dp2 x zero1 = one rank: $(echo $w)" || bad "tp2 x dp2 x zero1: $w"

# tp = 3: the byte vocabulary (256) does not divide; padded to 384, the third rank holds only padding
B3=(--model tiny --layers 2 --d-model 48 --heads 6 --ffn 96)
run ref3 1 "${B3[@]}" && run tp3 3 "${B3[@]}" --tp 3 && same tp3 ref3

# the GPT-2 vocabulary (50257, padded to 50304) at tp 2
head -c 60000 .cache/moby-dick/data/data.txt > "$TMP/text.txt"
"$BIN" tokenize --tokenizer gpt2 --in "$TMP/text.txt" --out "$TMP/gpt2.bin" >/dev/null
BG=(--model tiny --layers 1 --d-model 32 --heads 4 --vocab 50257 --data "$TMP/gpt2.bin")
run refg 1 "${BG[@]}" && run tp2g 2 "${BG[@]}" --tp 2 && same tp2g refg

# communication per step per rank: tp all-reduces of the forward (embedding, 2 per block) and
# backward (head, 2 per block), plus the norm, and the cross-entropy's all-gather of 3 numbers
# per row (one chunk at this size): exact counts/bytes
/usr/bin/python3 - "$TMP/tp2dp2.jsonl" <<'PY' && ok "tp2 x dp2 communication: $(cat "$TMP/comm")" || bad "communication counts: $(cat "$TMP/comm")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
start, end = lines[0], lines[-1]
L, D, T, B, M, dp = start["n_layer"], start["d_model"], start["seq_len"], start["batch"], start["microbatches"], start["layout"]["dp"]
steps = end["steps"]; N = B // (dp * M) * T
per_mb_calls = (1 + 2 * L) + (1 + 2 * L)
per_mb_bytes = 4 * (1 + 2 * L) * N * D + 4 * (1 + 2 * L) * N * D
want_calls = steps * (M * per_mb_calls + 1)            # + the gradient norm (one double)
want_bytes = steps * (M * per_mb_bytes + 8)
got, gg = end["comm"]["tp"]["allreduce"], end["comm"]["tp"].get("allgather", {"calls": 0, "bytes": 0})
want_g = (steps * M, steps * M * 4 * 3 * N)
msg = (f"{got['calls']} all-reduces, {int(got['bytes'])} bytes over {steps} steps (expected {want_calls}, {want_bytes}); "
       f"{gg['calls']} all-gathers, {int(gg['bytes'])} bytes (expected {want_g[0]}, {want_g[1]})")
open(sys.argv[1] + ".msg", "w").write(msg)
print(msg, file=open(__import__("os").path.dirname(sys.argv[1]) + "/comm", "w"))
sys.exit(0 if (got["calls"], int(got["bytes"]), gg["calls"], int(gg["bytes"])) == (want_calls, want_bytes) + want_g else 1)
PY

# with sp, every all-reduce of a block becomes an all-gather + reduce-scatter pair (a run
# without checkpoint or dump, whose gathers would count too); the eight beside a block's GEMMs
# (parallel/tp_overlap_sp.c: the forward's two gathers and two reduce-scatters, the backward's
# two gathers of the output gradient and two sums of input gradients) go as block messages,
# each rank's Nl rows straight to each of the t-1 others: the bytes of the ring collectives;
# so do the backward's two gathers of ln_1 and ln_2 for the weight gradients, beside the sums
# and the head's gathers of ln_f (forward and backward), beside its GEMMs; the head's input-
# gradient sum (a reduce-scatter) and the embedding's reduce-scatter (forward) and gather
# (backward) go as block messages too, beside the head's GEMMs and the embedding's row blocks,
# so no reduce-scatter call is left, and one all-gather: the cross-entropy's row statistics
"${MPIRUN[@]}" -np 4 "$BIN" train "${COMMON[@]}" "${BASE[@]}" --tp 4 --sp --log "$TMP/spc.jsonl" >/dev/null 2>&1
/usr/bin/python3 - "$TMP/spc.jsonl" >"$TMP/spcomm" <<'PY' && ok "sp communication: $(cat "$TMP/spcomm")" || bad "sp communication: $(cat "$TMP/spcomm")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
start, end = lines[0], lines[-1]
L, D, T, B, M, t = start["n_layer"], start["d_model"], start["seq_len"], start["batch"], start["microbatches"], start["layout"]["tp"]
S, N = end["steps"], B // M * T
Nl = N // t
want = {  # per micro-batch: forward + backward; the norm adds one all-reduce per step
    "allgather": (1, 4 * 3 * N),  # the cross-entropy's 3 numbers per row, one chunk here
    "reduce_scatter": (0, 0),
    "send": ((10 * L + 5) * (t - 1), (10 * L + 5) * (t - 1) * Nl * D * 4),
    "recv": ((10 * L + 5) * (t - 1), (10 * L + 5) * (t - 1) * Nl * D * 4),
    "allreduce": ((L + 1), 4 * (2 * D + 2 * L * 2 * D)),  # a block's two LayerNorms: one
}
got = end["comm"]["tp"]
bad = []
for op, (calls, nbytes) in want.items():
    wc, wb = S * M * calls + (S if op == "allreduce" else 0), S * M * nbytes + (8 * S if op == "allreduce" else 0)
    g = got.get(op, {"calls": 0, "bytes": 0})
    if (g["calls"], int(g["bytes"])) != (wc, wb):
        bad.append(f"{op}: {g['calls']} calls {int(g['bytes'])} bytes, expected {wc} {wb}")
print(", ".join(f"{op} {got.get(op, {'calls': 0})['calls']}" for op in want), *bad)
sys.exit(1 if bad else 0)
PY

# a tp 2 checkpoint resumes at tp 1 and tp 4 with the same losses
"${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" "${BASE[@]}" --tp 2 --save "$TMP/c2" --save-every 3 --log "$TMP/c2.jsonl" >/dev/null 2>&1
grep -v '"step":[123],' "$TMP/c2.jsonl" > "$TMP/c2tail.jsonl"
for t in 1 4; do
  launch=("$BIN"); [ $t -gt 1 ] && launch=("${MPIRUN[@]}" -np $t "$BIN")
  "${launch[@]}" train "${COMMON[@]}" "${BASE[@]}" --tp $t --resume "$TMP/c2/step_000003" --log "$TMP/r$t.jsonl" --save "$TMP/r$t" >/dev/null 2>&1
  w=$("${CMP[@]}" "$TMP/r$t.jsonl" "$TMP/r$t/latest/model.safetensors" "$TMP/c2tail.jsonl" "$TMP/c2/latest/model.safetensors" 2>&1) \
    && ok "tp2 checkpoint resumed at tp $t: $(echo $w)" || bad "resume at tp $t: $w"
done

# bad layouts: exit 2 with the numbers, on every rank
"${MPIRUN[@]}" -np 3 "$BIN" train "${COMMON[@]}" "${BASE[@]}" --tp 3 >/dev/null 2>"$TMP/e1"; c=$?
[ $c = 2 ] && [ "$(grep -c 'heads (4)' "$TMP/e1")" = 3 ] && ok "heads % tp: $(head -1 "$TMP/e1")" || bad "heads % tp: exit $c $(cat "$TMP/e1")"
"${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" --model tiny --layers 2 --d-model 32 --heads 4 --ffn 99 --tp 2 >/dev/null 2>"$TMP/e2"; c=$?
[ $c = 2 ] && grep -q "(99)" "$TMP/e2" && ok "ffn % tp: $(head -1 "$TMP/e2")" || bad "ffn % tp: exit $c $(cat "$TMP/e2")"

"${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" "${BASE[@]}" --tp 2 --sp --seq-len 31 >/dev/null 2>"$TMP/e3"; c=$?
[ $c = 2 ] && grep -q "seq-len 31" "$TMP/e3" && ok "seq % tp with --sp: $(head -1 "$TMP/e3")" || bad "seq % tp: exit $c $(cat "$TMP/e3")"
"$BIN" train "${COMMON[@]}" "${BASE[@]}" --sp >/dev/null 2>"$TMP/e4"; c=$?
[ $c = 2 ] && grep -q "tp 2" "$TMP/e4" && ok "--sp without tp: $(head -1 "$TMP/e4")" || bad "--sp alone: exit $c $(cat "$TMP/e4")"

finish
