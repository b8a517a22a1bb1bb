#!/usr/bin/python3
"""torch_gpt.py — the PyTorch side of `make bench`: a plain GPT-2 trained on random byte tokens.

The same math as mptrain (CONTRACT.md section 2 and 5): pre-LayerNorm blocks (eps 1e-5), causal
multi-head attention with biases, MLP c_proj(gelu_tanh(c_fc(x))) with F = 4*D, learned position
embeddings, final ln_f, output head tied to wte, mean cross-entropy, AdamW (beta 0.9/0.95,
eps 1e-8, weight decay 0.1 on matrices only) after clip_grad_norm_(1.0). fp32, no dropout.

Written the way a careful PyTorch user would write it for torch 1.13 on a CPU: nn.Linear /
nn.LayerNorm / nn.Embedding, fused qkv projection, masked-softmax attention (torch 1.13 has no
public F.scaled_dot_product_attention; its private _scaled_dot_product_attention is selectable
and measured no faster here), F.gelu(approximate="tanh"), F.cross_entropy,
zero_grad(set_to_none=True) and torch's default single-tensor AdamW, which on this CPU is twice
as fast as the multi-tensor ("foreach") one (about 30 ms against 60 ms per step with the clip).

Prints one JSON object per line on stdout (or to --log): a start line, then one line per step
with tokens_per_s and step_ms, like mptrain's --log.

Run with Debian's interpreter: /usr/bin/python3 bench/torch_gpt.py --steps 5
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    """Causal multi-head attention; `impl` picks one of three ordinary ways to write it:
    "baddbmm" (default): scores = mask + scale * q k^T in one batched GEMM, softmax, bmm with v;
    "masked": nanoGPT's non-flash path, (q @ k^T) * scale, masked_fill(-inf), softmax, @ v;
    "sdpa": torch 1.13's F._scaled_dot_product_attention(is_causal=True) (private in 1.13)."""

    def __init__(self, d_model, n_head, seq_len, impl="baddbmm"):
        super().__init__()
        self.n_head, self.impl = n_head, impl
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        # additive causal mask, built once: 0 on and below the diagonal, -inf above
        mask = torch.full((seq_len, seq_len), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        B, T, D = x.shape
        H, hs = self.n_head, D // self.n_head
        q, k, v = self.c_attn(x).split(D, dim=2)
        q = q.view(B, T, H, hs).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, H, hs).transpose(1, 2)
        v = v.view(B, T, H, hs).transpose(1, 2)
        if self.impl == "sdpa":
            y = F._scaled_dot_product_attention(q, k, v, is_causal=True)[0]
        elif self.impl == "masked":
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(self.mask[:T, :T] != 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        else:
            att = torch.baddbmm(self.mask[:T, :T].expand(B * H, T, T),
                                q.reshape(B * H, T, hs), k.reshape(B * H, T, hs).transpose(1, 2),
                                beta=1.0, alpha=1.0 / math.sqrt(hs))
            y = torch.bmm(F.softmax(att, dim=-1), v.reshape(B * H, T, hs)).view(B, H, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, d_model, ffn):
        super().__init__()
        self.c_fc = nn.Linear(d_model, ffn)
        self.c_proj = nn.Linear(ffn, d_model)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d_model, n_head, ffn, seq_len, attn_impl):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model, eps=1e-5)
        self.attn = CausalSelfAttention(d_model, n_head, seq_len, attn_impl)
        self.ln_2 = nn.LayerNorm(d_model, eps=1e-5)
        self.mlp = MLP(d_model, ffn)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, n_layer, d_model, n_head, seq_len, vocab, ffn, attn_impl="baddbmm"):
        super().__init__()
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(seq_len, d_model)
        self.h = nn.ModuleList(Block(d_model, n_head, ffn, seq_len, attn_impl) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)
        self.register_buffer("pos", torch.arange(seq_len), persistent=False)
        for name, p in self.named_parameters():  # GPT-2 initialisation
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(self.pos[:T])
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def add_model_args(ap):
    """The benchmark model's shape (mptrain's `small` preset), shared with torch_ddp.py."""
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=256)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(ap)
    ap.add_argument("--ffn", type=int, default=0, help="MLP width (default 4*d-model)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--attention", default="baddbmm", choices=["baddbmm", "masked", "sdpa"])
    ap.add_argument("--foreach", type=int, default=0, help="multi-tensor AdamW (1) or not (0)")
    ap.add_argument("--log", default="-", help="JSON Lines output (default stdout)")
    ap.add_argument("--autocast", default="none", choices=["none", "bf16"],
                    help="bf16: forward and loss under torch.autocast('cpu', torch.bfloat16) "
                         "(fp32 master weights and AdamW, as mptrain --dtype bf16)")
    a = ap.parse_args()
    ffn = a.ffn or 4 * a.d_model

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = GPT(a.layers, a.d_model, a.heads, a.seq_len, a.vocab, ffn, a.attention)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, foreach=bool(a.foreach))
    n_params = sum(p.numel() for p in model.parameters())
    out = sys.stdout if a.log == "-" else open(a.log, "w")

    def emit(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    emit({"event": "start", "impl": "torch", "torch": torch.__version__,
          "threads": torch.get_num_threads(), "n_layer": a.layers, "d_model": a.d_model,
          "n_head": a.heads, "seq_len": a.seq_len, "vocab": a.vocab, "ffn": ffn,
          "batch": a.batch, "params": n_params, "attention": a.attention,
          "foreach": bool(a.foreach), "autocast": a.autocast})
    gen = torch.Generator().manual_seed(a.seed)
    ntok = a.batch * a.seq_len
    t_all = 0.0
    for step in range(1, a.steps + 1):
        t0 = time.perf_counter()
        data = torch.randint(0, a.vocab, (a.batch, a.seq_len + 1), generator=gen)
        x, y = data[:, :-1], data[:, 1:]
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
            loss = model(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        dt = time.perf_counter() - t0
        t_all += dt
        emit({"step": step, "loss": lv, "grad_norm": float(norm), "tokens_per_s": ntok / dt,
              "step_ms": dt * 1e3})
    emit({"event": "end", "steps": a.steps, "seconds": t_all,
          "tokens_per_s": a.steps * ntok / t_all if t_all > 0 else 0.0})
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
