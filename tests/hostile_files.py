#!/usr/bin/env python3
"""hostile_files.py — makes the damaged inputs of tests/t_bad_files.sh from good ones, so no
damaged binary is committed. Each call copies SRC to DST and applies one damage:

  ckpt SRC_STEP_DIR DST DAMAGE [OTHER_STEP_DIR]   a checkpoint directory (see DAMAGES_CKPT)
  tok  SRC.bin DST.bin DAMAGE                      a token file (see DAMAGES_TOK)
  bpe  SRC_DIR DST_DIR DAMAGE                      encoder.json + vocab.bpe (see DAMAGES_BPE)
  shard SRC_STEP_DIR DST DAMAGE [OTHER_STEP_DIR]  a sharded checkpoint (see shard())

Damages marked "refreshed" rewrite manifest.json's size and XXH3-64 checksum of the file they
change (through libxxhash, the library the trainer uses), so the reader gets past the checksums
to the damage itself; the others leave the manifest as it was, so the checksums must catch it.
"""
import ctypes, json, os, shutil, struct, sys

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def refresh(d, name):
    """manifest.json of directory d describes file `name` as it now is."""
    data = open(os.path.join(d, name), "rb").read()
    man = json.load(open(os.path.join(d, "manifest.json")))
    man["files"][name] = {"size": len(data), "xxh3_64": "%016x" % _xxh.XXH3_64bits(data, len(data))}
    json.dump(man, open(os.path.join(d, "manifest.json"), "w"), indent=2)


def st_read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def st_write(path, header, data, pad=True):
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)


def tensors(header):
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def ckpt(src, dst, damage, other=None):
    shutil.copytree(src, dst, symlinks=True)
    model = os.path.join(dst, "model.safetensors")
    h, data = st_read(model)
    names = tensors(h)
    first, second = names[0], names[1]
    if damage == "truncated":                      # half the weights file, manifest as it was
        raw = open(model, "rb").read()
        open(model, "wb").write(raw[: len(raw) // 2])
        return
    if damage == "flipped-byte":                   # same size, one bit changed in the data
        raw = bytearray(open(model, "rb").read())
        raw[-3] ^= 0x10
        open(model, "wb").write(bytes(raw))
        return
    if damage == "manifest-not-json":
        open(os.path.join(dst, "manifest.json"), "w").write('{"files": {"config.json": ')
        return
    if damage == "manifest-other-model":           # the manifest of another model's checkpoint
        shutil.copy(os.path.join(other, "manifest.json"), os.path.join(dst, "manifest.json"))
        return
    if damage == "missing-optimizer":              # a file the manifest lists is gone
        os.remove(os.path.join(dst, "optimizer.safetensors"))
        return
    if damage == "latest-dangling":                # DST is a --save directory whose latest is lost
        shutil.rmtree(dst)
        os.makedirs(dst)
        os.symlink("step_999999", os.path.join(dst, "latest"))
        return
    fname = "model.safetensors"
    if damage == "header-not-json":                # refreshed
        raw = b'{"transformer.wte.weight": {"dtype": "F32", "shape": [' + b" " * 6
        open(model, "wb").write(struct.pack("<Q", len(raw)) + raw + data)
    elif damage == "header-length-huge":           # refreshed: length field past the file
        raw = open(model, "rb").read()
        open(model, "wb").write(struct.pack("<Q", 1 << 40) + raw[8:])
    elif damage == "empty-weights":                # refreshed: a 0-byte model.safetensors
        open(model, "wb").close()
    elif damage == "offsets-out-of-range":         # refreshed: the last tensor ends past the data
        last = names[-1]
        b, e = h[last]["data_offsets"]
        h[last]["data_offsets"] = [b + 4096, e + 4096]
        st_write(model, h, data)
    elif damage == "offsets-overlap":              # refreshed: two tensors share bytes
        b, e = h[second]["data_offsets"]
        h[second]["data_offsets"] = [b - 4, e - 4]
        st_write(model, h, data)
    elif damage == "wrong-dtype":                  # refreshed: I32 of the same size
        h[first]["dtype"] = "I32"
        st_write(model, h, data)
    elif damage == "wrong-shape":                  # refreshed: same elements, another shape
        shape = h[first]["shape"]
        if len(shape) == 1:
            h[first]["shape"] = [shape[0] // 2, 2]
        elif shape[0] != shape[1]:
            h[first]["shape"] = [shape[1], shape[0]]
        else:
            h[first]["shape"] = [shape[0] * shape[1]]
        st_write(model, h, data)
    elif damage == "missing-tensor":               # refreshed: ln_f.bias left out
        victim = [k for k in names if k.endswith("ln_f.bias")][0]
        del h[victim]
        st_write(model, h, data)
    elif damage == "extra-tensor":                 # refreshed: a block the model does not have
        h["transformer.h.77.ln_1.weight"] = dict(h[first], data_offsets=h[first]["data_offsets"])
        h["transformer.h.77.ln_1.weight"]["data_offsets"] = [len(data), len(data) + 4]
        h["transformer.h.77.ln_1.weight"]["shape"] = [1]
        st_write(model, h, data + b"\0\0\0\0")
    elif damage == "untied-head-in-tied-model":    # refreshed: an lm_head that is not wte
        wte = [k for k in names if k.endswith("wte.weight")][0]
        b, e = h[wte]["data_offsets"]
        h["lm_head.weight"] = dict(h[wte], data_offsets=[len(data), len(data) + (e - b)])
        st_write(model, h, data + bytes(e - b))
    elif damage == "config-other-model":           # refreshed: config.json of another model
        fname = "config.json"
        shutil.copy(os.path.join(other, fname), os.path.join(dst, fname))
    elif damage == "optimizer-wrong-shape":        # refreshed
        fname = "optimizer.safetensors"
        opt = os.path.join(dst, fname)
        oh, od = st_read(opt)
        k = [x for x in tensors(oh) if x.endswith("ln_f.weight")][0]
        oh[k]["shape"] = [oh[k]["shape"][0] // 2, 2]
        st_write(opt, oh, od)
    elif damage == "state-negative-step":          # refreshed
        fname = "trainer_state.json"
        p = os.path.join(dst, fname)
        s = json.load(open(p))
        s["step"] = -5
        json.dump(s, open(p, "w"))
    elif damage == "state-not-json":               # refreshed
        fname = "trainer_state.json"
        open(os.path.join(dst, fname), "w").write("step = 3\n")
    else:
        sys.exit("unknown checkpoint damage " + damage)
    refresh(dst, fname)


def tok(src, dst, damage):
    raw = bytearray(open(src, "rb").read())
    if damage == "truncated":
        raw = raw[:-3]
    elif damage == "truncated-header":
        raw = raw[:500]
    elif damage == "empty":
        raw = bytearray()
    elif damage == "bad-magic":
        raw[0:4] = struct.pack("<i", 20240519)
    elif damage == "bad-version":
        raw[4:8] = struct.pack("<i", 2)
    elif damage == "count-past-end":
        n = struct.unpack("<i", raw[8:12])[0]
        raw[8:12] = struct.pack("<i", n + 100)
    elif damage == "count-negative":
        raw[8:12] = struct.pack("<i", -7)
    elif damage == "token-past-vocab":             # a byte-vocabulary file holding token 300
        raw[1024 + 2 * 5: 1024 + 2 * 6] = struct.pack("<H", 300)
    else:
        sys.exit("unknown token file damage " + damage)
    open(dst, "wb").write(bytes(raw))


def bpe(src, dst, damage):
    shutil.copytree(src, dst)
    enc, merges = os.path.join(dst, "encoder.json"), os.path.join(dst, "vocab.bpe")
    if damage == "encoder-truncated":
        raw = open(enc, "rb").read()
        open(enc, "wb").write(raw[: len(raw) // 2])
    elif damage == "encoder-empty":
        open(enc, "wb").close()
    elif damage == "encoder-not-object":
        open(enc, "w").write("[1, 2, 3]")
    elif damage == "encoder-missing":
        os.remove(enc)
    elif damage == "encoder-bad-id":               # an id that is not a whole number >= 0
        e = json.load(open(enc))
        e["hello"] = -4
        json.dump(e, open(enc, "w"))
    elif damage == "encoder-id-gap":               # ids far past the number of tokens
        e = json.load(open(enc))
        e["Ġzzzzzz"] = 10 ** 8
        json.dump(e, open(enc, "w"))
    elif damage == "encoder-missing-byte":         # the byte 'a' has no token (a gap in the ids)
        e = json.load(open(enc))
        del e["a"]
        json.dump(e, open(enc, "w"))
    elif damage == "merges-bad-line":
        lines = open(merges, encoding="utf-8").read().split("\n")
        lines[10] = "onlyoneword"
        open(merges, "w", encoding="utf-8").write("\n".join(lines))
    elif damage == "merges-unknown-token":         # a merge of pieces that are not tokens
        lines = open(merges, encoding="utf-8").read().split("\n")
        lines[10] = "qqqqq zzzzz"
        open(merges, "w", encoding="utf-8").write("\n".join(lines))
    elif damage == "merges-binary":
        open(merges, "wb").write(bytes(range(256)) * 4)
    elif damage == "merges-missing":
        os.remove(merges)
    else:
        sys.exit("unknown tokenizer damage " + damage)


def shard(src, dst, damage, other=None):
    """A sharded checkpoint (shards.json + shard-*.bin, src/train/ckpt_shard.h)."""
    shutil.copytree(src, dst, symlinks=True)
    index = os.path.join(dst, "shards.json")
    ix = json.load(open(index))
    slices = ix["tensors"][2]["slices"]            # a tensor of the first block
    if damage == "missing-shard":                  # a shard file gone, manifest as it was
        os.remove(os.path.join(dst, ix["files"][-1]))
        return
    if damage == "flipped-rank2":                  # one bit of rank 2's shard, manifest as it was
        p = os.path.join(dst, "shard-00002.bin")
        raw = bytearray(open(p, "rb").read())
        raw[len(raw) // 2] ^= 0x10
        open(p, "wb").write(bytes(raw))
        return
    if damage == "truncated-shard":                # half a shard file, manifest as it was
        p = os.path.join(dst, ix["files"][0])
        raw = open(p, "rb").read()
        open(p, "wb").write(raw[: len(raw) // 2])
        return
    if damage == "missing-shard-unlisted":         # a shard file gone from disk and manifest
        name = ix["files"][-1]
        os.remove(os.path.join(dst, name))
        man = json.load(open(os.path.join(dst, "manifest.json")))
        del man["files"][name]
        json.dump(man, open(os.path.join(dst, "manifest.json"), "w"), indent=2)
        return
    if damage == "overlap":                        # two param slices of one tensor overlap
        for t in ix["tensors"]:
            p = [x for x in t["slices"] if x["kind"] == "param"]
            if len(p) >= 2:
                p[1]["offset"] = list(p[0]["offset"])
                break
    elif damage == "gap":                          # a slice dropped: part of a tensor uncovered
        del slices[0]
    elif damage == "outside":                      # a slice longer than its tensor
        slices[0]["length"][0] += 1000
    elif damage == "past-file":                    # a slice's data past the end of its file
        slices[0]["byte"] = 1 << 40
    elif damage == "bad-kind":
        slices[0]["kind"] = "momentum"
    elif damage == "not-json":
        open(index, "w").write('{"format": "mptrain-shards", "tensors": [')
        refresh(dst, "shards.json")
        return
    elif damage == "other-model":                  # the index of a model of another shape
        ix = json.load(open(os.path.join(other, "shards.json")))
    elif damage == "unknown-tensor":
        ix["tensors"][0]["name"] = "transformer.h.99.mlp.c_fc.weight"
    else:
        sys.exit("unknown shard damage " + damage)
    json.dump(ix, open(index, "w"))
    refresh(dst, "shards.json")


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    {"ckpt": ckpt, "tok": tok, "bpe": bpe, "shard": shard}[kind](*args)
