#!/usr/bin/env bash
# t_torch_ref.sh — one mptrain rank against a live PyTorch reference (CONTRACT §2, §4, §5).
# Usage: bash tests/t_torch_ref.sh BUILD_DIR   (from the repo root; ctest does this)
# For each configuration, tests/torch_ref.py runs build/mptrain, rebuilds the model in float64
# torch and requires <= 1e-4 relative on the step-1 logits and every step-1 gradient, and on
# every step's loss, grad_norm and lr over 10 steps of torch.optim.AdamW + clip_grad_norm_;
# case d also requires the final weights of every tensor to match (--weights-tol).
#   a  tiny-sized, tied, fresh init, cosine with warm-up, 2 micro-batches; the reference's own
#      autograd is also checked against finite differences
#   b  untied head, vocab 100 (padded to 128 inside the engine), ffn 96 != 4*D, 3 layers,
#      2 heads, 3 micro-batches, a 700-token file (the data order wraps around), and weights
#      perturbed away from the initial regime (--init-from) so gelu/softmax/LN are exercised
#   c  the tiny preset (T 64), constant LR, clipping active every step (--grad-clip 0.1),
#      weight decay 0.05, tied head from perturbed weights
#   d  AdamW end to end: 12 steps with weight decay 0.1 on the matrices (rank >= 2) and none on
#      the 1-D tensors, warm-up 2 then cosine, clipping to 3.0 (active on the early steps, not on
#      the late ones), from weights perturbed x5; then mptrain's saved checkpoint
#      (step_000012/model.safetensors) against the torch model after the same 12 steps of
#      torch.optim.AdamW, EVERY tensor within 1e-4 normwise (max|a - b| / max|b|; each tensor's
#      figure and the largest are printed).
#      Why 1e-4: a correct engine stays ~10x below it and the subtlest AdamW bug tried stays ~7x
#      above it. The difference of a correct fp32 engine from the fp64 reference is set by
#      Adam's per-element division: an element whose gradient is small next to the fp32
#      rounding of its tensor moves by a noisy fraction of lr (see torch_ref.py). Measured here
#      (this machine, oneDNN GEMMs): largest 7.6e-6 (h.1.mlp.c_proj.weight), while losses agree to
#      ~3e-8. The same run against a reference with one AdamW detail changed: no decay on the
#      matrices 7.0e-4, decay on the 1-D tensors too ~5e-4 or more, eps 1e-6 instead of 1e-8
#      1e-2; the loss comparison (1e-4) misses the two decay bugs, the weights do not. Starting
#      from x5 weights keeps every tensor well away from zero (so max|b| is a scale that
#      rounding noise is small against: from x3 the largest was 2.8e-5, from the raw init 7e-5).
#   e  Mixture-of-Experts (model/moe.h): every block MoE, 4 experts, top-2, dropless, 2
#      micro-batches (the aux loss is per micro-batch): logits, every gradient (router and
#      experts included), loss, grad_norm and the logged aux_loss
#   f  MoE every 2nd of 3 blocks, capacity factor 1 (assignments dropped every step), z-loss
#      0.001, aux coef 0.05, untied head; the reference's autograd also against finite
#      differences
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

run d --perturb 5 --weights-tol 1e-4 -- --data "$tmp/bytes.bin" --layers 2 --d-model 64 --heads 4 \
    --seq-len 32 --batch 4 --microbatches 2 --lr 1e-3 --warmup 2 --lr-schedule cosine --steps 12 \
    --weight-decay 0.1 --grad-clip 3.0

run e --perturb 3 -- --data "$tmp/bytes.bin" --layers 2 --d-model 32 --heads 4 --seq-len 16 \
    --batch 4 --microbatches 2 --lr 1e-3 --steps 6 --experts 4 --top-k 2 --threads 1

run f --perturb 3 --fdcheck 2 -- --data "$tmp/bytes.bin" --layers 3 --d-model 32 --heads 4 \
    --seq-len 16 --batch 4 --microbatches 2 --lr 1e-3 --steps 6 --experts 4 --top-k 2 \
    --moe-every 2 --capacity-factor 1 --z-loss-coef 0.001 --aux-loss-coef 0.05 --untied \
    --threads 1

if [ ${#failed[@]} -gt 0 ]; then
  echo "t_torch_ref: FAILED: ${failed[*]}"
  exit 1
fi
echo "t_torch_ref: all configurations match PyTorch"
