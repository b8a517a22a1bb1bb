#!/usr/bin/env bash
# Data shards: `tokenize --shard-tokens N` cuts the token stream into files of N tokens
# (NAME_000000.bin, ...; the last holds the rest) with a line per shard, whose concatenation is
# the single file's tokens; `train --data` takes a glob or a comma-separated list of shards and
# reads them as one stream (CONTRACT §4's order over the concatenation, sequences running across
# shard boundaries): the same losses and validation losses as the single file, bit for bit; bad
# shard options exit 2.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
head -c 40000 .cache/moby-dick/data/data.txt > "$TMP/a.txt"
tail -c 20000 .cache/moby-dick/data/data.txt > "$TMP/b.txt"
"$BIN" tokenize --in "$TMP/a.txt" --in "$TMP/b.txt" --out "$TMP/one.bin" >/dev/null || bad "tokenize one file"
out=$("$BIN" tokenize --in "$TMP/a.txt" --in "$TMP/b.txt" --out "$TMP/sh.bin" --shard-tokens 1000) || bad "tokenize shards"
n=$(ls "$TMP"/sh_*.bin | wc -l)
[ "$n" = 60 ] && [ "$(grep -c '^tokenize: shard [0-9]*: [0-9]* tokens -> ' <<<"$out")" = 60 ] \
  && ok "60 shards of 1000 tokens, a progress line each: $(tail -1 <<<"$out")" || bad "shards: $n files; $out"
/usr/bin/python3 - "$TMP" <<'PY' && ok "the shards concatenated = the single file; each header counts its tokens" || bad "shard contents"
import glob, struct, sys
d = sys.argv[1]
def toks(p):
    raw = open(p, "rb").read()
    h = struct.unpack("<3i", raw[:12])
    assert h[0] == 20240520 and h[1] == 1 and len(raw) == 1024 + 2 * h[2], p
    return raw[1024:]
shards = sorted(glob.glob(f"{d}/sh_*.bin"))
assert all(len(toks(p)) == 2000 for p in shards[:-1]) and 0 < len(toks(shards[-1])) <= 2000
assert b"".join(map(toks, shards)) == toks(f"{d}/one.bin")
PY

MODEL=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 64 --batch 8 --steps 6 --threads 1
       --quiet --lr 3e-3 --val-fraction 0.1 --eval-every 3 --eval-batches 2)
"$BIN" train "${MODEL[@]}" --data "$TMP/one.bin" --log "$TMP/one.jsonl" >/dev/null 2>&1 || bad "train on one file"
"$BIN" train "${MODEL[@]}" --data "$TMP/sh_*.bin" --log "$TMP/glob.jsonl" >/dev/null 2>&1 || bad "train on a glob"
list=$(ls "$TMP"/sh_*.bin | sort | tr '\n' ',' | sed 's/,$//')
"${MPIRUN[@]}" -np 2 "$BIN" train "${MODEL[@]}" --dp 2 --data "$list" --log "$TMP/list.jsonl" >/dev/null 2>&1 \
  || bad "train on a list, dp 2"
for run in glob list; do
  if /usr/bin/python3 - "$TMP/$run.jsonl" "$TMP/one.jsonl" "$run" <<'PY'
import json, sys
def lines(p):
    return [(j["step"], j["loss"], j.get("val_loss")) for j in map(json.loads, open(p)) if "step" in j and "event" not in j]
a, b = lines(sys.argv[1]), lines(sys.argv[2])
start = [json.loads(l) for l in open(sys.argv[1])][0]
print(f"{start['data_files']} files, {len(a)} steps, val_loss at steps 3 and 6: {[v for _, _, v in a if v is not None]}")
ok = len(a) == 6 and a[2][2] is not None and a[5][2] is not None
if sys.argv[3] == "glob":  # one rank both: bit for bit
    ok = ok and a == b and start["data_files"] == 60
else:                      # dp 2: the layout's summation order, within 1e-5
    ok = ok and all(abs(x[1] - y[1]) <= 1e-5 * abs(y[1]) and (x[2] is None) == (y[2] is None) and
                    (x[2] is None or abs(x[2] - y[2]) <= 1e-5 * y[2]) for x, y in zip(a, b))
sys.exit(0 if ok else 1)
PY
  then ok "--data $run = one file"; else bad "--data $run differs from one file"; fi
done

"$BIN" tokenize --in "$TMP/a.txt" --out "$TMP/z.bin" --shard-tokens 0 >/dev/null 2>"$TMP/e1"; code=$?
[ $code = 2 ] && grep -q "mptrain: error: .*--shard-tokens" "$TMP/e1" && ok "--shard-tokens 0: exit 2" || bad "--shard-tokens 0: exit $code"
"$BIN" train "${MODEL[@]}" --data "$TMP/none_*.bin" >/dev/null 2>"$TMP/e2"; code=$?
[ $code = 2 ] && grep -q "mptrain: error: .*none_" "$TMP/e2" && ok "--data glob matching nothing: exit 2: $(head -1 "$TMP/e2")" \
  || bad "--data glob matching nothing: exit $code $(cat "$TMP/e2")"
finish
