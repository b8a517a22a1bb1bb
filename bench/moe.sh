#!/usr/bin/env bash
# bench/moe.sh — Mixture-of-Experts and expert parallelism, measured in one run on this machine:
#   1. ep 2 (2 ranks x 1 thread, one core each, dp 2) against one rank x 1 thread with the same
#      experts, the same global batch and the same micro-batches: efficiency = tokens/s(ep 2) /
#      (2 x tokens/s(1 rank)), and the share of the ep run in the all-to-all (the log's
#      comm.ep.alltoall seconds over the run's seconds, rank 0: dispatch and combine, forward and
#      backward, including the wait for the slower rank);
#   2. an MoE model (E 8, top-2, expert width F) against the dense model of the same active
#      FLOPs (MLP width 2F; the router adds D x E per token), trained on the same tokens: final
#      loss and tokens/s, one rank x 1 thread each (2 threads spin badly when the machine is shared).
# Medians over the steps after the first; "per CPU-second" divides each step's tokens/s by the
# log's cpu_share (the rank's CPU seconds over wall seconds), the figure to compare when other
# jobs share the cores. Usage: bash bench/moe.sh BUILD_DIR [quick]
# (quick: part 1 only).
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/mptrain"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
MPIRUN=(mpirun --bind-to none --oversubscribe -np 2)

run() { # NAME [mpirun ...] ARGS...: an mptrain run logging to $TMP/NAME.jsonl
  local name=$1; shift
  echo "  running $name" >&2
  "$@" --quiet --log "$TMP/$name.jsonl" >/dev/null
}
MOE=(--layers 4 --d-model 256 --heads 4 --seq-len 128 --batch 8 --lr 1e-3 --experts 8
     --top-k 2 --ffn 512)
run one "$BIN" train "${MOE[@]}" --steps "${BENCH_STEPS:-6}" --threads 1 --microbatches 2
run ep2 "${MPIRUN[@]}" "$BIN" train "${MOE[@]}" --steps "${BENCH_STEPS:-6}" --threads 1 --dp 2 --ep 2
if [ "${2:-}" != quick ]; then
  LONG=${BENCH_LONG_STEPS:-60}
  run moe "$BIN" train "${MOE[@]}" --steps "$LONG" --threads 1 --warmup 10
  run dense "$BIN" train "${MOE[@]}" --experts 0 --ffn 1024 --steps "$LONG" --threads 1 --warmup 10
fi
/usr/bin/python3 - "$TMP" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
def load(name):
    p = os.path.join(d, name + ".jsonl")
    if not os.path.exists(p): return None
    lines = [json.loads(l) for l in open(p)]
    steps = [l for l in lines if "step" in l and "event" not in l]
    return lines[0], steps, lines[-1]
def med(steps, key): return statistics.median(s[key] for s in steps[1:] or steps)
def per_cpu(steps): # tokens per CPU-second of the rank: tokens/s over its CPU share
    return statistics.median(s["tokens_per_s"] / s["cpu_share"] for s in steps[1:] or steps
                             if s.get("cpu_share"))
one, ep2 = load("one"), load("ep2")
t1, t2 = med(one[1], "tokens_per_s"), med(ep2[1], "tokens_per_s")
a2a = ep2[2]["comm"].get("ep", {}).get("alltoall", {})
secs = ep2[2]["seconds"]
print("MoE L4 D256 E8 top-2 F512, T 128, batch 8:")
print(f"  one rank x 1 thread      {t1:8.0f} tokens/s ({per_cpu(one[1]):.0f} per CPU-second)")
print(f"  ep 2 (dp 2, 2 x 1 thread) {t2:7.0f} tokens/s   efficiency {t2 / (2 * t1):.2f}   "
      f"all-to-all {a2a.get('seconds', 0):.2f} s of {secs:.2f} s "
      f"({100 * a2a.get('seconds', 0) / secs:.1f}%, {a2a.get('calls', 0)} calls, "
      f"{a2a.get('bytes', 0) / 2**20:.1f} MiB, rank 0)")
print(f"  losses equal: last step {one[1][-1]['loss']:.6f} / {ep2[1][-1]['loss']:.6f}")
moe, dense = load("moe"), load("dense")
if moe and dense:
    for name, r in (("MoE E8 top-2 F512 ", moe), ("dense F1024       ", dense)):
        s, steps, e = r
        tail = statistics.mean(x["loss"] for x in steps[-10:])
        print(f"  {name} after {len(steps)} steps ({len(steps) * 8 * 128} tokens): loss {tail:.4f} "
              f"(mean of the last 10), {med(steps, 'tokens_per_s'):.0f} tokens/s "
              f"({per_cpu(steps):.0f} per CPU-s), "
              f"{s['memory_plan_bytes']['param_elements']} parameters (padded)"
              + (f", aux_loss {steps[-1]['aux_loss']:.4f}, imbalance {steps[-1]['moe_imbalance']:.2f}"
                 if "aux_loss" in steps[-1] else ""))
PY
