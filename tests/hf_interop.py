#!/usr/bin/python3
"""hf_interop.py — mptrain checkpoints against Hugging Face GPT-2 conventions, without transformers.

Usage: hf_interop.py BUILD/mptrain WORKDIR

1. mptrain writes its initial weights (--steps 0 --save); we read config.json and
   model.safetensors by hand (json + struct + numpy) and check names, shapes, dtypes, the header
   layout and the config keys against GPT2LMHeadModel's, by loading them strictly into a plain
   torch model whose module tree mirrors transformers' GPT-2.
2. We write two Hugging Face style directories (no manifest): A without the "transformer."
   prefix, with the attention mask buffers, n_inner null and extra keys, tied; B with the prefix,
   an untied lm_head, vocab 200 (padded inside mptrain), stored as F16.
3. mptrain --init-from each: its saved weights must equal what we wrote (bit for bit, after the
   F16 -> F32 widening), and its first-step loss must match the torch model on the same batch.
"""
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
fails = passes = 0


def check(cond, what):
    global fails, passes
    print(("ok   " if cond else "FAIL ") + what)
    if cond:
        passes += 1
    else:
        fails += 1
    return cond


def read_safetensors(path):
    """-> (dict name -> np.ndarray, dict name -> dtype string, metadata, header length)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", None)
    tensors, dtypes, spans = {}, {}, []
    for name, e in header.items():
        b, end = e["data_offsets"]
        spans.append((b, end))
        dtypes[name] = e["dtype"]
        tensors[name] = np.frombuffer(data[b:end], dtype=NP_DTYPES[e["dtype"]]).reshape(e["shape"])
    spans.sort()
    contiguous = all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    check(spans[0][0] == 0 and contiguous and spans[-1][1] == len(data),
          f"{os.path.basename(path)}: tensors tile the data buffer exactly (as the reference "
          f"safetensors library requires)")
    return tensors, dtypes, meta, n


def write_safetensors(path, items, dtype="F32", metadata=None):
    """items: list of (name, array); written in order as dtype."""
    header, chunks, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in items:
        raw = np.ascontiguousarray(a, dtype=NP_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# --- GPT-2 in plain torch, module names as transformers' GPT2LMHeadModel ------------------------

class Conv1D(nn.Module):   # transformers' Conv1D: weight [in, out], y = x W + b
    def __init__(self, nx, nf):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.c_attn, self.c_proj = Conv1D(d, 3 * d), Conv1D(d, d)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)   # columns [q | k | v], heads contiguous
        q, k, v = (t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D // self.h)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = att.softmax(-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(d, f), Conv1D(f, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d, eps=1e-5), Attention(d, h)
        self.ln_2, self.mlp = nn.LayerNorm(d, eps=1e-5), MLP(d, f)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["n_embd"]
        f = c.get("n_inner") or 4 * d
        self.wte, self.wpe = nn.Embedding(c["vocab_size"], d), nn.Embedding(c["n_positions"], d)
        self.h = nn.ModuleList(Block(d, c["n_head"], f) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)


class GPT2LMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = Transformer(c)
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        self.tied = c.get("tie_word_embeddings", True)
        if self.tied:
            self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        tr = self.transformer
        x = tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1]))
        for blk in tr.h:
            x = blk(x)
        return self.lm_head(tr.ln_f(x))


def expected_names(model):
    """The safetensors names transformers saves: parameters, minus a tied lm_head."""
    names = {n: tuple(p.shape) for n, p in model.state_dict().items()}   # no buffers here
    if model.tied:
        names.pop("lm_head.weight")
    return names


def load_model(cfg, tensors):
    m = GPT2LMHead(cfg).double()
    sd = {n: torch.from_numpy(np.asarray(a, dtype=np.float64)) for n, a in tensors.items()
          if not n.endswith((".attn.bias", ".attn.masked_bias"))}
    sd = {(n if n.startswith(("transformer.", "lm_head.")) else "transformer." + n): t
          for n, t in sd.items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    ok = not unexpected and set(missing) <= ({"lm_head.weight"} if m.tied else set())
    return m, ok, missing, unexpected


# --- the run -------------------------------------------------------------------------------------

def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
    check(r.returncode == 0, "exit 0: " + " ".join(os.path.basename(c) if i == 0 else c
                                                  for i, c in enumerate(cmd)))
    return r.returncode == 0


def latest(root):
    return os.path.join(root, os.readlink(os.path.join(root, "latest")))


def main():
    binary, work = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # token file, llm.c layout: 256 int32 header (magic, version 1 = uint16, count), tokens
    tokens = rng.integers(0, 200, size=4096).astype(np.uint16)
    data = os.path.join(work, "tokens.bin")
    with open(data, "wb") as f:
        f.write(np.array([20240520, 1, len(tokens)] + [0] * 253, dtype=np.int32).tobytes())
        f.write(tokens.tobytes())
    common = ["--data", data, "--threads", "1", "--quiet"]

    # 1. mptrain's own checkpoint follows the conventions
    init = os.path.join(work, "init")
    if not run([binary, "train", "--model", "tiny", "--steps", "0", "--save", init] + common):
        return
    d = latest(init)
    cfg = json.load(open(os.path.join(d, "config.json")))
    check(cfg.get("model_type") == "gpt2" and cfg.get("architectures") == ["GPT2LMHeadModel"]
          and cfg.get("activation_function") == "gelu_new"
          and cfg.get("layer_norm_epsilon") == 1e-5 and cfg.get("tie_word_embeddings") is True
          and all(isinstance(cfg.get(k), int) for k in
                  ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")),
          f"config.json has GPT2Config keys: {cfg}")
    tensors, dtypes, meta, hlen = read_safetensors(os.path.join(d, "model.safetensors"))
    check(meta == {"format": "pt"}, f"metadata {meta} (transformers requires format pt)")
    check(hlen % 8 == 0, f"header length {hlen} is a multiple of 8")
    check(set(dtypes.values()) == {"F32"}, "all tensors F32")
    ref = GPT2LMHead(cfg)
    want = expected_names(ref)
    got = {n: tuple(a.shape) for n, a in tensors.items()}
    check(got == want, f"{len(got)} names and shapes equal GPT2LMHeadModel's "
          f"(extra {sorted(set(got) - set(want))[:4]}, missing {sorted(set(want) - set(got))[:4]})")
    _, ok, missing, unexpected = load_model(cfg, tensors)
    check(ok, f"strict load into the torch GPT-2 (missing {missing}, unexpected {unexpected})")
    wte = tensors["transformer.wte.weight"]
    check(abs(float(wte.std()) - 0.02) < 0.002 and
          np.all(tensors["transformer.h.0.ln_1.weight"] == 1.0), "initial values as §2 says")

    # 2. Hugging Face style directories
    T, D = cfg["n_positions"], cfg["n_embd"]
    noisy = {n: (a + rng.normal(0, 0.01, a.shape)).astype(np.float32) for n, a in tensors.items()}
    cfg_a = dict(cfg, n_inner=None, n_ctx=T, bos_token_id=50256, eos_token_id=50256,
                 resid_pdrop=0.1, summary_type="cls_index", use_cache=True,
                 activation_function="gelu_pytorch_tanh")
    cfg_a.pop("tie_word_embeddings")   # absent means tied, as save_pretrained leaves it out
    items_a = []
    for n, a in noisy.items():
        items_a.append((n[len("transformer."):], a))
        if n.endswith(".ln_1.weight"):
            layer = n.split(".")[2]
            items_a.append((f"h.{layer}.attn.bias", np.tril(np.ones((T, T), np.float32))[None, None]))
            items_a.append((f"h.{layer}.attn.masked_bias", np.array(-1e4, np.float32)))
    V2 = 200
    cfg_b = dict(cfg, vocab_size=V2, tie_word_embeddings=False)
    items_b = [(n, a[:V2] if n == "transformer.wte.weight" else a) for n, a in noisy.items()]
    items_b.append(("lm_head.weight", rng.normal(0, 0.02, (V2, D)).astype(np.float32)))
    variants = [("hf_a", cfg_a, items_a, "F32"), ("hf_b", cfg_b, items_b, "F16")]

    for name, c, items, dtype in variants:
        hf = os.path.join(work, name)
        os.makedirs(hf)
        with open(os.path.join(hf, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
        write_safetensors(os.path.join(hf, "model.safetensors"), items, dtype, {"format": "pt"})
        wrote = {n: np.asarray(a, NP_DTYPES[dtype]).astype(np.float32) for n, a in items
                 if not n.endswith((".attn.bias", ".attn.masked_bias"))}
        wrote = {(n if n.startswith(("transformer.", "lm_head.")) else "transformer." + n): a
                 for n, a in wrote.items()}

        # 3a. --init-from, saved again at step 0: exactly what we wrote
        out = os.path.join(work, name + "_out")
        if not run([binary, "train", "--init-from", hf, "--steps", "0", "--save", out] + common):
            continue
        back, _, _, _ = read_safetensors(os.path.join(latest(out), "model.safetensors"))
        same = set(back) == set(wrote) and all(np.array_equal(back[n], wrote[n]) for n in wrote)
        check(same, f"{name} ({dtype}): mptrain --init-from keeps every weight bit-exact")
        back_cfg = json.load(open(os.path.join(latest(out), "config.json")))
        check(back_cfg["vocab_size"] == c["vocab_size"] and
              back_cfg["tie_word_embeddings"] == c.get("tie_word_embeddings", True) and
              back_cfg["n_inner"] == 4 * D, f"{name}: config.json carried over")

        # 3b. first-step loss equals the torch model's on the same batch (CONTRACT §4 order)
        log = os.path.join(work, name + ".jsonl")
        B = 2
        if not run([binary, "train", "--init-from", hf, "--steps", "1", "--batch", str(B),
                    "--log", log] + common):
            continue
        steps = [json.loads(l) for l in open(log) if '"step"' in l and '"event"' not in l]
        model, ok, _, _ = load_model(c, wrote)
        n = len(tokens)
        starts = [(g * T) % (n - T - 1) for g in range(B)]
        x = torch.tensor(np.stack([tokens[s:s + T] for s in starts]).astype(np.int64))
        y = torch.tensor(np.stack([tokens[s + 1:s + T + 1] for s in starts]).astype(np.int64))
        with torch.no_grad():
            want_loss = F.cross_entropy(model(x).reshape(-1, c["vocab_size"]), y.reshape(-1)).item()
        got_loss = steps[0]["loss"] if steps else float("nan")
        check(ok and abs(got_loss - want_loss) <= 1e-4 * want_loss,
              f"{name}: step-1 loss {got_loss:.7f} vs torch {want_loss:.7f} "
              f"(rel diff {abs(got_loss - want_loss) / want_loss:.2e})")


if __name__ == "__main__":
    main()
    if passes == 0:
        check(False, "no check ran")
    print(f"{passes} passed, {fails} failed")
    sys.exit(1 if fails else 0)
