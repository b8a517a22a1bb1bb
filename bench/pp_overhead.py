#!/usr/bin/env python3
"""bench/pp_overhead.py — where a flushed pipeline schedule's executor overhead goes, from a
--trace of `mptrain train` (Chrome trace JSON) and the schedule's own action lists.

For every step after the warm-up (steps end at the trace's "optimizer" events) it replays the
lists (`mptrain schedule --actions`) two ways, as the log's bubble_sim does
(mpt_pp_simulate_replay: a compute starts when its rank is free and its input has arrived, each
receive posted at its consumer, so a transfer costs its receiver COMM seconds from
max(send posted, receiver free); --as-listed posts receives where the lists put them, as
mpt_pp_simulate does):
  mean    every action at its stage's mean F / B / W duration of the step (the log's
          bubble_sim_mean: mpt_pp_measure)
  exact   every action at its own measured duration (the log's bubble_sim, which also takes
          each transfer's own measured time where this script uses one --comm for all)
and compares them with the measured span (first compute start to last compute end over the
ranks). bubble = 1 - busy / (p x span) each time, busy being the same in all three. So
  measured - mean  = the log's overhead (meas - sim)
  measured - exact = time between actions the schedule does not explain: the executor's own
                     gaps (posting, waiting, send-buffer copies outside compute, late messages)
  exact - mean     = the spread of compute durations around their mean (no executor can help it)
and lists per rank every idle gap inside the step by what ended in it (a receive's completion,
a collective, nothing). Flushed schedules only (1f1b, interleaved, zb-h1, zb-v); 2bw's windows
span steps.
--log LOG.jsonl (the same run's log) adds the log's own medians: measured - bubble_sim (the
replay on every action's own duration and every transfer's own measured time: the executor's
overhead) and measured - bubble_sim_mean (the per-stage-mean replay).
Usage: bench/pp_overhead.py TRACE.json MPTRAIN PP M SCHEDULE [V] [--comm SECONDS] [--warmup N]
       [--as-listed] [--summary] [--log LOG.jsonl]
"""
import collections, json, re, statistics, subprocess, sys

args = [a for a in sys.argv[1:]]
comm, warm, logf = 1e-4, 2, None
if "--log" in args:
    i = args.index("--log"); logf = args[i + 1]; del args[i:i + 2]
if "--comm" in args:
    i = args.index("--comm"); comm = float(args[i + 1]); del args[i:i + 2]
as_listed = "--as-listed" in args
summary = "--summary" in args
args = [a for a in args if a not in ("--as-listed", "--summary")]
if "--warmup" in args:
    i = args.index("--warmup"); warm = int(args[i + 1]); del args[i:i + 2]
trace, binary, P, M, kind = args[0], args[1], int(args[2]), int(args[3]), args[4]
V = int(args[5]) if len(args) > 5 else (2 if kind == "zb-v" else 1)
cmd = [binary, "schedule", "--pp", str(P), "--microbatches", str(M), "--schedule", kind, "--actions"]
if kind == "interleaved": cmd += ["--virtual-stages", str(V)]
out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
lists = {}
for line in out.splitlines():
    m = re.match(r"rank (\d+): (.*)", line)
    if m and "[" not in line: lists[int(m.group(1))] = m.group(2).split()
tok = re.compile(r"(F|B|W|recv-act|send-act|recv-grad|send-grad)(\d+)(?:\.(\d+))?(?:[<>](\d+))?$")
if not as_listed:  # each receive just before its consumer (F: activations, B: gradient)
    for r, lst in lists.items():
        out, held = [], []
        for a in lst:
            op, mb, ch, _ = tok.match(a).groups()
            if op.startswith("recv"): held.append((op, mb, ch or "0", a)); continue
            if op in ("F", "B"):
                want = "recv-act" if op == "F" else "recv-grad"
                for h in held:
                    if h[0] == want and h[1] == mb and h[2] == (ch or "0"):
                        out.append(h[3]); held.remove(h); break
            out.append(a)
        lists[r] = out + [h[3] for h in held]

def stage(r, c):
    return (r if c == 0 else 2 * P - 1 - r) if kind == "zb-v" else c * P + r

def replay(dur):
    """dur[(rank, name)] -> seconds. Returns (span, busy)."""
    pc = {r: 0 for r in lists}; clock = {r: 0.0 for r in lists}
    sent, posted, start0, end = {}, {}, None, 0.0
    busy = 0.0
    while any(pc[r] < len(lists[r]) for r in lists):
        moved = False
        for r in lists:
            while pc[r] < len(lists[r]):
                a = lists[r][pc[r]]; op, mb, ch, peer = tok.match(a).groups()
                mb, ch = int(mb), int(ch or 0); st = stage(r, ch)
                if op in ("F", "B", "W"):
                    t = clock[r]
                    need = (op == "F" and st > 0) or (op == "B" and st < P * V - 1)
                    if need:
                        key = (mb, st, op == "B")
                        if key not in sent: break
                        t = max(t, max(sent[key], posted[key]) + comm)
                    d = dur[(r, a)]
                    clock[r] = t + d; busy += d; end = max(end, t + d)
                    start0 = t if start0 is None else min(start0, t)
                else:
                    grad = "grad" in op
                    if op.startswith("recv"): posted[(mb, st, grad)] = clock[r]
                    else: sent[(mb, st + (-1 if grad else 1), grad)] = clock[r]
                pc[r] += 1; moved = True
        if not moved: raise SystemExit("replay deadlocked (lists and trace disagree?)")
    return end - start0, busy

ev = json.load(open(trace))
if isinstance(ev, dict): ev = ev.get("traceEvents", [])
by = collections.defaultdict(list)
for e in ev:
    if e.get("ph") == "X": by[e["pid"]].append(e)
steps = collections.defaultdict(dict)       # step -> rank -> [compute events]
comms = {}
for r in range(P):
    es = sorted(by[r], key=lambda e: e["ts"])
    k, cur = 0, []
    for e in es:
        if e["tid"] != 0: continue
        if e["name"] == "optimizer":
            steps[k][r] = cur; k += 1; cur = []
        else: cur.append(e)
    comms[r] = sorted([e for e in es if e["tid"] != 0], key=lambda e: e["ts"] + e["dur"])
rows, gaps = [], collections.defaultdict(float)
nsteps = 0
for k in sorted(steps):
    if k < warm or len(steps[k]) < P: continue
    nsteps += 1
    dur, means = {}, {}
    t0 = min(e["ts"] for r in steps[k] for e in steps[k][r]) * 1e-6
    t1 = max((e["ts"] + e["dur"]) for r in steps[k] for e in steps[k][r]) * 1e-6
    for r, es in steps[k].items():
        for e in es: dur[(r, e["name"])] = e["dur"] * 1e-6
        for op in "FBW":
            xs = [e["dur"] * 1e-6 for e in es if e["name"][0] == op]
            if xs: means[(r, op)] = statistics.mean(xs)
        for a, b in zip(es, es[1:]):  # idle inside the step, by what ended in it
            g0, g1 = (a["ts"] + a["dur"]), b["ts"]
            if g1 - g0 <= 0: continue
            ended = sorted(set(c["name"] for c in comms[r] if g0 <= c["ts"] + c["dur"] <= g1 + 1))
            gaps[(r, a["name"][0] + "->" + b["name"][0], "+".join(ended) or "nothing")] += (g1 - g0) * 1e-6
    mdur = {(r, a): means[(r, a[0])] for (r, a) in dur}
    span_x, busy = replay(dur)
    span_m, _ = replay(mdur)
    span = t1 - t0
    b = lambda s: 1 - busy / (P * s)
    rows.append((k + 1, span, b(span), b(span_x), b(span_m)))
if logf:  # the log's own replays, medians over the same steps
    ls = [json.loads(l) for l in open(logf)]
    ls = [x for x in ls if "bubble_sim" in x and "bubble_sim_mean" in x][warm:]
    if ls:
        mm = lambda k: statistics.median(x["bubble"] - x[k] for x in ls)
        print(f"{kind}: log, median over {len(ls)} steps: measured - bubble_sim "
              f"{mm('bubble_sim'):+.4f} (per action), measured - bubble_sim_mean "
              f"{mm('bubble_sim_mean'):+.4f} (per stage mean)")
if summary:
    med = lambda i: statistics.median(r[i] for r in rows)
    print(f"{kind}: median over {len(rows)} steps: measured - mean replay {med(2) - med(4):+.4f} = "
          f"executor gaps (measured - exact) {med(2) - med(3):+.4f} + duration spread "
          f"(exact - mean) {med(3) - med(4):+.4f}")
    sys.exit(0)
print(f"{kind} pp {P} m {M}: bubble measured / exact replay / mean replay (= the log's bubble_sim"
      f" up to its comm estimate), comm {comm * 1e3:.2f} ms")
print("step  span_ms  measured    exact     mean   meas-mean  meas-exact  exact-mean")
for s, span, bm, bx, bmn in rows:
    print(f"{s:4d} {span * 1e3:8.1f} {bm:9.4f} {bx:9.4f} {bmn:8.4f} {bm - bmn:+10.4f} {bm - bx:+11.4f} {bx - bmn:+11.4f}")
if rows:
    med = lambda i: statistics.median(r[i] for r in rows)
    print(f"median        {med(2):9.4f} {med(3):9.4f} {med(4):8.4f} {med(2) - med(4):+10.4f} "
          f"{med(2) - med(3):+11.4f} {med(3) - med(4):+11.4f}")
print("idle inside the steps, per rank (ms per step): between which computes, what ended in the gap")
for (r, kindg, what), t in sorted(gaps.items(), key=lambda x: (x[0][0], -x[1])):
    print(f"  rank {r}  {kindg:5s} {what[:40]:40s} {t * 1e3 / max(1, nsteps):8.2f}")
