#!/usr/bin/env bash
# bench/parallel.sh — mptrain's parallel strategies on the benchmark model (6 layers, d 384,
# 6 heads, seq 256, batch 8, byte vocab), each against one rank at one thread, measured in one
# run on this machine's 2 cores (every rank gets one thread and, with 2 ranks, a core):
#   data parallelism   dp 2 vs 1 rank: efficiency = tokens/s(dp 2) / (2 x tokens/s(1 rank)),
#                      weak scaling (each replica gets the single rank's 8 sequences, global
#                      batch 16) and strong scaling (global batch 8, 4 per replica); and
#                      tokens/s against PyTorch DDP over gloo with 2 processes (batch 16);
#                      with the default bucket, which on one node is the whole gradient (reduced
#                      after the backward: on shared memory its ring takes ~10 ms, less than
#                      overlapping costs; parallel/dp_node.c), and with 4 MB buckets overlapped
#                      with the backward (the default across nodes), weak and strong
#   tensor parallelism tp 2 (with and without --sp) vs 1 rank: efficiency, and the share of the
#                      run rank 0 spent blocked in the tp group's waits (the log's
#                      comm_wait_seconds; the collectives' summed start-to-completion spans,
#                      which overlap each other and the compute, beside it)
#   pipeline           pp 2, 8 micro-batches, 1F1B vs 1 rank: efficiency, and the measured
#                      bubble against the theory (p-1)/(m+p-1)
#   ceiling            two single ranks at once, independent (no communication), each against
#                      one rank alone: what sharing the machine's memory bandwidth and caches
#                      leaves of 2x, the most any 2-rank layout can reach here
# Medians over the steps after two warm-up steps. Writes bench/results/parallel.json.
# Usage: bash bench/parallel.sh BUILD_DIR   (make bench runs it)
#        bash bench/parallel.sh BUILD_DIR buckets   the dp 2 bucket-size sweep only (sizes in
#        BENCH_BUCKETS, default "1 4 16 64" MB; BENCH_REPS rounds, default 3, interleaved)
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/mptrain"
STEPS=${BENCH_STEPS:-8}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=(--model small --batch 8 --steps "$STEPS" --threads 1 --quiet --lr 6e-4)
MPIRUN=(mpirun --bind-to none -np 2)

run() { # NAME [mpirun] ARGS...: an mptrain run logging to $TMP/NAME.jsonl
  local name=$1; shift
  echo "  running $name" >&2
  "$@" --log "$TMP/$name.jsonl" >/dev/null
}
if [ "${2:-}" = buckets ]; then
  # bucket-size sweep: dp 2 with 8 sequences per replica, each size run REPS times, the sizes
  # interleaved in every round so that the machine's drift hits them alike; median and range
  # over the runs of each run's median step
  SIZES=(${BENCH_BUCKETS:-1 4 16 64}); REPS=${BENCH_REPS:-3}
  for rep in $(seq "$REPS"); do
    for mb in "${SIZES[@]}"; do
      run "b${mb}_$rep" "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --dp 2 --batch 16 --bucket-mb "$mb"
    done
  done
  /usr/bin/python3 - "$TMP" "$REPS" "${SIZES[@]}" <<'PY'
import json, statistics, sys, os
tmp, reps, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(name):
    s = [json.loads(l) for l in open(os.path.join(tmp, name + ".jsonl")) if '"step"' in l and '"event"' not in l][2:]
    return statistics.median(x["tokens_per_s"] for x in s)
for mb in sizes:
    v = [med(f"b{mb}_{r}") for r in range(1, reps + 1)]
    print(f"dp 2, 8 sequences each, --bucket-mb {mb:>3}: median {statistics.median(v):6.0f} tokens/s, "
          f"range {min(v):.0f}-{max(v):.0f} over {reps} runs ({' '.join(f'{x:.0f}' for x in v)})")
PY
  exit 0
fi
run one "$BIN" train "${MODEL[@]}"
run dp2 "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --dp 2 --batch 16
run dp2b4 "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --dp 2 --batch 16 --bucket-mb 4
run dp2strong "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --dp 2
run dp2strongb4 "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --dp 2 --bucket-mb 4
run tp2 "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --tp 2
run tp2sp "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --tp 2 --sp
run pp2 "${MPIRUN[@]}" "$BIN" train "${MODEL[@]}" --pp 2 --microbatches 8 --schedule 1f1b
echo "  running two independent single ranks at once" >&2
"$BIN" train "${MODEL[@]}" --log "$TMP/pair0.jsonl" >/dev/null & pair=$!
"$BIN" train "${MODEL[@]}" --log "$TMP/pair1.jsonl" >/dev/null
wait "$pair"
run one_again "$BIN" train "${MODEL[@]}"   # the machine did not drift in between
echo "  running torch DDP (gloo, 2 processes)" >&2
port=$((29500 + RANDOM % 1000))
for r in 1 0; do
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=2 OMP_NUM_THREADS=1 \
    /usr/bin/python3 "$HERE/torch_ddp.py" --steps "$STEPS" --threads 1 --batch 16 >"$TMP/ddp$r.jsonl" 2>"$TMP/ddp$r.err" &
done
wait
mkdir -p "$HERE/results"
/usr/bin/python3 - "$TMP" "$HERE/results/parallel.json" <<'PY'
import json, statistics, sys, os, datetime
tmp, out = sys.argv[1], sys.argv[2]
def steps(name):
    return [json.loads(l) for l in open(os.path.join(tmp, name + ".jsonl")) if '"step"' in l and '"event"' not in l][2:]
def med(name, key="tokens_per_s"):
    return statistics.median(s[key] for s in steps(name))
def end(name):
    return [json.loads(l) for l in open(os.path.join(tmp, name + ".jsonl"))][-1]
one = (med("one") + med("one_again")) / 2
res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "model": "small (L6 D384 H6 T256 V256), batch 8, 1 thread per rank",
       "one_rank_tokens_per_s": one}
dp2, dps, ddp, dpb = med("dp2"), med("dp2strong"), med("ddp0"), med("dp2b4")
dpsb = med("dp2strongb4")
res["dp"] = {"dp2_tokens_per_s": dp2, "efficiency": dp2 / (2 * one),
             "bucket_4mb_tokens_per_s": dpb, "bucket_4mb_efficiency": dpb / (2 * one),
             "strong_tokens_per_s": dps, "strong_efficiency": dps / (2 * one),
             "strong_bucket_4mb_efficiency": dpsb / (2 * one),
             "torch_ddp_gloo_tokens_per_s": ddp, "ratio_vs_torch_ddp": dp2 / ddp}
for name in ("tp2", "tp2sp"):
    # comm_share: world rank 0's time blocked in the tp group's waits (the log's
    # comm_wait_seconds: the exposed communication) over the run's seconds. The per-operation
    # "seconds" of the log's comm section span each collective from its start to its
    # completion, overlapped ones included: chunks in flight at once each count their whole
    # span, so their sum can exceed the step (it read 168.8% with sp); it is kept as
    # comm_in_flight_share, the collectives' summed spans, not a share of the step.
    e = end(name)
    spans = sum(op["seconds"] for op in e["comm"].get("tp", {}).values())
    blocked = e.get("comm_wait_seconds", {}).get("tp", 0.0)
    res[name] = {"tokens_per_s": med(name), "efficiency": med(name) / (2 * one),
                 "comm_share": blocked / e["seconds"], "comm_in_flight_share": spans / e["seconds"]}
pp = med("pp2")
bub = statistics.median(s["bubble"] for s in steps("pp2"))
res["pp2_m8_1f1b"] = {"tokens_per_s": pp, "efficiency": pp / (2 * one), "bubble_measured": bub,
                      "bubble_theory": 1 / 9}
pair = (med("pair0") + med("pair1")) / 2
res["ceiling_two_independent_ranks"] = pair / one
json.dump(res, open(out, "w"), indent=2)
print(f"one rank, 1 thread        {one:8.0f} tokens/s")
print(f"two single ranks at once   {pair:8.0f} tokens/s each   ceiling {pair / one:.3f} (no communication: the machine's share of 2x)")
print(f"dp 2, 8 sequences each     {dp2:8.0f} tokens/s   efficiency {dp2 / (2 * one):.3f}   vs torch DDP/gloo {ddp:.0f} tokens/s: x{dp2 / ddp:.2f}")
print(f"dp 2, 8 each, 4 MB buckets {dpb:8.0f} tokens/s   efficiency {dpb / (2 * one):.3f} (overlapped with the backward; the default is one bucket on one node)")
print(f"dp 2, 4 sequences each     {dps:8.0f} tokens/s   efficiency {dps / (2 * one):.3f} (strong scaling: half the work per GEMM)")
print(f"dp 2, 4 each, 4 MB buckets {dpsb:8.0f} tokens/s   efficiency {dpsb / (2 * one):.3f}")
for name in ("tp2", "tp2sp"):
    r = res[name]
    print(f"{name:26s}{r['tokens_per_s']:8.0f} tokens/s   efficiency {r['efficiency']:.3f}   blocked in tp communication {100 * r['comm_share']:.1f}% of the run"
          f" (collectives' summed spans {100 * r['comm_in_flight_share']:.0f}%, overlapped ones included)")
r = res["pp2_m8_1f1b"]
print(f"pp 2, m 8, 1F1B           {pp:8.0f} tokens/s   efficiency {r['efficiency']:.3f}   bubble measured {r['bubble_measured']:.3f} vs theory {1 / 9:.3f}")
PY
