#!/usr/bin/env bash
# bench/tp_cpu.sh — where a 2-rank layout's CPU goes against one rank's, in CPU seconds per
# step (readable under load, unlike tokens/s): one rank at one thread, and the layout's two
# ranks at one thread each, every run timed by /usr/bin/time (user + sys of the process). The
# fixed costs (MPI start-up, model init, the log) cancel in the difference of a long and a
# short run: CPU/step = (CPU(S2 steps) - CPU(S1 steps)) / (S2 - S1), and the same difference
# of the log's comm_wait_seconds (world rank 0's wall time blocked in waits). Figures per
# round, then medians:
#   one      one rank's CPU per step (the whole step's work on one core)
#   layout   each rank's CPU per step (mean of the two ranks) and
#   extra =  layout - one / 2: the CPU a rank of the layout spends that half of one rank's
#            step does not: duplicated LayerNorms/residuals/loss, MPI copies and reduce adds,
#            smaller-GEMM inefficiency, and the polling of its waits (with a core per rank a wait
#            spins up to 50 ms before it naps, so blocked time is mostly CPU time when idle;
#            under load the blocked wall time also holds the peer's descheduled time, which
#            is not this rank's CPU: blocked is printed beside extra, not subtracted from it)
# Benchmark model: L6 D384 H6 T256, batch 8, one thread per rank (as bench/scale_ab.sh).
# Usage: bash bench/tp_cpu.sh BUILD_DIR ROUNDS -- LAYOUT_ARGS...   e.g. ... build 3 -- --tp 2
# BENCH_S1 / BENCH_S2: the short and long runs' steps (default 3 and 9).
set -euo pipefail
BIN=$1/mptrain ROUNDS=$2; shift 2; [ "${1:-}" = -- ] && shift
S1=${BENCH_S1:-3} S2=${BENCH_S2:-9}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
MODEL=(--model small --batch 8 --threads 1 --quiet --lr 6e-4)
for ((round = 0; round < ROUNDS; round++)); do
  for s in "$S1" "$S2"; do
    echo "  round $round: one rank, $s steps" >&2
    /usr/bin/time -f "%U %S" -o "$TMP/one.$round.$s.cpu.0" "$BIN" train "${MODEL[@]}" --steps "$s" \
      --log "$TMP/one.$round.$s.jsonl" >/dev/null
    echo "  round $round: $*, $s steps" >&2
    mpirun --bind-to none -np 2 sh -c '/usr/bin/time -f "%U %S" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
      "$TMP/lay.$round.$s.cpu" "$BIN" train "${MODEL[@]}" --steps "$s" "$@" \
      --log "$TMP/lay.$round.$s.jsonl" >/dev/null
  done
done
/usr/bin/python3 - "$TMP" "$ROUNDS" "$S1" "$S2" "$@" <<'PY'
import json, statistics, sys, os
tmp, rounds, s1, s2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def cpu(name, ranks):
    v = []
    for k in range(ranks):
        u, s = open(os.path.join(tmp, f"{name}.cpu.{k}")).read().split()[-2:]
        v.append(float(u) + float(s))
    return statistics.mean(v)
def wait(name):  # world rank 0's blocked seconds, summed over its groups
    end = [json.loads(l) for l in open(os.path.join(tmp, name + ".jsonl"))][-1]
    return sum(end.get("comm_wait_seconds", {}).values())
rows = []
for r in range(rounds):
    one = (cpu(f"one.{r}.{s2}", 1) - cpu(f"one.{r}.{s1}", 1)) / (s2 - s1)
    lay = (cpu(f"lay.{r}.{s2}", 2) - cpu(f"lay.{r}.{s1}", 2)) / (s2 - s1)
    blk = (wait(f"lay.{r}.{s2}") - wait(f"lay.{r}.{s1}")) / (s2 - s1)
    rows.append((one, lay, blk, lay - one / 2))
    print(f"round {r}: one {one:.3f}  layout/rank {lay:.3f}  blocked {blk:.3f}  extra {rows[-1][3]:+.3f} s/step")
med = [statistics.median(x[i] for x in rows) for i in range(4)]
print("layout:", " ".join(sys.argv[5:]), f"(steps {s2} - {s1}; load {os.getloadavg()[0]:.1f})")
print(f"median CPU s/step: one rank {med[0]:.3f} (half {med[0] / 2:.3f});  per layout rank {med[1]:.3f}"
      f" = half + extra {med[3]:+.3f} ({100 * med[3] / (med[0] / 2):.1f}% of half a step);"
      f"  blocked (wall) {med[2]:.3f} s/step")
PY
