#!/usr/bin/env bash
# t_bad_input.sh — every numeric option refuses a bad value cleanly (CONTRACT §7: exit 2, found
# before training, on every rank, no hang). Each case runs under `timeout 20` in a directory of
# its own and must: exit with status 2 exactly (a signal, a crash or the timeout gives another
# status), print "mptrain: error: " on stderr with the option's name in it (so a value that
# slipped through and failed later for another reason does not count), and leave no core file.
#
#   train      every numeric option at 0, negative, huge (2^31, 2^32 and 2^63), inf and nan, each
#              where it is a bad value (0 is a meaning for --steps, --warmup, --weight-decay,
#              --grad-clip, --seed, --experts, --zero, --save-every, --keep and the debug
#              options; a seed is 64 bits, so its "huge" is 2^64), then values in range whose
#              derived sizes are too large (the memory plan, micro-batch rows, dp x tp) and a
#              config.json out of range; a handful again on 4 ranks under mpirun, where every
#              rank must say it; MoE: --moe-every, the three MoE factors (negative), top-k >
#              experts, experts % ep, ep not dividing dp, ep without experts
#   generate   --tokens --temperature --top-k --seed --threads (against a real checkpoint)
#   schedule   --pp --microbatches --virtual-stages --cost-f --cost-b --cost-w --cost-comm
#   tokenize   has no numeric option (--in, --out, --tokenizer are names)
# Usage: bash tests/t_bad_input.sh BUILD_DIR   (from the repo root, as ctest runs it)
set -uo pipefail
REFUSED_JOBS=${REFUSED_JOBS:-2}   # two cases at a time, each within its own 20 s (tests/lib.sh)
source "$(dirname "$0")/lib.sh"
BIN=$(cd "$(dirname "$BIN")" && pwd)/mptrain

printf 'It is a truth universally acknowledged, that a single man in possession. %.0s' {1..40} >"$TMP/text.txt"
"$BIN" tokenize --in "$TMP/text.txt" --out "$TMP/data.bin" >/dev/null || bad "tokenize the test data"
BASE=(--model tiny --layers 1 --d-model 32 --heads 2 --seq-len 16 --batch 2 --steps 1 --threads 1
      --quiet --data "$TMP/data.bin")
HUGE31=2147483648              # 2^31: one past a 32-bit int
HUGE=4294967296                # 2^32
HUGE64=9223372036854775808     # 2^63: beyond a signed 64-bit whole number

# train_bad OPTION VALUES...: one rank, each value after the base options
train_bad() {
  local opt=$1; shift
  for v in "$@"; do refused "train --$opt $v" 1 "--$opt" -- "$BIN" train "${BASE[@]}" "--$opt" "$v"; done
}

# --- train: every numeric option ----------------------------------------------------------------
ALL=(0 -1 $HUGE31 $HUGE $HUGE64 inf nan)   # every one of these is bad
NOT0=(-1 $HUGE31 $HUGE $HUGE64 inf nan)    # for options where 0 means something
for opt in layers d-model heads seq-len vocab ffn top-k batch microbatches threads dp tp pp cp ep \
           virtual-stages; do
  train_bad "$opt" "${ALL[@]}"
done
for opt in experts steps warmup zero save-every keep debug-stall-rank debug-stall-step; do
  train_bad "$opt" "${NOT0[@]}"
done
train_bad lr "${ALL[@]}" 1e-50 11            # 1e-50 is 0 as a float
train_bad bucket-mb "${ALL[@]}" 1e-50
train_bad comm-timeout "${ALL[@]}"
for opt in weight-decay grad-clip debug-stall-seconds; do train_bad "$opt" "${NOT0[@]}" -1e-30; done
train_bad seed -1 18446744073709551616 99999999999999999999 inf nan
train_bad mem-limit 0 -1 2000T inf nan 99999999999T
train_bad threads 100000 "$(( $(nproc) + 1 ))"   # in range, but more than this node's cores
train_bad steps 1e3 12abc ""                     # not whole numbers

# values in range whose derived sizes are not
refused "d-model 1e9 (ffn 4 x d-model)" 1 "--d-model" -- "$BIN" train "${BASE[@]}" --d-model 1000000000
refused "d-model 65536: plan beyond the node's memory" 1 "memory" -- \
  "$BIN" train "${BASE[@]}" --d-model 65536 --heads 1
refused "batch 2^20: plan beyond the node's memory" 1 "memory" -- "$BIN" train "${BASE[@]}" --batch 1048576
refused "seq-len 2^20: longer than the data" 1 "--seq-len" -- "$BIN" train "${BASE[@]}" --seq-len 1048576
refused "microbatches > batch" 1 "divisible" -- "$BIN" train "${BASE[@]}" --microbatches 1048576
refused "dp x tp 2^32 on one rank" 1 "ranks" -- "$BIN" train "${BASE[@]}" --dp 65536 --tp 65536
refused "vocab 65537" 1 "--vocab" -- "$BIN" train "${BASE[@]}" --vocab 65537
refused "heads not dividing d-model" 1 "heads" -- "$BIN" train "${BASE[@]}" --heads 3
printf '{"model_type":"gpt2","vocab_size":256,"n_positions":16,"n_embd":100000,"n_layer":1,"n_head":1}' >"$TMP/wide.json"
refused "config.json n_embd 100000" 1 "n_embd" -- "$BIN" train --model "$TMP/wide.json" --threads 1 --quiet \
  --data "$TMP/data.bin" --batch 2 --steps 1
printf '{"model_type":"gpt2","vocab_size":256,"n_positions":16,"n_embd":32,"n_layer":1,"n_head":2,"n_inner":3000000000}' >"$TMP/ffn.json"
refused "config.json n_inner 3e9" 1 "n_inner" -- "$BIN" train --model "$TMP/ffn.json" --threads 1 --quiet \
  --data "$TMP/data.bin" --batch 2 --steps 1
printf '{"model_type":"gpt2","vocab_size":256,"n_positions":16,"n_embd":32,"n_layer":5000,"n_head":2}' >"$TMP/deep.json"
refused "config.json n_layer 5000" 1 "n_layer" -- "$BIN" train --model "$TMP/deep.json" --threads 1 --quiet \
  --data "$TMP/data.bin" --batch 2 --steps 1

# --- train on 4 ranks: every rank refuses, the job ends with 2 -------------------------------------
ON4=("${MPIRUN[@]}" -np 4 "$BIN" train "${BASE[@]}" --batch 4)
refused "4 ranks: --threads 100000" 4 "--threads" -- "${ON4[@]}" --threads 100000
refused "4 ranks: --dp 4 --microbatches 2^30" 4 "--microbatches" -- "${ON4[@]}" --dp 4 --microbatches 1073741824
refused "4 ranks: --dp 4 --microbatches 2^20 (dp x m > batch)" 4 "divisible" -- "${ON4[@]}" --dp 4 --microbatches 1048576
refused "4 ranks: --d-model 1e9" 4 "--d-model" -- "${ON4[@]}" --dp 4 --d-model 1000000000
refused "4 ranks: --bucket-mb inf" 4 "--bucket-mb" -- "${ON4[@]}" --dp 4 --bucket-mb inf
refused "4 ranks: --weight-decay nan" 4 "--weight-decay" -- "${ON4[@]}" --dp 4 --weight-decay nan
refused "4 ranks: --grad-clip -1" 4 "--grad-clip" -- "${ON4[@]}" --dp 4 --grad-clip -1

# --- Mixture-of-Experts and expert parallelism ----------------------------------------------------
train_bad moe-every "${ALL[@]}"
for opt in capacity-factor aux-loss-coef z-loss-coef; do train_bad "$opt" "${NOT0[@]}" -1e-30; done
refused "top-k 5 > experts 4" 1 "top-k" -- "$BIN" train "${BASE[@]}" --experts 4 --top-k 5
refused "ep without experts" 1 "--ep" -- "$BIN" train "${BASE[@]}" --ep 2 --dp 2
printf '{"model_type":"gpt2","vocab_size":256,"n_positions":16,"n_embd":32,"n_layer":1,"n_head":2,"n_experts":4,"moe_capacity_factor":-1}' >"$TMP/cap.json"
refused "config.json moe_capacity_factor -1" 1 "moe_capacity_factor" -- "$BIN" train --model "$TMP/cap.json" \
  --threads 1 --quiet --data "$TMP/data.bin" --batch 2 --steps 1
ON2=("${MPIRUN[@]}" -np 2 "$BIN" train "${BASE[@]}" --batch 4)
refused "2 ranks: experts 3 % ep 2" 2 "--ep 2 must divide --experts 3" -- "${ON2[@]}" --dp 2 --ep 2 --experts 3
refused "2 ranks: top-k 3 > experts 2" 2 "top-k" -- "${ON2[@]}" --dp 2 --ep 2 --experts 2 --top-k 3
refused "4 ranks: ep 3 not dividing dp 4" 4 "--ep 3" -- "${ON4[@]}" --dp 4 --ep 3 --experts 6
refused "4 ranks: capacity-factor -0.5" 4 "--capacity-factor" -- "${ON4[@]}" --dp 4 --ep 2 --experts 4 \
  --capacity-factor -0.5

# --- generate: against a real checkpoint, so a value let through would generate ---------------------
"$BIN" train "${BASE[@]}" --steps 0 --save "$TMP/ckpt" >/dev/null 2>&1 || bad "a checkpoint for generate"
gen_bad() {
  local opt=$1; shift
  for v in "$@"; do
    refused "generate --$opt $v" 1 "--$opt" -- "$BIN" generate --checkpoint "$TMP/ckpt" --threads 1 \
      --tokens 2 "--$opt" "$v"
  done
}
gen_bad tokens -1 $HUGE31 $HUGE $HUGE64 inf nan
gen_bad temperature -1 1e9 inf nan -1e-30
gen_bad top-k -1 $HUGE31 $HUGE $HUGE64 inf nan
gen_bad seed -1 18446744073709551616 inf nan
gen_bad threads 0 -1 $HUGE inf nan "$(( $(nproc) + 1 ))"

# --- schedule ----------------------------------------------------------------------------------------
sched_bad() {
  local opt=$1; shift
  for v in "$@"; do refused "schedule --$opt $v" 1 "--$opt" -- "$BIN" schedule "--$opt" "$v"; done
}
for opt in pp microbatches virtual-stages; do sched_bad "$opt" "${ALL[@]}"; done
sched_bad cost-f 0 -1 1e300 inf nan
sched_bad cost-b 0 -1 1e300 inf nan
sched_bad cost-w -1 1e300 inf nan
sched_bad cost-comm -1 1e300 inf nan

finish
