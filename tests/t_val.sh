#!/usr/bin/env bash
# Validation (--val-data, --val-fraction, --eval-every, --eval-batches): the mean loss over a
# fixed set of held-out sequences is the same on every layout (1 rank vs dp 2, tp 2, pp 2,
# dp 2 ZeRO-3, dp 2 x pp 2 ZeRO-3: within 1e-5 relative at every evaluation step); evaluating
# changes nothing in training (losses identical, bit for bit, with and without --eval-every);
# the default corpus's held-out tail is never read by training (training on --data with
# --val-fraction 0.1 = training on a file holding only the first 90%, and the tail file given as
# --val-data gives the same validation losses); the summary prints the loss and perplexity.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
BASE=(--model tiny --layers 4 --d-model 32 --heads 2 --seq-len 32 --batch 16 --steps 5
      --threads 1 --lr 3e-3)
MODEL=("${BASE[@]}" --quiet)
EVAL=(--eval-every 2 --eval-batches 3)

# compare_val A B [exact]: val_loss of every evaluation step of A equals B's (1e-5 relative,
# or bit for bit), and the same steps are evaluated (2, 4 and the last, 5)
compare_val() {
  /usr/bin/python3 - "$@" <<'PY'
import json, math, sys
def vals(p):
    return {j["step"]: j for j in map(json.loads, open(p)) if "step" in j and "event" not in j and "val_loss" in j}
a, b = vals(sys.argv[1]), vals(sys.argv[2])
exact = len(sys.argv) > 3
if sorted(a) != [2, 4, 5] or sorted(b) != sorted(a):
    print(f"evaluated steps {sorted(a)} / {sorted(b)}, expected [2, 4, 5]"); sys.exit(1)
worst = max(abs(a[s]["val_loss"] - b[s]["val_loss"]) / abs(b[s]["val_loss"]) for s in a)
ppl = max(abs(a[s]["val_ppl"] - math.exp(a[s]["val_loss"])) / a[s]["val_ppl"] for s in a)
print(f"val_loss {[round(a[s]['val_loss'], 6) for s in sorted(a)]}, max rel diff {worst:.2e}")
sys.exit(0 if (worst == 0 if exact else worst <= 1e-5) and ppl < 1e-12 else 1)
PY
}

# compare_loss A B: every step's training loss identical (bit for bit in the JSON)
compare_loss() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
def losses(p):
    return [(j["step"], j["loss"]) for j in map(json.loads, open(p)) if "step" in j and "event" not in j]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
print(f"{len(a)} steps, losses {[round(l, 6) for _, l in a]}")
sys.exit(0 if a == b and len(a) == 5 else 1)
PY
}

"$BIN" train "${MODEL[@]}" "${EVAL[@]}" --log "$TMP/ref.jsonl" >/dev/null 2>"$TMP/ref.err" \
  || bad "one rank with evaluation: $(tail -3 "$TMP/ref.err")"
"$BIN" train "${MODEL[@]}" --log "$TMP/noeval.jsonl" >/dev/null 2>&1 || bad "one rank without evaluation"
out=$(compare_loss "$TMP/ref.jsonl" "$TMP/noeval.jsonl") && ok "evaluation changes no training loss (1 rank): $out" \
  || bad "evaluation changed training (1 rank): $out"

# every layout: the same validation losses as one rank
while read -r np name opts; do
  # shellcheck disable=SC2086
  if ! "${MPIRUN[@]}" -np "$np" "$BIN" train "${MODEL[@]}" "${EVAL[@]}" $opts --log "$TMP/$name.jsonl" \
       >"$TMP/$name.out" 2>&1 </dev/null; then
    bad "$name: run failed: $(tail -3 "$TMP/$name.out")"; continue
  fi
  out=$(compare_val "$TMP/$name.jsonl" "$TMP/ref.jsonl") && ok "$name val_loss = one rank: $out" \
    || bad "$name val_loss differs from one rank: $out"
done <<'LAYOUTS'
2 dp2 --dp 2
2 tp2 --tp 2
2 tp2-sp --tp 2 --sp
2 pp2 --pp 2 --microbatches 2
2 dp2-zero3 --dp 2 --zero 3
4 dp2-pp2-zero3 --dp 2 --pp 2 --microbatches 2 --zero 3
2 cp2 --cp 2
LAYOUTS

# ZeRO-3 (where evaluation gathers the weights through the dp hooks): training unchanged too
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --zero 3 --log "$TMP/z3-noeval.jsonl" >/dev/null 2>&1 \
  || bad "dp2 zero3 without evaluation"
out=$(compare_loss "$TMP/dp2-zero3.jsonl" "$TMP/z3-noeval.jsonl") && ok "evaluation changes no training loss (dp 2, ZeRO-3): $out" \
  || bad "evaluation changed training (dp 2, ZeRO-3): $out"

# the held-out tail: training reads only the first n - floor(0.1 n) tokens of the stream
/usr/bin/python3 - .cache/moby-dick.byte.bin "$TMP" <<'PY' || bad "splitting the corpus"
import struct, sys
raw = open(sys.argv[1], "rb").read()
hdr = list(struct.unpack("<256i", raw[:1024])); n = hdr[2]
held = int(n * struct.unpack("<f", struct.pack("<f", 0.1))[0])  # --val-fraction is a float
def write(path, toks):
    h = hdr[:]; h[2] = len(toks) // 2
    open(path, "wb").write(struct.pack("<256i", *h) + toks)
toks = raw[1024:]
write(f"{sys.argv[2]}/head.bin", toks[:2 * (n - held)])
write(f"{sys.argv[2]}/tail.bin", toks[2 * (n - held):])
open(f"{sys.argv[2]}/n", "w").write(f"{n} {held}")
PY
read -r n held < "$TMP/n"
"$BIN" train "${MODEL[@]}" --data .cache/moby-dick.byte.bin --val-fraction 0.1 "${EVAL[@]}" \
  --log "$TMP/frac.jsonl" >/dev/null 2>&1 || bad "--val-fraction 0.1"
"$BIN" train "${MODEL[@]}" --data "$TMP/head.bin" --val-data "$TMP/tail.bin" "${EVAL[@]}" \
  --log "$TMP/split.jsonl" >/dev/null 2>&1 || bad "--data head --val-data tail"
out=$(compare_loss "$TMP/frac.jsonl" "$TMP/split.jsonl") && ok "held-out tail never trained on: $out" \
  || bad "training read the held-out tail: $out"
out=$(compare_val "$TMP/frac.jsonl" "$TMP/split.jsonl" exact) && ok "held-out tail = --val-data of the tail: $out" \
  || bad "held-out tail != --val-data tail: $out"
out=$(compare_val "$TMP/ref.jsonl" "$TMP/frac.jsonl" exact) && ok "the default corpus holds out its last tenth: $out" \
  || bad "default corpus validation: $out"
grep -q "\"train_tokens\":$((n - held)),.*\"val_tokens\":$held" "$TMP/ref.jsonl" \
  && ok "start line: train_tokens $((n - held)), val_tokens $held" || bad "start line token counts: $(head -c 600 "$TMP/ref.jsonl")"

# the summary and the plain progress lines name the validation loss and perplexity
out=$("$BIN" train "${BASE[@]}" --steps 2 --eval-every 1 --eval-batches 1 2>&1)
grep -q "^step 2/2 val_loss [0-9.]* val_ppl [0-9.]*" <<<"$out" && grep -q "^validation: loss [0-9.]*, perplexity" <<<"$out" \
  && ok "progress and summary: $(grep '^validation' <<<"$out")" || bad "summary: $out"

# bad input: evaluation without a validation set, a validation file shorter than a sequence
"$BIN" train "${MODEL[@]}" --data "$TMP/head.bin" --eval-every 2 >/dev/null 2>"$TMP/e1"; code=$?
[ $code = 2 ] && grep -q "mptrain: error: .*--val-data" "$TMP/e1" && ok "eval without a validation set: exit 2" \
  || bad "eval without a validation set: exit $code $(cat "$TMP/e1")"
printf 'tiny' > "$TMP/short.txt"; "$BIN" tokenize --in "$TMP/short.txt" --out "$TMP/short.bin" >/dev/null 2>&1
"$BIN" train "${MODEL[@]}" --val-data "$TMP/short.bin" --eval-every 2 >/dev/null 2>"$TMP/e2"; code=$?
[ $code = 2 ] && grep -q "mptrain: error: .*--val-data" "$TMP/e2" && ok "short validation file: exit 2" \
  || bad "short validation file: exit $code $(cat "$TMP/e2")"
for bad_opt in "eval-every -1" "eval-every inf" "eval-batches 0" "eval-batches 4294967296" "val-fraction 0.6" \
               "val-fraction -0.1" "val-fraction nan"; do
  set -- $bad_opt
  "$BIN" train "${MODEL[@]}" "--$1" "$2" >/dev/null 2>"$TMP/e3"; code=$?
  [ $code = 2 ] && grep -q "mptrain: error: .*--$1" "$TMP/e3" && ok "--$1 $2: exit 2" || bad "--$1 $2: exit $code $(cat "$TMP/e3")"
done
finish
