#!/usr/bin/env bash
# plan_vs_measured.sh — `mptrain plan` / `mptrain simulate --cluster cpu-here` beside what
# `mptrain train` measures on this machine, one line per layout: the plan's largest rank, the
# arena's measured peak, the resident high-water mark (rss_peak_bytes, when the trainer logs
# it), the simulated and the measured step time (median of the steps after the first).
# The layouts are tests/plan_layouts.txt (issue 13, items 2 and 5: every dimension, ZeRO
# stage, schedule and recompute mode). Prints a table and the median / largest |error| of the
# step time; gates nothing. Timings are noisy when other work shares the cores: the header
# prints the load average, each row the run's cpu share and the load.
# Calibration (the design of plan/calib.c): the VM's figures drift (the hypervisor may place the
# two vCPUs on one physical core's hyperthreads or on two cores; other jobs come and go), and
# the measured steps drift with them, so cpu-here is recalibrated right before each layout
# (RECAL=each, the default; RECAL=once calibrates once): `simulate --cluster cpu-here` (the
# kernels solo / busy / team, about 4 s idle) plus bench/mpi_pingpong.c (real MPI messages
# between two ranks as the rings and the tensor-parallel collectives send them: intra_lat,
# intra_bw, mpi_*_bw, mpi_alltoall_bw for the MoE all-to-alls; about 1 s; the MoE figures
# moe_*, par_moe come with the kernels: plan/calib_moe.c), written into one
# cluster JSON the layout is simulated with. The figures of every calibration are kept, and
# their spread (min / median / max) is printed at the end. Nothing is fitted to a layout.
# Self-contained (the ping-pong is build/bench/bench_mpi_pingpong, or compiled here with
# mpicc). 31 layouts: about 7 minutes on an idle
# 2-core machine (4 steps of about a second plus start-up and 5 s of calibration each); the
# script prints how long it took.
# Usage: bash bench/plan_vs_measured.sh [BUILD_DIR]   (from the repo root)
#        RECAL=once|each MODEL=small BATCH=8 STEPS=4 LAYOUTS_FILE=tests/plan_layouts.txt
set -u
BUILD=${1:-build}
BIN="$BUILD/mptrain"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl self,vader)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
MODEL=${MODEL:-small}
BATCH=${BATCH:-8}
STEPS=${STEPS:-4}
LAYOUTS_FILE=${LAYOUTS_FILE:-tests/plan_layouts.txt}
mapfile -t LAYOUTS < <(grep -v '^#' "$LAYOUTS_FILE" | grep -v '^$')
RECAL=${RECAL:-each}
T_START=$(date +%s)
# the ping-pong: built with the project (build/bench/bench_mpi_pingpong), else compiled here
PINGPONG="$BUILD/bench/bench_mpi_pingpong"
if [ ! -x "$PINGPONG" ]; then
  PINGPONG="$TMP/mpi_pingpong"
  mpicc -O2 -o "$PINGPONG" bench/mpi_pingpong.c || { echo "mpicc failed: no ping-pong"; PINGPONG=; }
fi
# calibrate_: cpu-here's kernels, then the ping-pong's message costs, into $TMP/here.json; each
# calibration's figures appended to $TMP/calibs (one JSON object a line)
calibrate_() {
  "$BIN" simulate --model tiny --cluster cpu-here --json >"$TMP/calib.json" || return 1
  if [ -n "$PINGPONG" ]; then
    "${MPIRUN[@]}" -np 2 "$PINGPONG" >"$TMP/pp.json" 2>/dev/null </dev/null || echo '{}' >"$TMP/pp.json"
  else echo '{}' >"$TMP/pp.json"; fi
  /usr/bin/python3 - "$TMP" <<'EOF'
import json, sys
tmp = sys.argv[1]
c = json.load(open(tmp + "/calib.json"))["cluster_params"]
try: c.update(json.load(open(tmp + "/pp.json")))   # measured messages replace mem_bw / 4
except ValueError: pass
json.dump(c, open(tmp + "/here.json", "w"))
open(tmp + "/calibs", "a").write(json.dumps(c) + "\n")
EOF
}
if [ -n "${CLUSTER:-}" ]; then RECAL=given; else calibrate_; CLUSTER=$TMP/here.json; fi
echo "model $MODEL, batch $BATCH, $STEPS steps; $(nproc) cores; calibration $RECAL; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-44s %12s %12s %7s %12s %9s %9s %7s %5s %5s %9s %7s\n" layout plan peak diff rss \
  sim_ms meas_ms diff cpu load meas*cpu diff
for entry in "${LAYOUTS[@]}"; do
  np=${entry%%|*}; opts=${entry#*|}
  [ "$RECAL" = each ] && calibrate_
  # shellcheck disable=SC2086
  "$BIN" plan --model "$MODEL" --batch "$BATCH" $opts --json >"$TMP/plan.json" || continue
  # shellcheck disable=SC2086
  "$BIN" simulate --model "$MODEL" --batch "$BATCH" $opts --cluster "$CLUSTER" --json \
    >"$TMP/sim.json" || continue
  # shellcheck disable=SC2086
  if [ "$np" = 1 ]; then
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" \
      "$BIN" train --model "$MODEL" --batch "$BATCH" --steps "$STEPS" --quiet --log "$TMP/run.jsonl" $opts >/dev/null </dev/null
  else
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" \
      "${MPIRUN[@]}" -np "$np" "$BIN" train --model "$MODEL" --batch "$BATCH" --steps "$STEPS" \
      --quiet --log "$TMP/run.jsonl" $opts >/dev/null </dev/null
  fi || { echo "$opts: train failed"; continue; }
  /usr/bin/python3 - "$TMP" "${opts:-(one rank)}" "$np" "$(nproc)" <<'EOF'
import json, os, statistics, sys
tmp, name, np_, cores = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# cpu: the share of the cores the steps asked for that they got (the step lines' cpu_share:
# CPU seconds of all ranks over step time x the cores they could use; the whole run's from
# GNU time when not logged): 1.0 on a quiet machine; load: the last minute's load average.
# meas*cpu is the step time the run would have had on cores of its own if it kept them busy:
# a pipeline's ranks that nap in the bubble use no CPU, so for pp > 1 it is too low.
wall, user, sys_ = (float(x) for x in open(tmp + "/time").read().split()[-3:])
share = (user + sys_) / (wall * min(np_ * max(cores // np_, 1), cores)) if wall > 0 else 0
load = float(open("/proc/loadavg").read().split()[0])
plan = json.load(open(tmp + "/plan.json"))["memory_bytes_per_rank"]["total"]
sim = json.load(open(tmp + "/sim.json"))["step_time_s"] * 1e3
lines = [json.loads(l) for l in open(tmp + "/run.jsonl")]
steps = [l["step_ms"] for l in lines if "step_ms" in l][1:]
shares = [l["cpu_share"] for l in lines if "cpu_share" in l][1:]
# the steps' own CPU share (the trainer's cpu_share) when logged, else the whole run's
if shares: share = statistics.median(shares)
end = lines[-1]
peak = end.get("peak_mem_bytes", 0)
rss = max((r.get("rss_peak_bytes", 0) for r in end.get("ranks", [])), default=0)
meas = statistics.median(steps) if steps else float("nan")
# cpu-here is calibrated in CPU seconds (the machine's rates while the code runs); the
# measured step times the share of its cores the run got is the same figure for the run
norm = meas * share
print("%-44s %12d %12d %+6.2f%% %12s %9.1f %9.1f %+6.1f%% %5.2f %5.1f %9.1f %+6.1f%%" % (
      name, plan, peak, 100.0 * (peak / plan - 1), rss or "-", sim, meas,
      100.0 * (sim / meas - 1), share, load, norm, 100.0 * (sim / norm - 1)))
with open(tmp + "/errors", "a") as f:
    f.write("%f %f\n" % (sim / meas - 1, sim / norm - 1))
EOF
done
/usr/bin/python3 - "$TMP/errors" <<'EOF'
import os, statistics, sys
rows = [[abs(float(v)) for v in x.split()] for x in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
for i, what in enumerate(("measured", "measured x cpu share")):
    e = [r[i] for r in rows]
    if e:
        print("step time vs %s: median |error| %.1f%%, largest %.1f%%, %d of %d within 20%%" % (
            what, 100 * statistics.median(e), 100 * max(e), sum(x <= 0.2 for x in e), len(e)))
EOF
/usr/bin/python3 - "$TMP/calibs" <<'EOF'
import json, os, statistics, sys
cs = [json.loads(l) for l in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
if cs:
    print("%d calibrations, min / median / max:" % len(cs))
    for k in ("peak_fp32", "gemm_eff_1024", "gemm_eff_128", "attn_f", "attn_b", "ew_gelu_f",
              "busy_gemm", "busy_attn", "busy_ew", "par_eff", "par_attn", "par_ew",
              "intra_lat", "intra_bw", "mpi_allreduce_bw", "mpi_reduce_scatter_bw",
              "mpi_allgather_bw",
              "moe_rate_f", "moe_rate_b", "moe_rate_w", "moe_row_f", "moe_row_b", "par_moe",
              "mpi_alltoall_bw"):
        v = [c[k] for c in cs if k in c]
        if v:
            m = statistics.median(v)
            print("  %-14s %10.4g %10.4g %10.4g  (spread %.1f%% of the median)" % (
                k, min(v), m, max(v), 100 * (max(v) - min(v)) / m if m else 0))
EOF
echo "took $(( $(date +%s) - T_START )) s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
