#!/usr/bin/python3
"""Compares two mptrain runs: the per-step losses of their JSONL logs and the weights of their
final checkpoints (model.safetensors).

usage: compare_runs.py LOG_A CKPT_A LOG_B CKPT_B [--rtol 1e-5] [--weights-rtol R]
       compare_runs.py --tensors FILE_A FILE_B [--rtol 1e-5]
The second form compares every tensor of two safetensors files (e.g. step-1 gradient dumps),
each by max|a-b| / max|b|: one step's gradients involve no Adam normalisation, so each tensor
is held to the tolerance on its own.
Checked against rtol: every step's loss, |a-b| / |b|, and the final weights as one vector,
||a-b|| / ||b|| (L2), or against --weights-rtol when given (bf16 runs: see tests/t_bf16.sh).
Printed too: the worst single tensor, max|a-b| / max|b|.

Why the weights are compared as a vector: AdamW divides each gradient element by its own
running magnitude, so an element whose gradient is near zero (rounding noise after cancellation)
takes a step of about lr whose sign depends on the order of floating-point additions. Any change
of summation order does this -- one rank with 2 micro-batches instead of 1, or 2 threads
instead of 1, moves one element of a 4096-element matrix by ~5e-6 after 5 steps at lr 3e-3
while the global relative difference stays ~5e-7. The per-element maximum therefore measures
the conditioning of Adam, not the correctness of a layout; the vector norm and the losses do."""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(info["shape"])
    return out


def losses(path):
    steps = [json.loads(line) for line in open(path) if '"step"' in line and '"event"' not in line]
    return {s["step"]: s["loss"] for s in steps}


def compare_tensors(path_a, path_b, rtol):
    ta, tb = read_safetensors(path_a), read_safetensors(path_b)
    names = sorted(ta)  # every tensor of A must be in B (B may hold more, e.g. logits)
    if not names or not set(ta) <= set(tb):
        print(f"tensors missing from {path_b}: {sorted(set(ta) - set(tb))[:5]}")
        return 1
    worst, worst_name = 0.0, ""
    for name in names:
        a, b = ta[name].astype(np.float64), tb[name].astype(np.float64)
        d = float(np.max(np.abs(a - b))) / (float(np.max(np.abs(b))) or 1.0)
        if d > worst:
            worst, worst_name = d, name
    print(f"  {len(names)} tensors: max rel diff {worst:.2e} ({worst_name})")
    return 0 if worst <= rtol else 1


def main():
    args = sys.argv[1:]
    rtol = 1e-5
    if "--rtol" in args:
        i = args.index("--rtol")
        rtol = float(args[i + 1])
        del args[i:i + 2]
    wtol = rtol
    if "--weights-rtol" in args:
        i = args.index("--weights-rtol")
        wtol = float(args[i + 1])
        del args[i:i + 2]
    if args and args[0] == "--tensors":
        return compare_tensors(args[1], args[2], rtol)
    log_a, ck_a, log_b, ck_b = args
    la, lb = losses(log_a), losses(log_b)
    ok = True
    if sorted(la) != sorted(lb) or not la:
        print(f"steps differ: {sorted(la)} vs {sorted(lb)}")
        return 1
    worst_loss = max(abs(la[s] - lb[s]) / abs(lb[s]) for s in la)
    print(f"  losses of {len(la)} steps: max rel diff {worst_loss:.2e}")
    ok &= worst_loss <= rtol
    ta, tb = read_safetensors(ck_a), read_safetensors(ck_b)
    if sorted(ta) != sorted(tb) or not ta:
        print(f"tensor names differ or are missing: {sorted(ta)[:4]} vs {sorted(tb)[:4]}")
        return 1
    worst, worst_name, diff2, norm2 = 0.0, "", 0.0, 0.0
    for name in ta:
        a, b = ta[name].astype(np.float64), tb[name].astype(np.float64)
        scale = float(np.max(np.abs(b))) or 1.0
        d = float(np.max(np.abs(a - b))) / scale
        if d > worst:
            worst, worst_name = d, name
        diff2 += float(((a - b) ** 2).sum())
        norm2 += float((b ** 2).sum())
    rel = (diff2 / norm2) ** 0.5 if norm2 else diff2 ** 0.5
    print(f"  final weights: rel L2 diff {rel:.2e} (worst tensor {worst_name}: {worst:.2e})")
    ok &= rel <= wtol
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
