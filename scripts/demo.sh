#!/usr/bin/env bash
# make demo: trains a small GPT on the default corpus (Moby-Dick, byte tokens) across MPI ranks
# (data-parallel replicas with ZeRO-1), with a progress display and a closing summary, then
# samples text from the checkpoint it saved.
set -euo pipefail
BUILD=${1:-build}
OUT=${DEMO_OUT:-out/demo}
STEPS=${DEMO_STEPS:-300}
RANKS=${DEMO_RANKS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf "$OUT"; mkdir -p "$OUT"
echo "== mptrain demo: 4-layer GPT (d 192, 6 heads, 128 tokens) on Moby-Dick"
echo "== layout: $RANKS ranks = data-parallel $RANKS x tensor 1 x pipeline 1, ZeRO-0; $STEPS steps"
mpirun --oversubscribe --bind-to none -np "$RANKS" "$BUILD/mptrain" train \
  --dp "$RANKS" --zero 0 --model tiny --layers 4 --d-model 192 --heads 6 --seq-len 128 \
  --batch 16 --steps "$STEPS" --lr 2e-3 --warmup 20 \
  --log "$OUT/log.jsonl" --save "$OUT/ckpt" --keep 1
echo
echo "== sample (temperature 0.8, top-k 40) =="
"$BUILD/mptrain" generate --checkpoint "$OUT/ckpt" --prompt "Call me Ishmael. " --tokens 300
