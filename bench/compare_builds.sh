#!/usr/bin/env bash
# bench/compare_builds.sh — two builds of mptrain side by side on the same work: single rank
# (2 threads), dp 2 (weak scaling: 8 sequences per replica), tp 2 and pp 2 (8 micro-batches,
# 1F1B), one thread per rank, on the benchmark model (L6 D384 H6 T256, byte vocab). Each round
# runs every (layout, build) pair once, the build order alternating from round to round; the
# figure is the median step tokens/s over all rounds (two warm-up steps dropped per run), with
# the min..max of the per-run medians. Usage:
#   bash bench/compare_builds.sh OLD_BUILD_DIR NEW_BUILD_DIR [ROUNDS]
# BENCH_LAYOUTS picks a subset (default "one dp2 tp2 pp2"; also dp2strong: dp 2 with the global
# batch 8 split, 4 sequences per replica; one1: one rank on 1 thread, the 1-rank baseline of
# the 2-rank layouts; tp2sp: tp 2 with --sp), BENCH_STEPS the steps per run (8; 2 dropped).
# BENCH_OLD_ARGS / BENCH_NEW_ARGS add options to every run of one build (e.g. the same build
# twice with BENCH_NEW_ARGS="--gemm onednn-split": the GEMM threadings side by side).
# A refactor that is no slower shows a ratio new/old near 1 within the spread.
set -euo pipefail
OLD=$1/mptrain NEW=$2/mptrain ROUNDS=${3:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} # as CI and bench/run.sh: no detection
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
MODEL=(--model small --steps "${BENCH_STEPS:-8}" --quiet --lr 6e-4)
MPIRUN=(mpirun --bind-to none -np 2)
read -r -a layouts <<<"${BENCH_LAYOUTS:-one dp2 tp2 pp2}"
args_one=(--threads 2 --batch 8)
args_dp2=(--threads 1 --batch 16 --dp 2)
args_dp2strong=(--threads 1 --batch 8 --dp 2)
args_one1=(--threads 1 --batch 8)
args_tp2=(--threads 1 --batch 8 --tp 2)
args_tp2sp=(--threads 1 --batch 8 --tp 2 --sp)
args_pp2=(--threads 1 --batch 8 --pp 2 --microbatches 8)
for ((round = 0; round < ROUNDS; round++)); do
  builds=(old new); [ $((round % 2)) = 1 ] && builds=(new old)
  for lay in "${layouts[@]}"; do
    for b in "${builds[@]}"; do
      bin=$OLD; [ "$b" = new ] && bin=$NEW
      extra=(${BENCH_OLD_ARGS:-}); [ "$b" = new ] && extra=(${BENCH_NEW_ARGS:-})
      declare -n a="args_$lay"
      launch=(); case $lay in one*) ;; *) launch=("${MPIRUN[@]}") ;; esac
      echo "  round $round: $lay $b" >&2
      "${launch[@]}" "$bin" train "${MODEL[@]}" "${a[@]}" ${extra[@]+"${extra[@]}"} --log "$TMP/$lay.$b.$round.jsonl" >/dev/null
    done
  done
done
/usr/bin/python3 - "$TMP" "$ROUNDS" "${layouts[@]}" <<'PY'
import json, statistics, sys, os
tmp, rounds, layouts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def steps(f):
    return [json.loads(l)["tokens_per_s"] for l in open(f) if '"step"' in l and '"event"' not in l][2:]
print(f"{'layout':8} {'old tok/s':>22} {'new tok/s':>22} {'new/old':>8}")
for lay in layouts:
    med = {}
    for b in ("old", "new"):
        runs = [steps(os.path.join(tmp, f"{lay}.{b}.{r}.jsonl")) for r in range(rounds)]
        pooled = statistics.median([x for r in runs for x in r])
        per = [statistics.median(r) for r in runs]
        med[b] = (pooled, min(per), max(per))
    o, n = med["old"], med["new"]
    print(f"{lay:8} {o[0]:8.0f} ({o[1]:5.0f}..{o[2]:5.0f}) {n[0]:8.0f} ({n[1]:5.0f}..{n[2]:5.0f}) {n[0]/o[0]:8.3f}")
PY
