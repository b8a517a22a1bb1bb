#!/usr/bin/env bash
# bench/bf16.sh — bf16 mixed precision (train --dtype bf16) against fp32, on one rank and on
# dp 2, with PyTorch 1.13's CPU bf16 autocast on the same model as the anchor.
#
#   bash bench/bf16.sh [BUILD_DIR]
#
# Work: the `small` preset (6 layers, d_model 384, 6 heads, seq 256, byte vocab 256), batch 8,
# the default corpus (Moby-Dick bytes). mptrain runs fp32 and bf16 alternately, round after
# round (BF16_ROUNDS, BF16_STEPS steps each, the first BF16_WARMUP dropped); figures are medians
# of the kept steps' tokens/s, so the ratio bf16/fp32 is measured side by side under the same
# load. dp 2 runs two ranks of one thread each. torch: bench/torch_gpt.py (random tokens, fp32
# and --autocast bf16), fewer steps: autocast is slow on a CPU without bf16 instructions.
# Loss curves: BF16_CURVE_STEPS steps of each precision on one rank of the `tiny` preset (the
# test's model: 200 steps take seconds), printed side by side.
# Prints a table and writes bench/results/bf16.json (BF16_OUT). Never gates a test.
#
# Knobs: BF16_ROUNDS (2) BF16_STEPS (8) BF16_WARMUP (2) BF16_CURVE_STEPS (100)
#   BF16_TORCH_STEPS (3) BF16_THREADS (2) BF16_OUT
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN="$BUILD/mptrain"
PY=/usr/bin/python3
ROUNDS=${BF16_ROUNDS:-2} STEPS=${BF16_STEPS:-8} WARM=${BF16_WARMUP:-2}
CURVE=${BF16_CURVE_STEPS:-200} TSTEPS=${BF16_TORCH_STEPS:-3} THREADS=${BF16_THREADS:-2}
OUT=${BF16_OUT:-bench/results/bf16.json}
[ -x "$BIN" ] || { echo "bench: $BIN not found: build first" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl self,vader)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MODEL=(--model small --batch 8 --quiet)

for r in $(seq 1 "$ROUNDS"); do
  for d in fp32 bf16; do
    "$BIN" train "${MODEL[@]}" --dtype $d --steps "$STEPS" --threads "$THREADS" --log "$T/one-$d-$r.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dtype $d --steps "$STEPS" --threads 1 --dp 2 \
      --log "$T/dp2-$d-$r.jsonl" >/dev/null
  done
done
for d in fp32 bf16; do
  "$BIN" train --model tiny --quiet --dtype $d --steps "$CURVE" --threads "$THREADS" --log "$T/curve-$d.jsonl" >/dev/null
done
for a in none bf16; do
  "$PY" bench/torch_gpt.py --steps "$((TSTEPS + 1))" --threads "$THREADS" --autocast $a --log "$T/torch-$a.jsonl"
done

"$PY" - "$T" "$ROUNDS" "$WARM" "$OUT" <<'PY'
import glob, json, os, statistics, sys
T, rounds, warm, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def steps(path):
    return [l for l in map(json.loads, open(path)) if "step" in l and "event" not in l]
def med(pattern, drop):
    v = [s["tokens_per_s"] for p in sorted(glob.glob(f"{T}/{pattern}")) for s in steps(p)[drop:]]
    return statistics.median(v) if v else float("nan")
start = json.loads(open(f"{T}/one-bf16-1.jsonl").readline())
res = {"model": "small", "batch": 8, "seq_len": 256, "bf16_gemm": start.get("bf16_gemm"),
       "peak_flops_fp32_fma": start.get("peak_flops")}
for lay in ("one", "dp2"):
    f, b = med(f"{lay}-fp32-*.jsonl", warm), med(f"{lay}-bf16-*.jsonl", warm)
    res[lay] = {"fp32_tokens_per_s": f, "bf16_tokens_per_s": b, "bf16_over_fp32": b / f}
f, b = med("torch-none.jsonl", 1), med("torch-bf16.jsonl", 1)
res["torch"] = {"fp32_tokens_per_s": f, "autocast_bf16_tokens_per_s": b, "bf16_over_fp32": b / f}
c32, c16 = steps(f"{T}/curve-fp32.jsonl"), steps(f"{T}/curve-bf16.jsonl")
res["loss_curves"] = [{"step": a["step"], "fp32": a["loss"], "bf16": b["loss"]} for a, b in zip(c32, c16)]
os.makedirs(os.path.dirname(out), exist_ok=True)
json.dump(res, open(out, "w"), indent=1)
print(f"bf16 GEMMs: {res['bf16_gemm']}")
print(f"{'':24}{'fp32 tok/s':>12}{'bf16 tok/s':>12}{'bf16/fp32':>11}")
for name, k in (("mptrain, one rank", "one"), ("mptrain, dp 2", "dp2")):
    r = res[k]
    print(f"{name:24}{r['fp32_tokens_per_s']:12.0f}{r['bf16_tokens_per_s']:12.0f}{r['bf16_over_fp32']:11.2f}")
r = res["torch"]
print(f"{'torch 1.13 autocast':24}{r['fp32_tokens_per_s']:12.0f}{r['autocast_bf16_tokens_per_s']:12.0f}{r['bf16_over_fp32']:11.3f}")
print("loss curves (tiny preset, one rank, default corpus):\n  step      fp32      bf16   rel diff")
n = len(res["loss_curves"])
for e in res["loss_curves"]:
    if e["step"] in (1, 2, 5, 10) or e["step"] % 25 == 0 or e["step"] == n:
        print(f"  {e['step']:4d} {e['fp32']:9.4f} {e['bf16']:9.4f} {abs(e['bf16'] - e['fp32']) / e['fp32']:10.1e}")
print(f"written to {out}")
PY
