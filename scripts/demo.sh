#!/usr/bin/env bash
# make demo: trains a small GPT on the default corpus (Moby-Dick, byte tokens) over 8 MPI ranks
# laid out as data 2 x pipeline 2 x tensor 2 (1F1B schedule, ZeRO-1 over the data-parallel
# pairs), with a progress display and a closing summary, then samples text from the checkpoint.
set -euo pipefail
BUILD=${1:-build}
OUT=${DEMO_OUT:-out/demo}
STEPS=${DEMO_STEPS:-300}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf "$OUT"; mkdir -p "$OUT"
echo "== mptrain demo: a 4-layer GPT (d 192, 6 heads, 128 tokens, 1.9M parameters) on Moby-Dick"
echo "== 8 ranks = data 2 x pipeline 2 x tensor 2, 1F1B over 4 micro-batches, ZeRO-1; $STEPS steps"
mpirun --oversubscribe --bind-to none -np 8 "$BUILD/mptrain" train \
  --dp 2 --pp 2 --tp 2 --zero 1 --schedule 1f1b --microbatches 4 \
  --model tiny --layers 4 --d-model 192 --heads 6 --seq-len 128 \
  --batch 16 --steps "$STEPS" --lr 2e-3 --warmup 20 \
  --log "$OUT/log.jsonl" --trace "$OUT/trace.json" --save "$OUT/ckpt" --keep 1
echo
echo "log: $OUT/log.jsonl   trace (open in Perfetto): $OUT/trace.json"
echo
echo "== sample (temperature 0.8, top-k 40) =="
"$BUILD/mptrain" generate --checkpoint "$OUT/ckpt" --prompt "Call me Ishmael. " --tokens 300
