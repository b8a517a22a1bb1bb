#!/usr/bin/env bash
# bench/sp_overlap.sh — how much of tensor + sequence parallelism's communication is exposed:
# tp 2 --sp (one thread per rank) on the benchmark model (L6 D384 H6 T256, batch 8, byte
# vocab), for one or two builds run in interleaved rounds. Per run, from rank 0's log: the
# median step (two warm-up steps dropped), the tp group's communication per step counted from
# each request's start to its completion ("in flight"), and the time rank 0 was blocked waiting
# for it ("exposed", comm_wait_seconds; a build without that field has only blocking
# collectives under --sp, whose in-flight time is all exposed). Figures: medians over the
# rounds with min..max. Also tp 2 without --sp as a control. Not part of the tests.
# Usage: bash bench/sp_overlap.sh BUILD_DIR [OTHER_BUILD_DIR] [ROUNDS]   (ROUNDS default 3)
set -euo pipefail
BUILDS=("$1"); [ -n "${2:-}" ] && BUILDS+=("$2")
ROUNDS=${3:-3} STEPS=${BENCH_STEPS:-6}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
MODEL=(--model small --batch 8 --steps "$STEPS" --threads 1 --quiet --lr 6e-4 --tp 2)
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < ${#BUILDS[@]}; i++)); do
    b=$(( (i + r) % ${#BUILDS[@]} ))
    for lay in sp nosp; do
      extra=(); [ $lay = sp ] && extra=(--sp)
      echo "  round $r: build $b $lay" >&2
      mpirun --bind-to none -np 2 "${BUILDS[$b]}/mptrain" train "${MODEL[@]}" "${extra[@]}" \
        --log "$TMP/$b.$lay.$r.jsonl" >/dev/null
    done
  done
done
/usr/bin/python3 - "$TMP" "$ROUNDS" "${BUILDS[@]}" <<'PY'
import json, os, statistics, sys
tmp, rounds, builds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def one(f):
    lines = [json.loads(l) for l in open(f)]
    steps = [l for l in lines if "step" in l and "event" not in l]
    end = lines[-1]
    n = end.get("steps", len(steps))
    step = statistics.median(s["step_ms"] for s in steps[2:]) / 1e3
    tp = end["comm"].get("tp", {})
    flight = sum(op["seconds"] for op in tp.values()) / n
    wait = end.get("comm_wait_seconds", {}).get("tp", flight * n) / n
    return step, flight, wait
def fmt(v, scale=1e3):
    v = sorted(x * scale for x in v)
    return f"{statistics.median(v):7.1f} ({v[0]:.1f}..{v[-1]:.1f})"
load = os.getloadavg()[0]
print(f"tp 2, bench model, {rounds} rounds, ms per step, median (min..max); load average {load:.1f}")
print(f"{'build':28} {'layout':6} {'step':>22} {'tp in flight':>22} {'tp exposed':>22} {'exposed/step':>12}")
for b, path in enumerate(builds):
    for lay in ("sp", "nosp"):
        runs = [one(os.path.join(tmp, f"{b}.{lay}.{r}.jsonl")) for r in range(rounds)]
        share = statistics.median(w / s for s, _, w in runs)
        print(f"{path[-28:]:28} {lay:6} {fmt([x[0] for x in runs])} {fmt([x[1] for x in runs])} "
              f"{fmt([x[2] for x in runs])} {share:12.3f}")
PY
