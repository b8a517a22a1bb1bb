#!/usr/bin/env python3
"""bench/tp_blocked.py — where a tp 2 step (no sp) waits: the tensor group's collectives of one
step of a `mptrain train --tp 2 --trace FILE` run, by call site, from the trace's communication
events (each spans a collective's start to its completion as mpt_wait/mpt_test saw it).

Call sites, in the order the model issues them (model/gpt_pass.c, parallel/tp_overlap.c,
parallel/tp_vocab.c): forward: the embedding's all-reduce; per block the two row-parallel
GEMMs' chunked all-reduces (attn.c_proj, mlp.c_proj); the head's cross-entropy (all-gathers of
[max, sum, target] per row chunk, or the older build's max and sum all-reduces); backward: the
head's input-gradient chunks, per block mlp.c_fc's and attn.c_attn's; then the step's gradient
norm (one double). A blocking call's duration is its blocked time. For a chunked site the
blocked time is estimated as the completion of its last chunk minus the start of its last
chunk (the forward waits right after starting it). In the backward every chunk's weight-
gradient share runs after the last chunk's sum has started (parallel/tp_overlap.c since
2026-12-01), so there the figure is a loose upper bound that includes the whole weight
gradient; the exact blocked total of a run is its log's comm_wait_seconds.

Usage: python3 bench/tp_blocked.py TRACE.json N_LAYER [RANK]   (median over the steps after the
first two)"""
import json
import statistics
import sys


def main():
    path, L = sys.argv[1], int(sys.argv[2])
    rank = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    ev = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X" and e["pid"] == rank]
    phases = sorted((e for e in ev if e["tid"] == 0 and e["name"] in ("F0", "B0")), key=lambda e: e["ts"])
    comm = sorted((e for e in ev if e["tid"] == 1 and e["args"].get("group") == "tp"), key=lambda e: e["ts"])
    steps = [(phases[i], phases[i + 1]) for i in range(0, len(phases) - 1, 2)]
    rows = {}  # site -> [blocked ms summed over the step's blocks, per step]
    for i, (f, b) in enumerate(steps):
        if i < 2:
            continue
        t1 = steps[i + 1][0]["ts"] if i + 1 < len(steps) else float("inf")  # with the optimizer
        fw = [e for e in comm if f["ts"] <= e["ts"] < b["ts"]]
        bw = [e for e in comm if b["ts"] <= e["ts"] < t1]
        # forward: the embedding (1, or k chunks), 2L chunk groups of k, the loss's 1..4 events
        k, e = next(((kk, ee) for kk in (4, 3, 2, 1) for ee in (kk, 1)
                     if 0 < len(fw) - ee - 2 * L * kk <= 4), (None, None))
        kb = (len(bw) - 1) // (1 + 2 * L)
        if k is None or kb < 1:
            print("cannot split the step's", len(fw), "+", len(bw), "events", file=sys.stderr)
            return 1
        site = [(f"embedding all-reduce ({e} chunks)" if e > 1 else "embedding all-reduce (blocking)", fw[:e])]
        for l in range(L):
            site.append((f"attn.c_proj row-parallel ({k} chunks)", fw[e + 2 * l * k:e + (2 * l + 1) * k]))
            site.append((f"mlp.c_proj row-parallel ({k} chunks)", fw[e + (2 * l + 1) * k:e + (2 * l + 2) * k]))
        ce = fw[e + 2 * L * k:]
        site.append((f"cross-entropy ({len(ce)} x {ce[0]['name']})", ce))
        site.append((f"head input gradient ({kb} chunks)", bw[:kb]))
        for l in range(L):
            site.append((f"mlp.c_fc input gradient ({kb} chunks)", bw[kb + 2 * l * kb:kb + (2 * l + 1) * kb]))
            site.append((f"attn.c_attn input gradient ({kb} chunks)", bw[kb + (2 * l + 1) * kb:kb + (2 * l + 2) * kb]))
        site.append(("gradient norm (blocking)", bw[kb * (1 + 2 * L):]))
        step = {}
        for name, es in site:
            if len(es) == 1 or es[0]["name"] == "allreduce" and name.startswith("cross"):
                blocked = sum(e["dur"] for e in es)  # blocking calls, one after the other
            else:
                blocked = max(e["ts"] + e["dur"] for e in es) - es[-1]["ts"]
            step[name] = step.get(name, 0.0) + blocked / 1e3
        for name, v in step.items():
            rows.setdefault(name, []).append(v)
    print(f"rank {rank}, {len(steps) - 2} steps; blocked ms per step (median, min..max), summed over the blocks")
    total = 0.0
    for name, v in rows.items():
        total += statistics.median(v)
        print(f"  {name:44s} {statistics.median(v):8.2f}  ({min(v):.2f}..{max(v):.2f})")
    print(f"  {'sum of the medians':44s} {total:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
