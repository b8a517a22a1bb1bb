#!/usr/bin/env bash
# t_torch_ref.sh — one mptrain rank against a live PyTorch reference (CONTRACT §2, §4, §5).
# Usage: bash tests/t_torch_ref.sh BUILD_DIR   (from the repo root; ctest does this)
# For each configuration, tests/torch_ref.py runs build/mptrain, rebuilds the model in float64
# torch and requires <= 1e-4 relative on the step-1 logits and every step-1 gradient, and on
# every step's loss, grad_norm and lr over 10 steps of torch.optim.AdamW + clip_grad_norm_.
#   a  tiny-sized, tied, fresh init, cosine with warm-up, 2 micro-batches; the reference's own
#      autograd is also checked against finite differences
#   b  untied head, vocab 100 (padded to 128 inside the engine), ffn 96 != 4*D, 3 layers,
#      2 heads, 3 micro-batches, a 700-token file (the data order wraps around), and weights
#      perturbed away from the initial regime (--init-from) so gelu/softmax/LN are exercised
#   c  the tiny preset (T 64), constant LR, clipping active every step (--grad-clip 0.1),
#      weight decay 0.05, tied head from perturbed weights
set -u
BUILD=${1:-build}
BIN="$BUILD/mptrain"
PY=/usr/bin/python3
REF="$(dirname "$0")/torch_ref.py"

if [ ! -x "$BIN" ]; then echo "t_torch_ref: $BIN is missing: build first" >&2; exit 1; fi
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
  echo "t_torch_ref: $PY cannot import torch and numpy (apt-get install python3-torch python3-numpy)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/t_torch_ref.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

"$PY" "$REF" --make-data "$tmp/bytes.bin" --vocab 256 --tokens 5000 --seed 0 || exit 1
"$PY" "$REF" --make-data "$tmp/v100.bin" --vocab 100 --tokens 700 --seed 1 || exit 1

failed=()
run() {   # name, reference options..., --, mptrain train options...
  local name=$1; shift
  echo "=== $name"
  if ! timeout 300 "$PY" "$REF" --mptrain "$BIN" --workdir "$tmp/$name" --name "$name" "$@"; then
    failed+=("$name")
  fi
}

run a --fdcheck 2 -- --data "$tmp/bytes.bin" --layers 2 --d-model 64 --heads 4 --seq-len 32 \
    --batch 4 --microbatches 2 --lr 1e-3 --warmup 2 --steps 10

run b --perturb 5 -- --data "$tmp/v100.bin" --layers 3 --d-model 64 --heads 2 --seq-len 24 \
    --vocab 100 --ffn 96 --untied --batch 6 --microbatches 3 --lr 2e-3 --warmup 3 --steps 10 \
    --threads 1

run c --perturb 3 -- --data "$tmp/bytes.bin" --model tiny --batch 2 --microbatches 1 --lr 3e-3 \
    --lr-schedule constant --grad-clip 0.1 --weight-decay 0.05 --steps 10

if [ ${#failed[@]} -gt 0 ]; then
  echo "t_torch_ref: FAILED: ${failed[*]}"
  exit 1
fi
echo "t_torch_ref: all configurations match PyTorch"
