#!/usr/bin/python3
"""Greedy decoding by a PyTorch GPT-2 (tests/hf_interop.py's module, named and shaped as
transformers' GPT2LMHeadModel) from an mptrain checkpoint: the reference `mptrain generate
--temperature 0` must equal token for token.

A Mixture-of-Experts checkpoint (config n_experts > 0) runs tests/torch_ref.py's functional
forward instead (float64, dropless routing: generate ignores the trained capacity factor).

usage: gen_ref.py CKPT_DIR PROMPT_TOKENS.bin N [--float32] [--bench]
Prints the N greedy token ids (space-separated; fewer if <|endoftext|> comes first when the
vocabulary is GPT-2's). Each step runs the whole window (the last n_positions tokens) in float64
(float32 with --float32). --bench: float32 with a key/value cache (one token per forward, as
mptrain does), and prints tokens/s on stderr."""
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_interop as hf  # noqa: E402

hf.check = lambda cond, what: cond  # its checks print; here only the ids are printed


def read_tokens(path):
    raw = open(path, "rb").read()
    hdr = np.frombuffer(raw[:1024], dtype="<i4")
    return [int(t) for t in np.frombuffer(raw[1024:], dtype="<u2")[: hdr[2]]]


def cached_greedy(m, ids, n, eot):
    """Greedy with a key/value cache: per block, keys and values of all tokens so far."""
    tr = m.transformer
    cache = [None] * len(tr.h)
    out, pos, feed = [], 0, list(ids)
    for _ in range(n):
        for tok in feed:
            x = tr.wte(torch.tensor([tok])) + tr.wpe(torch.tensor([pos]))
            x = x.view(1, 1, -1)
            for i, blk in enumerate(tr.h):
                a = blk.attn
                D = x.shape[-1]
                q, k, v = a.c_attn(blk.ln_1(x)).split(D, dim=2)
                q, k, v = (t.view(1, 1, a.h, D // a.h).transpose(1, 2) for t in (q, k, v))
                if cache[i] is not None:
                    k = torch.cat([cache[i][0], k], dim=2)
                    v = torch.cat([cache[i][1], v], dim=2)
                cache[i] = (k, v)
                att = ((q @ k.transpose(-1, -2)) / (D // a.h) ** 0.5).softmax(-1) @ v
                x = x + a.c_proj(att.transpose(1, 2).reshape(1, 1, D))
                x = x + blk.mlp(blk.ln_2(x))
            pos += 1
        nxt = int(m.lm_head(tr.ln_f(x))[0, -1].argmax())
        out.append(nxt)
        if nxt == eot:
            break
        feed = [nxt]
    return out


def moe_greedy(cfg, tensors, ids, n):
    """Greedy over the whole window by torch_ref.forward (float64), routing dropless."""
    import torch_ref as tr
    tr.torch, tr.F = torch, torch.nn.functional  # torch_ref imports them lazily in its main()
    torch.set_default_dtype(torch.float64)
    c = tr.Cfg(cfg)
    c.cap = 0.0
    P = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in tensors.items()}
    T, eot = c.Tmax, 50256 if c.V == 50257 else -1
    ctx, out = list(ids), []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(tr.forward(P, c, torch.tensor([ctx[-T:]]))[0, -1].argmax())
            out.append(nxt)
            ctx.append(nxt)
            if nxt == eot:
                break
    print(" ".join(map(str, out)))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    f32, bench = "--float32" in sys.argv, "--bench" in sys.argv
    ckpt, prompt, n = args[0], args[1], int(args[2])
    if os.path.islink(os.path.join(ckpt, "latest")):
        ckpt = os.path.join(ckpt, os.readlink(os.path.join(ckpt, "latest")))
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    tensors = hf.read_safetensors(os.path.join(ckpt, "model.safetensors"))[0]
    if int(cfg.get("n_experts", 0)) > 0:
        moe_greedy(cfg, tensors, read_tokens(prompt), n)
        return
    m, ok, missing, unexpected = hf.load_model(cfg, tensors)
    if not ok:
        sys.exit(f"checkpoint does not load: missing {missing}, unexpected {unexpected}")
    if f32 or bench:
        m = m.float()
    m.eval()
    T, V = cfg["n_positions"], cfg["vocab_size"]
    eot = 50256 if V == 50257 else -1
    ids = read_tokens(prompt)
    with torch.no_grad():
        if bench:
            torch.set_num_threads(int(os.environ.get("THREADS", "1")))
            t0 = time.time()
            out = cached_greedy(m, ids, n, -1)
            dt = time.time() - t0
            print(f"torch (float32, key/value cache, {torch.get_num_threads()} threads): "
                  f"{len(out)} tokens in {dt:.3f} s, {len(out) / dt:.1f} tokens/s "
                  f"(prompt {len(ids)} tokens)", file=sys.stderr)
        else:
            ctx, out = list(ids), []
            for _ in range(n):
                logits = m(torch.tensor([ctx[-T:]]))[0, -1]
                nxt = int(logits.argmax())
                out.append(nxt)
                ctx.append(nxt)
                if nxt == eot:
                    break
    print(" ".join(map(str, out)))


if __name__ == "__main__":
    main()
