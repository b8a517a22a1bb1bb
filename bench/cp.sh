#!/usr/bin/env bash
# bench/cp.sh — context parallelism and long context, measured in one run on this machine:
#   cp 2 (2 ranks x 1 thread, one core each) against one rank x 1 thread at T 2048, the same
#   global batch: efficiency = tokens/s(cp 2) / (2 x tokens/s(1 rank)), and the share of the
#   step the ring left waiting (the log's cp_ring_wait_seconds: time in the ring's waits after
#   the local block's compute, i.e. what the overlap did not hide, over the run's seconds);
#   long-context runs that the stored-probabilities kernel could not hold: a GPT-2-small-width
#   model (d 768, 12 heads) at T 8192 on one rank and at T 16384 with cp 2, with their memory
#   plan, arena peak and resident high-water mark.
# Medians over the steps after one warm-up step. Usage: bash bench/cp.sh BUILD_DIR [quick]
# (quick: the T 2048 comparison only).
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/mptrain"
STEPS=${BENCH_STEPS:-4}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
MPIRUN=(mpirun --bind-to none --oversubscribe -np 2)

run() { # NAME [mpirun ...] ARGS...: an mptrain run logging to $TMP/NAME.jsonl
  local name=$1; shift
  echo "  running $name" >&2
  "$@" --quiet --log "$TMP/$name.jsonl" >/dev/null
}
SMALL=(--model small --seq-len 2048 --batch 2 --steps "$STEPS" --threads 1 --lr 6e-4)
run one "$BIN" train "${SMALL[@]}"
run cp2 "${MPIRUN[@]}" "$BIN" train "${SMALL[@]}" --cp 2
if [ "${2:-}" != quick ]; then
  # GPT-2 small's width and depth (12 x 768, 12 heads; byte vocabulary), one step each: the
  # stored-probabilities kernel needed 12 x 12 x T^2 x 4 bytes for them alone (38.7 GB at 8192)
  WIDE=(--model tiny --layers 12 --d-model 768 --heads 12 --batch 1 --steps 1 --lr 6e-4)
  run t8192 "$BIN" train "${WIDE[@]}" --seq-len 8192 --threads 2
  # T 16384 with cp 2, 2 of the 12 blocks (time: 2 cores), memory per rank
  run t16384cp2 "${MPIRUN[@]}" "$BIN" train "${WIDE[@]}" --layers 2 --seq-len 16384 --cp 2 --threads 1
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
one, cp2 = load("one"), load("cp2")
t1, t2 = med(one[1], "tokens_per_s"), med(cp2[1], "tokens_per_s")
wait = cp2[2].get("cp_ring_wait_seconds", 0.0)
print(f"T 2048, {one[0]['n_layer']} layers d {one[0]['d_model']}, batch {one[0]['batch']}:")
print(f"  one rank x 1 thread  {t1:8.0f} tokens/s")
print(f"  cp 2 (2 x 1 thread)  {t2:8.0f} tokens/s   efficiency {t2 / (2 * t1):.2f}   "
      f"ring wait {wait:.2f} s of {cp2[2]['seconds']:.2f} s ({100 * wait / cp2[2]['seconds']:.1f}%, rank 0)")
print(f"  losses equal: step 1 {one[1][0]['loss']:.6f} / {cp2[1][0]['loss']:.6f}")
for name in ("t8192", "t16384cp2"):
    r = load(name)
    if not r: continue
    s, steps, e = r
    rk = e["ranks"][0]
    print(f"{name}: T {s['seq_len']} cp {s['layout']['cp']}: {med(steps, 'tokens_per_s'):.0f} tokens/s, "
          f"plan {rk['planned_mem_bytes'] / 2**30:.2f} GiB, arena peak {rk['peak_mem_bytes'] / 2**30:.2f} GiB, "
          f"rss {rk['rss_peak_bytes'] / 2**30:.2f} GiB per rank")
PY
