#!/usr/bin/python3
"""torch_ddp.py — PyTorch DistributedDataParallel over gloo on the benchmark model, the
reference for mptrain's data parallelism in bench/parallel.sh.

Debian's torchrun is broken on Python 3.11, so bench/parallel.sh starts one process per rank by
hand with MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE set. Each rank trains bench/torch_gpt.py's
GPT on its share of a random global batch (DDP averages gradients; mptrain sums gradients of a
loss already divided by the global token count: the same update), with clip_grad_norm_ and
AdamW. Rank 0 prints JSON Lines like mptrain's --log: one line per step with tokens_per_s of the
global batch.

Run with Debian's interpreter: /usr/bin/python3 bench/torch_ddp.py --steps 6 --threads 1
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GPT, add_model_args  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(ap)
    ap.add_argument("--batch", type=int, default=8, help="global batch")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    model = GPT(a.layers, a.d_model, a.heads, a.seq_len, a.vocab, 4 * a.d_model)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for p in ddp.parameters() if p.dim() >= 2]
    no_decay = [p for p in ddp.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(1337 + rank)
    local = a.batch // world
    ntok = a.batch * a.seq_len
    for step in range(1, a.steps + 1):
        dist.barrier()
        t0 = time.perf_counter()
        data = torch.randint(0, a.vocab, (local, a.seq_len + 1), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss = ddp(data[:, :-1], data[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), 1.0)
        opt.step()
        loss.item()
        dist.barrier()
        dt = time.perf_counter() - t0
        if rank == 0:
            print(json.dumps({"step": step, "tokens_per_s": ntok / dt, "step_ms": dt * 1e3}),
                  flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
