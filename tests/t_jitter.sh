#!/usr/bin/env bash
# t_jitter.sh — the nonblocking communication paths under shuffled timings. Every run below sets
# MPT_DEBUG_JITTER_US (comm/alive.h: random 0..N us sleeps before every post, test and wait, and
# half of the mpt_test calls skipped, seeded per rank), so each run sees its messages complete in
# another order; each layout must still train like one rank (5 steps' losses and final weights
# within 1e-5 relative, the tolerance of t_dp / t_tp / t_pp) and must not hang (--comm-timeout
# 60: a deadlock fails with the watchdog's message). The seed of the run is printed with every
# verdict (the timings are real, so a seed narrows a failure down rather than replays it).
# Layouts: the gradient rings of ZeRO-0/1 with small buckets (several rings and ring buffers in
# flight; dp 4 ZeRO-0 is the layout whose tmp buffer was handed on too early, commit 2453022,
# run three times: with that fix reverted this script failed 5 of 6 runs, 2026-12-01),
# ZeRO-2's staging rings and ZeRO-3's gathers and prefetch, tp 2 with sp (the overlapped
# all-gather / reduce-scatter messages), a pipeline's p2p (zb-h1 with dp 2 ZeRO-1), cp 2's ring
# attention, dp 2 x tp 2. SMALL=1 (ASan, valgrind builds): dp 4 ZeRO-0/1, dp 2 ZeRO-2, tp 2 sp only.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
J=${MPT_TEST_JITTER_US:-100}
SEED=${MPT_TEST_JITTER_SEED:-$RANDOM}
MODEL=(--model tiny --layers 4 --d-model 32 --heads 4 --ffn 64 --seq-len 32 --batch 16 --steps 5
       --threads 1 --quiet --lr 3e-3 --bucket-mb 0.02)

ref() { # ref NAME ARGS...: one rank, no jitter
  local name=$1; shift
  "$BIN" train "${MODEL[@]}" "$@" --log "$TMP/$name.jsonl" --save "$TMP/$name" >"$TMP/$name.out" 2>&1 \
    || bad "one-rank reference $name: $(tail -3 "$TMP/$name.out")"
}
# layout NAME NP REF ARGS...: NP ranks under jitter, compared with the one-rank run REF
layout() {
  local name=$1 np=$2 r=$3; shift 3
  if ! MPT_DEBUG_JITTER_US="$J:$SEED" timeout -k 5 150 "${MPIRUN[@]}" -np "$np" "$BIN" train \
       "${MODEL[@]}" "$@" --comm-timeout 60 --log "$TMP/$name.jsonl" --save "$TMP/$name" \
       >"$TMP/$name.out" 2>&1; then
    bad "$name (jitter $J us, seed $SEED): run failed: $(grep -m3 'error' "$TMP/$name.out" | tr '\n' ' ')"
    return
  fi
  if "${CMP[@]}" "$TMP/$name.jsonl" "$TMP/$name/latest/model.safetensors" \
       "$TMP/$r.jsonl" "$TMP/$r/latest/model.safetensors" --rtol 1e-5 >"$TMP/cmp" 2>&1; then
    ok "$name under jitter (${J} us, seed $SEED) = one rank: $(tr '\n' ' ' < "$TMP/cmp")"
  else
    bad "$name under jitter (${J} us, seed $SEED) differs from one rank: $(tr '\n' ' ' < "$TMP/cmp")"
  fi
}

ref ref1 --microbatches 1
ref ref2 --microbatches 2
ref ref4 --microbatches 4
layout dp4-zero0-m1 4 ref1 --dp 4 --zero 0 --microbatches 1
layout dp4-zero0-m4 4 ref4 --dp 4 --zero 0 --microbatches 4
J0=$J; J=20 # shorter sleeps: more of the skipped tests per second
layout dp4-zero0-m1-j20 4 ref1 --dp 4 --zero 0 --microbatches 1
J=$J0
layout dp4-zero1-m1 4 ref1 --dp 4 --zero 1 --microbatches 1
layout dp2-zero2-m2 2 ref2 --dp 2 --zero 2 --microbatches 2
layout tp2-sp 2 ref1 --tp 2 --sp
if [ "$SMALL" = 0 ]; then
  layout dp4-zero3-m1 4 ref1 --dp 4 --zero 3 --microbatches 1
  layout pp2-zb-dp2-zero1 4 ref4 --pp 2 --dp 2 --zero 1 --schedule zb-h1 --microbatches 2
  layout cp2 2 ref1 --cp 2
  layout dp2-tp2 4 ref2 --dp 2 --tp 2 --microbatches 1
else
  echo "(SMALL: dp 4 ZeRO-3, pp 2 x dp 2, cp 2 and dp 2 x tp 2 left out)"
fi
finish
