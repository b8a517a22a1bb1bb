#!/usr/bin/env bash
# bench/generate.sh — generation speed: tokens/s of `mptrain generate` (key/value cache, one
# token per forward) against PyTorch's key/value-cache loop on the same weights, side by side.
#   weights   GPT-2 124M (12 x 768, 12 heads, 1024 positions, vocabulary 50257, tied head),
#             random initial values: `mptrain train --model gpt2-124m --steps 0 --save`
#   mptrain   build/mptrain generate --temperature 0 --no-stop --tokens N --threads t --stats
#   torch     tests/gen_ref.py --bench: torch 1.13 (Debian's) in float32 with a hand-written
#             Hugging-Face-style cache (per block, keys and values grown by torch.cat as
#             past_key_values are), nn.Linear / nn.LayerNorm modules of GPT2LMHeadModel's shape,
#             greedy, on the same OpenBLAS (OpenMP build) as mptrain
# Both time the whole loop: the prompt's tokens through the cache, then N new tokens; both
# report N / seconds. Each round runs the two in an order that alternates; the figure is the
# median over BENCH_ROUNDS rounds (3), for 1 and 2 threads. Usage: bash bench/generate.sh BUILD
# [N] (N new tokens, default 64). The machine is shared: read the ratio, not the absolutes.
set -euo pipefail
BUILD=${1:-build}
N=${2:-64}
ROUNDS=${BENCH_ROUNDS:-3}
BIN="$BUILD/mptrain"
HERE=$(cd "$(dirname "$0")" && pwd)
export MPTRAIN_CACHE=${MPTRAIN_CACHE:-$HERE/../.cache}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
PROMPT="Call me Ishmael. Some years ago, never mind how long precisely, having little or no money"
echo "  writing GPT-2 124M random weights" >&2
"$BIN" train --model gpt2-124m --steps 0 --save "$TMP/ckpt" --quiet >/dev/null
printf '%s' "$PROMPT" > "$TMP/prompt.txt"
"$BIN" tokenize --in "$TMP/prompt.txt" --out "$TMP/prompt.bin" --tokenizer gpt2 >/dev/null
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
: > "$TMP/runs"
for threads in 1 2; do
  for r in $(seq 1 "$ROUNDS"); do
    for who in mptrain torch; do
      [ $((r % 2)) = 0 ] && who=$([ "$who" = mptrain ] && echo torch || echo mptrain)
      echo "  threads $threads round $r: $who" >&2
      if [ "$who" = mptrain ]; then
        line=$("$BIN" generate --checkpoint "$TMP/ckpt" --prompt "$PROMPT" --tokens "$N" \
               --temperature 0 --no-stop --threads "$threads" --stats 2>&1 >/dev/null | tail -1)
      else
        line=$(OMP_NUM_THREADS=$threads THREADS=$threads /usr/bin/python3 "$HERE/../tests/gen_ref.py" \
               "$TMP/ckpt" "$TMP/prompt.bin" "$N" --bench 2>&1 >/dev/null | tail -1)
      fi
      echo "$threads $who $(sed -E 's/.* ([0-9.]+) tokens\/s.*/\1/' <<<"$line")" >> "$TMP/runs"
    done
  done
done
/usr/bin/python3 - "$TMP/runs" "$N" "$TMP/prompt.bin" "$HERE/results/generate.json" "$(cat /proc/loadavg)" <<'PY'
import datetime, json, statistics, struct, sys
runs, n, out, load = sys.argv[1], int(sys.argv[2]), sys.argv[4], sys.argv[5]
prompt = struct.unpack("<3i", open(sys.argv[3], "rb").read(12))[2]  # llm.c header: [2] = tokens
got = {}
for line in open(runs):
    t, who, tps = line.split()
    got.setdefault((int(t), who), []).append(float(tps))
res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "model": "GPT-2 124M (L12 D768 H12 T1024 V50257), random initial weights, fp32, greedy",
       "new_tokens": n, "prompt_tokens": prompt, "loadavg_at_end": load, "threads": {}}
print(f"GPT-2 124M, {n} new tokens after a {prompt}-token prompt, greedy, key/value cache "
      f"(median of {len(next(iter(got.values())))} rounds; load average at the end {load.split()[0]}):")
for t in sorted({k[0] for k in got}):
    m, p = statistics.median(got[(t, "mptrain")]), statistics.median(got[(t, "torch")])
    res["threads"][t] = {"mptrain_tokens_per_s": m, "torch_tokens_per_s": p, "ratio": m / p,
                         "mptrain_runs": got[(t, "mptrain")], "torch_runs": got[(t, "torch")]}
    print(f"  {t} thread{'s' if t > 1 else ' '}: mptrain {m:6.1f} tokens/s   torch {p:6.1f} tokens/s"
          f"   ratio {m / p:.2f}")
json.dump(res, open(out, "w"), indent=2)
print(f"written {out}")
PY
