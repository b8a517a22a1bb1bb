#!/usr/bin/env bash
# bench/run.sh — mptrain against the PyTorch reference on the same training work, in one run.
#
#   bash bench/run.sh [BUILD_DIR]        (what `make bench` calls; builds nothing)
#
# Work: the `small` preset (6 layers, d_model 384, 6 heads, seq 256, byte vocab 256), batch 8,
# fp32, every contender on BENCH_THREADS cores. Contenders run one after the other in rotating
# order, round after round, each for BENCH_STEPS optimizer steps of which the first BENCH_WARMUP
# are dropped; figures are medians over all kept steps. Prints a table, the ratio (median
# tokens/s of mptrain / median tokens/s of torch) and mptrain's MFU, and writes everything to
# bench/results/foundation.json (BENCH_OUT). See bench/README.md for what is measured and why.
#
# Contenders:
#   mptrain  build/mptrain train --model small --batch 8 --threads 2
#   torch    bench/torch_gpt.py on Debian's torch, linked to the same OpenBLAS as mptrain (the
#            OpenMP build, picked with LD_LIBRARY_PATH): the headline comparison
#   torch-debian-default  the same script with the system's BLAS choice (OpenBLAS pthreads,
#            whose threads fight torch's spinning OpenMP threads on 2 cores: about 2x slower);
#            shown for reference, BENCH_TORCH_DEFAULT=0 skips it
#
# MFU = median tokens/s x model FLOPs per token / the best FMA peak measured during the run
# (mptrain measures it at the start of each training run, and BENCH_PEAK_PROBES more times per
# round with `--steps 0`; interference can only lower a peak measurement, so the best is kept).
#
# Knobs (environment): BENCH_ROUNDS (3) BENCH_STEPS (6) BENCH_WARMUP (2) BENCH_THREADS (2)
#   BENCH_OUT (bench/results/foundation.json) BENCH_PEAK_PROBES (2) BENCH_TORCH_DEFAULT (1)
#   OPENBLAS_CORETYPE: Haswell unless set (as CI; the JSON records the core OpenBLAS picked).
#   BENCH_PROBE_ENV=1: one extra mptrain/torch pair with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
#   unset; BENCH_PROBE_CORETYPE=X: one with OPENBLAS_CORETYPE=X. Probes are reported apart and
#   never enter the headline figures.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN="$BUILD/mptrain"
PY=/usr/bin/python3 # Debian's interpreter, which has python3-torch

[ -x "$BIN" ] || { echo "bench: $BIN not found: build first (make build, or make bench)" >&2; exit 2; }
"$PY" -c 'import torch' 2>/dev/null ||
  { echo "bench: $PY cannot import torch: apt-get install python3-torch (make setup)" >&2; exit 2; }

export BENCH_BIN="$BIN" BENCH_PY="$PY"
exec "$PY" - <<'PYEOF'
import json, os, platform, resource, statistics, subprocess, sys, tempfile, time

BIN, PY = os.environ["BENCH_BIN"], os.environ["BENCH_PY"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
STEPS = int(os.environ.get("BENCH_STEPS", 6))
WARMUP = int(os.environ.get("BENCH_WARMUP", 2))
THREADS = int(os.environ.get("BENCH_THREADS", 2))
OUT = os.environ.get("BENCH_OUT", "bench/results/foundation.json")
PEAK_PROBES = int(os.environ.get("BENCH_PEAK_PROBES", 2))
TORCH_DEFAULT = os.environ.get("BENCH_TORCH_DEFAULT", "1") == "1"
PROBE_ENV = os.environ.get("BENCH_PROBE_ENV", "0") == "1"
PROBE_CORETYPE = os.environ.get("BENCH_PROBE_CORETYPE", "")
OPENBLAS_OMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"  # the library mptrain links
# OpenBLAS reads OPENBLAS_CORETYPE once, when it loads: pinned here for every contender, as CI
# pins it, unless the caller set it (on this AMD EPYC, 0.3.21 picks "Zen" when unset; Haswell
# and Zen measured the same, bench/speed_log.md, but the runs should not depend on detection)
os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")


def openblas_core():
    """The kernel set the OpenBLAS that mptrain links picks under this environment."""
    try:
        r = subprocess.run([PY, "-c", "import ctypes; l = ctypes.CDLL('%s/libopenblas.so.0'); "
                            "l.openblas_get_corename.restype = ctypes.c_char_p; "
                            "print(l.openblas_get_corename().decode())" % OPENBLAS_OMP],
                           capture_output=True, text=True, timeout=60)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
if STEPS <= WARMUP:
    sys.exit("bench: BENCH_STEPS must exceed BENCH_WARMUP")

# the work, fixed by the issue: the `small` preset
L, D, H, T, V, B = 6, 384, 6, 256, 256, 8
FFN = 4 * D


def flops_per_token():
    """6 * (matmul weights incl. the tied head) + 12 * L * T * D, as src/train/trainer.c."""
    matmul = L * (D * 3 * D + D * D + 2 * D * FFN) + V * D
    return 6.0 * matmul + 12.0 * L * T * D


def cpu_busy_seconds():
    """CPU-seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, env=None):
    """Runs cmd; returns the cores other processes kept busy meanwhile (average)."""
    b0, c0, w0 = cpu_busy_seconds(), children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    w1, c1, b1 = time.perf_counter(), children_cpu(), cpu_busy_seconds()
    if p.returncode != 0:
        sys.exit("bench: %s failed (exit %d):\n%s" % (" ".join(cmd[:3]), p.returncode,
                                                        p.stderr.strip()))
    return max(0.0, (b1 - b0) - (c1 - c0)) / (w1 - w0) if w1 > w0 else 0.0


def read_log(path):
    start, steps = None, []
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if j.get("event") == "start":
                start = j
            elif "step" in j:
                steps.append(j)
    return start, steps[WARMUP:]


def run_mptrain(log, env=None):
    other = run([BIN, "train", "--model", "small", "--batch", str(B), "--steps", str(STEPS),
                 "--log", log, "--threads", str(THREADS), "--quiet"], env)
    start, steps = read_log(log)
    return {"peak_flops": start["peak_flops"], "steps": steps, "other": other}


def run_torch(log, env=None):
    other = run([PY, "bench/torch_gpt.py", "--layers", str(L), "--d-model", str(D), "--heads",
                 str(H), "--seq-len", str(T), "--vocab", str(V), "--batch", str(B), "--steps",
                 str(STEPS), "--threads", str(THREADS), "--log", log], env)
    start, steps = read_log(log)
    return {"version": start["torch"], "steps": steps, "other": other}


def probe_peak(log):
    """mptrain's FMA-peak measurement alone (`--steps 0` writes just the start line)."""
    run([BIN, "train", "--model", "small", "--batch", str(B), "--steps", "0", "--log", log,
         "--threads", str(THREADS), "--quiet"])
    with open(log) as f:
        return json.loads(f.readline())["peak_flops"]


def with_env(drop=(), **extra):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def prepend_path(var, d):
    old = os.environ.get(var)
    return d + (":" + old if old else "")


def median_tps(r):
    return statistics.median(s["tokens_per_s"] for s in r["steps"])


def summary(runs):
    tps = [s["tokens_per_s"] for r in runs for s in r["steps"]]
    ms = [s["step_ms"] for r in runs for s in r["steps"]]
    return {"median_tokens_per_s": statistics.median(tps), "median_step_ms": statistics.median(ms),
            "min_tokens_per_s": min(tps), "max_tokens_per_s": max(tps), "steps_measured": len(tps),
            "tokens_per_s_per_round": [median_tps(r) for r in runs],
            "other_load_cores_per_round": [r["other"] for r in runs]}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# contenders: name -> (runner, environment)
torch_env = with_env()
torch_blas = "system default"
if os.path.exists(os.path.join(OPENBLAS_OMP, "libblas.so.3")):
    torch_env = with_env(LD_LIBRARY_PATH=prepend_path("LD_LIBRARY_PATH", OPENBLAS_OMP))
    torch_blas = "OpenBLAS OpenMP build (" + OPENBLAS_OMP + "), as mptrain"
contenders = [("mptrain", run_mptrain, None), ("torch", run_torch, torch_env)]
if TORCH_DEFAULT and torch_blas != "system default":
    contenders.append(("torch-debian-default", run_torch, None))

with open("/proc/loadavg") as f:
    load_before = float(f.read().split()[0])
print("bench: mptrain vs PyTorch, GPT-2 L%d D%d H%d T%d V%d, batch %d, %d threads; "
      "%d rounds x %d steps (first %d dropped), load average %.2f"
      % (L, D, H, T, V, B, THREADS, ROUNDS, STEPS, WARMUP, load_before), flush=True)

runs = {name: [] for name, _, _ in contenders}
peaks, probe = [], []
with tempfile.TemporaryDirectory(prefix="mpt-bench-") as tmp:
    for r in range(ROUNDS):
        peaks += [probe_peak(os.path.join(tmp, "peak-%d-%d.jsonl" % (r, i)))
                  for i in range(PEAK_PROBES)]
        k = r % len(contenders)
        for name, fn, env in contenders[k:] + contenders[:k]:  # rotate the order every round
            res = fn(os.path.join(tmp, "%s-%d.jsonl" % (name, r)), env)
            runs[name].append(res)
            print("  round %d %-21s %8.1f tokens/s  (other processes: %.2f cores)"
                  % (r + 1, name, median_tps(res), res["other"]), flush=True)
    # optional extra pairs under another OpenBLAS set-up; reported apart, never in the headline
    probes = []
    if PROBE_ENV:
        probes.append(("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset",
                       ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"), {}))
    if PROBE_CORETYPE:
        probes.append(("OPENBLAS_CORETYPE=" + PROBE_CORETYPE, (),
                       {"OPENBLAS_CORETYPE": PROBE_CORETYPE}))
    for i, (what, drop, extra) in enumerate(probes):
        pm = run_mptrain(os.path.join(tmp, "probe-mptrain-%d.jsonl" % i), with_env(drop, **extra))
        tenv = {k: v for k, v in torch_env.items() if k not in drop}
        tenv.update(extra)
        pt = run_torch(os.path.join(tmp, "probe-torch-%d.jsonl" % i), tenv)
        probe.append({"env": what, "mptrain_tokens_per_s": median_tps(pm),
                      "torch_tokens_per_s": median_tps(pt), "mptrain_peak_flops": pm["peak_flops"]})

fpt = flops_per_token()
peak_samples = [x["peak_flops"] for x in runs["mptrain"]] + peaks
peak = max(peak_samples)
sums = {name: summary(rs) for name, rs in runs.items()}
for name, s in sums.items():
    s["mfu"] = s["median_tokens_per_s"] * fpt / peak
ms = sums["mptrain"]
ms["median_mfu_logged"] = statistics.median(s["mfu"] for x in runs["mptrain"] for s in x["steps"])
ms["peak_flops"] = peak
ms["peak_flops_samples"] = peak_samples
version = runs["torch"][0]["version"]
sums["torch"].update(version=version, blas=torch_blas)
if "torch-debian-default" in sums:
    sums["torch-debian-default"].update(version=version, blas="system default")
ratio = ms["median_tokens_per_s"] / sums["torch"]["median_tokens_per_s"]
round_ratios = [median_tps(a) / median_tps(b) for a, b in zip(runs["mptrain"], runs["torch"])]
other = max(max(s["other_load_cores_per_round"]) for s in sums.values())

print()
print("  %-21s %10s %9s %6s %6s" % ("", "tokens/s", "step ms", "MFU", "steps"))
for name, s in sums.items():
    print("  %-21s %10.1f %9.1f %5.1f%% %6d" % (name, s["median_tokens_per_s"],
                                               s["median_step_ms"], 100 * s["mfu"],
                                               s["steps_measured"]))
print()
print("ratio mptrain / torch %s: %.2fx (per round %s; target >= 1.5)"
      % (version, ratio, ", ".join("%.2f" % x for x in round_ratios)))
if "torch-debian-default" in sums:
    print("  (against torch with Debian's default BLAS set-up: %.2fx)"
          % (ms["median_tokens_per_s"] / sums["torch-debian-default"]["median_tokens_per_s"]))
print("mptrain MFU: %.1f%% of the measured FMA peak %.1f GFLOP/s on %d threads "
      "(%.1f MFLOP per token; target >= 65%%)" % (100 * ms["mfu"], peak / 1e9, THREADS, fpt / 1e6))
lo = min(peak_samples)
if lo < 0.8 * peak:
    print("bench: warning: the FMA peak measured between %.0f and %.0f GFLOP/s: the cores were "
          "shared for part of the run (other processes or the hypervisor)" % (lo / 1e9, peak / 1e9))
if other > 0.25:
    print("bench: warning: other processes kept up to %.2f cores busy during a run; "
          "the figures are noisy, re-run on a quiet machine" % other)
for p in probe:
    print("probe with %s: mptrain %.1f tokens/s, torch %.1f tokens/s (ratio %.2f; not in the "
          "headline)" % (p["env"], p["mptrain_tokens_per_s"], p["torch_tokens_per_s"],
                         p["mptrain_tokens_per_s"] / p["torch_tokens_per_s"]))

result = {
    "benchmark": "foundation",
    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                "load_average_before": load_before, "other_load_cores_max": other,
                "peak_flops_min_max": [lo, peak],
                "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
                "openblas_core": openblas_core()},
    "work": {"n_layer": L, "d_model": D, "n_head": H, "seq_len": T, "vocab": V, "ffn": FFN,
             "batch": B, "threads": THREADS, "dtype": "fp32",
             "tokens_per_step": B * T, "flops_per_token": fpt},
    "method": {"rounds": ROUNDS, "steps_per_run": STEPS, "warmup_steps_dropped": WARMUP,
               "order": "rotating each round", "statistic": "median of kept steps",
               "mfu": "median tokens/s * flops_per_token / best measured FMA peak"},
    "ratio": ratio,
    "ratio_per_round": round_ratios,
    "mfu": ms["mfu"],
    "targets": {"ratio": 1.5, "mfu": 0.65},
}
result.update(sums)
if probe:
    result["probes"] = probe
os.makedirs(os.path.dirname(OUT) or ".", exist_ok=True)
with open(OUT, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print("bench: figures written to %s" % OUT)
PYEOF
