#!/usr/bin/env bash
# bench/scale_ab.sh — two builds of mptrain side by side on one 2-rank layout, for changes to
# parallel overlap on a loaded machine, where wall-clock tokens/s alone is noise: each round
# runs both builds (order alternating), and the figures per build are the medians over the
# rounds of: step tokens/s (two warm-up steps dropped), the CPU seconds of each rank (user +
# sys, /usr/bin/time: the work a rank does, including its MPI copies, not its waiting) and the
# seconds the ranks spent blocked in communication (the log's comm_wait_seconds, summed over
# groups and ranks' mean), and each round's tokens/s ratio. Benchmark model: L6 D384 H6 T256, batch 8,
# one thread per rank.
# Usage: bash bench/scale_ab.sh OLD_BUILD_DIR NEW_BUILD_DIR ROUNDS -- LAYOUT_ARGS...
#   e.g. bash bench/scale_ab.sh /tmp/old build 4 -- --tp 2 --sp
# BENCH_STEPS: steps per run (default 6). BENCH_OLD_ARGS / BENCH_NEW_ARGS add options to every
# run of one build (the same build twice: two settings side by side, e.g. --bucket-mb 4 and 64);
# BENCH_OLD_ENV / BENCH_NEW_ENV set environment variables for one build's runs (NAME=VALUE ...,
# e.g. OpenMPI's MCA settings: BENCH_NEW_ENV=OMPI_MCA_btl_vader_single_copy_mechanism=none).
# BENCH_NP: ranks (default 2; e.g. BENCH_NP=4 ... -- --dp 2 --tp 2 for the 4-rank layouts, whose
# CPU figure is then the mean over the 4 ranks).
set -euo pipefail
OLD=$1/mptrain NEW=$2/mptrain ROUNDS=$3; shift 3; [ "${1:-}" = -- ] && shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
MODEL=(--model small --batch 8 --steps "${BENCH_STEPS:-6}" --threads 1 --quiet --lr 6e-4)
for ((round = 0; round < ROUNDS; round++)); do
  builds=(old new); [ $((round % 2)) = 1 ] && builds=(new old)
  for b in "${builds[@]}"; do
    bin=$OLD; [ "$b" = new ] && bin=$NEW
    extra=(${BENCH_OLD_ARGS:-}); [ "$b" = new ] && extra=(${BENCH_NEW_ARGS:-})
    envs=(${BENCH_OLD_ENV:-}); [ "$b" = new ] && envs=(${BENCH_NEW_ENV:-})
    echo "  round $round: $b" >&2
    env ${envs[@]+"${envs[@]}"} mpirun --oversubscribe --bind-to none -np "${BENCH_NP:-2}" sh -c '/usr/bin/time -f "%U %S" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
      "$TMP/$b.$round.cpu" "$bin" train "${MODEL[@]}" "$@" ${extra[@]+"${extra[@]}"} --log "$TMP/$b.$round.jsonl" >/dev/null
  done
done
/usr/bin/python3 - "$TMP" "$ROUNDS" "${BENCH_NP:-2}" "${MODEL[@]}" "$@" <<'PY'
import json, statistics, sys, os
tmp, rounds, nranks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
del sys.argv[3]
print("layout:", " ".join(sys.argv[3:]))
res = {}
for b in ("old", "new"):
    tok, cpu, wait = [], [], []
    for r in range(rounds):
        lines = [json.loads(l) for l in open(os.path.join(tmp, f"{b}.{r}.jsonl"))]
        steps = [x for x in lines if "step" in x and "event" not in x]
        tok.append(statistics.median(x["tokens_per_s"] for x in steps[2:]))
        n = lines[-1]["steps"]
        cpus = []
        for k in range(nranks):
            u, s = open(os.path.join(tmp, f"{b}.{r}.cpu.{k}")).read().split()[-2:]
            cpus.append(float(u) + float(s))
        cpu.append(statistics.mean(cpus) / n)
        wait.append(sum(lines[-1].get("comm_wait_seconds", {}).values()) / n)
    res[b] = (tok, cpu, wait)
    print(f"{b}: tokens/s median {statistics.median(tok):7.0f} ({min(tok):.0f}..{max(tok):.0f})"
          f"   CPU s/step/rank {statistics.median(cpu):6.3f} ({min(cpu):.3f}..{max(cpu):.3f})"
          f"   blocked comm s/step {statistics.median(wait):6.3f} ({min(wait):.3f}..{max(wait):.3f})")
o, n = res["old"], res["new"]
pairs = [b / a for a, b in zip(o[0], n[0])]  # each round's two runs, next to each other
print("per round new/old tokens/s:", " ".join(f"{p:.3f}" for p in pairs),
      f"(new ahead in {sum(p > 1 for p in pairs)} of {len(pairs)})")
print(f"new/old: tokens/s {statistics.median(n[0]) / statistics.median(o[0]):.3f}   CPU "
      f"{statistics.median(n[1]) / statistics.median(o[1]):.3f}   blocked comm "
      f"{statistics.median(n[2]) / max(statistics.median(o[2]), 1e-9):.3f}")
PY
