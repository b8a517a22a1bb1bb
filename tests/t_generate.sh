#!/usr/bin/env bash
# Generation (mptrain generate): greedy decoding with the key/value cache equals re-running the
# whole context (--no-cache) and the PyTorch reference's greedy decoding (tests/gen_ref.py, float64
# GPT-2 on the same checkpoint) token for token, on checkpoints trained for a few steps with the
# byte and the GPT-2 vocabulary; sampling is fixed by --seed; --top-k 1 and a tiny --top-p are
# greedy; generation stops at <|endoftext|> (gpt2) unless --no-stop; past the model's positions
# the window slides. Under mpirun (tp 2, pp 2, tp 2 x pp 2) the same checkpoints give the same
# text and ids as one rank for the same seed (greedy, sampled, past the positions, and the GPT-2
# vocabulary padded for tp); layouts that do not fit the ranks or the model exit 2 on every rank.
# A Mixture-of-Experts checkpoint: the same equalities (cache, --no-cache, PyTorch, layouts);
# --ep is refused with exit 2. The decoder's logits on those layouts, dense and MoE, against the
# training forward: tests/mpi_decode.c.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
"$PY" -c 'import torch, numpy' || { bad "python3 needs torch and numpy (scripts/setup.sh)"; finish; exit 1; }
export MPTRAIN_CACHE="$PWD/.cache"

# a byte model trained on a few repeated sentences (300 steps, loss ~1.1): its greedy text is no
# longer one repeated character, so token-for-token equality means something
/usr/bin/python3 -c 'import sys; open(sys.argv[1], "w").write(400 * "Call me Ishmael. Some years ago, never mind how long, I went to sea. The whale swam on. ")' "$TMP/rep.txt"
"$BIN" tokenize --in "$TMP/rep.txt" --out "$TMP/rep.bin" >/dev/null || bad "tokenize the sentences"
"$BIN" train --model tiny --layers 2 --d-model 64 --heads 4 --seq-len 64 --batch 8 --steps 300 \
  --lr 1e-2 --threads 1 --quiet --data "$TMP/rep.bin" --save "$TMP/byte" >/dev/null 2>&1 || bad "training the byte model"
printf 'Call me Ishmael. Some' > "$TMP/prompt.txt"
"$BIN" tokenize --in "$TMP/prompt.txt" --out "$TMP/prompt.bin" >/dev/null || bad "tokenize the prompt"
G=("$BIN" generate --checkpoint "$TMP/byte" --threads 1 --prompt "Call me Ishmael. Some")

cached=$("${G[@]}" --temperature 0 --tokens 40 --ids)
full=$("${G[@]}" --temperature 0 --tokens 40 --ids --no-cache)
[ "$(tr ' ' '\n' <<<"$cached" | sort -u | wc -l)" -gt 5 ] && [ "$cached" = "$full" ] && ok "byte: cached greedy = full forward (40 tokens): $cached" \
  || bad "byte: cached '$cached' != full '$full'"
ref=$("$PY" "$HERE/gen_ref.py" "$TMP/byte" "$TMP/prompt.bin" 40)
[ "$cached" = "$ref" ] && ok "byte: greedy = PyTorch's greedy token for token" \
  || bad "byte: mptrain '$cached' != torch '$ref'"
text=$("${G[@]}" --temperature 0 --tokens 40)
ok_text=$("$PY" -c 'import sys; ids=sys.argv[1].split(); print("Call me Ishmael. Some" + bytes(map(int, ids)).decode("latin-1"))' "$cached")
[ "$text" = "$ok_text" ] && ok "byte: streamed text = prompt + the ids' bytes: $text" || bad "text '$text' != '$ok_text'"

# sampling: the seed fixes it; top-k 1 and top-p 1e-6 are greedy
a=$("${G[@]}" --tokens 40 --ids --seed 5 --top-p 0.9); b=$("${G[@]}" --tokens 40 --ids --seed 5 --top-p 0.9)
c=$("${G[@]}" --tokens 40 --ids --seed 6 --top-p 0.9)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] && ok "sampling: same seed same text, another seed another" \
  || bad "sampling: seed 5 '$a' / '$b', seed 6 '$c'"
k1=$("${G[@]}" --tokens 40 --ids --top-k 1 --temperature 1.5); p0=$("${G[@]}" --tokens 40 --ids --top-p 0.000001 --top-k 0)
[ "$k1" = "$cached" ] && [ "$p0" = "$cached" ] && ok "top-k 1 and top-p 1e-6 are greedy" \
  || bad "top-k 1 '$k1', top-p '$p0', greedy '$cached'"
# beyond the 64 positions: the window slides (the cache restarts from the last half)
long=$("${G[@]}" --tokens 150 --ids --temperature 0 | wc -w)
[ "$long" = 150 ] && ok "150 tokens past 64 positions" || bad "long generation gave $long tokens"

# multi-rank generation: every layout gives one rank's ids (greedy, sampled, and 150 tokens past
# the 64 positions, where the caches of every stage restart together) and one rank's streamed text
one_s=$("${G[@]}" --tokens 40 --ids --seed 7 --temperature 1.0 --top-k 0)
one_long=$("${G[@]}" --tokens 150 --ids --seed 8 --top-p 0.9)
for lay in "2 1" "1 2" "2 2"; do
  set -- $lay; np=$(($1 * $2)); L=(--tp "$1" --pp "$2")
  M=("${MPIRUN[@]}" -np "$np" "${G[@]}")
  g=$("${M[@]}" "${L[@]}" --temperature 0 --tokens 40 --ids 2>"$TMP/me")
  s=$("${M[@]}" "${L[@]}" --tokens 40 --ids --seed 7 --temperature 1.0 --top-k 0 2>>"$TMP/me")
  l=$("${M[@]}" "${L[@]}" --tokens 150 --ids --seed 8 --top-p 0.9 2>>"$TMP/me")
  t=$("${M[@]}" "${L[@]}" --temperature 0 --tokens 40 2>>"$TMP/me")
  [ "$g" = "$cached" ] && [ "$s" = "$one_s" ] && [ "$l" = "$one_long" ] && [ "$t" = "$ok_text" ] \
    && ok "byte: tp $1 pp $2 ($np ranks) = one rank: greedy, sampled, 150 sampled tokens, text '$t'" \
    || bad "byte: tp $1 pp $2: greedy '$g' / '$cached', sampled '$s' / '$one_s', long $(wc -w <<<"$l") tokens, text '$t': $(head -c 300 "$TMP/me")"
done
g=$("${MPIRUN[@]}" -np 2 "${G[@]}" --tp 2 --temperature 0 --tokens 40 --ids --no-cache 2>&1)
[ "$g" = "$cached" ] && ok "byte: tp 2 --no-cache = one rank's cache" || bad "byte: tp 2 --no-cache '$g'"
refused "np 3 for tp 2" 3 "need 2 ranks, launched with 3" -- "${MPIRUN[@]}" -np 3 "${G[@]}" --tp 2 --tokens 2
refused "tp 8 over 4 heads" 8 "tp 8 must divide the heads 4" -- "${MPIRUN[@]}" -np 8 "${G[@]}" --tp 8 --tokens 2
refused "pp 3 over 2 layers" 3 "pp 3 is more pipeline stages than the checkpoint's 2 layers" -- "${MPIRUN[@]}" -np 3 "${G[@]}" --pp 3 --tokens 2
refused "no-cache under pp 2" 2 "no-cache" -- "${MPIRUN[@]}" -np 2 "${G[@]}" --pp 2 --no-cache --tokens 2
refused "tp 2 on one rank" 1 "need 2 ranks, launched with 1" -- "${G[@]}" --tp 2 --tokens 2

# a Mixture-of-Experts byte model (4 experts, top-2, every block MoE), trained with capacity
# factor 1.0; generate routes every token dropless on every layout, so the cached decoder, the
# whole window (--no-cache), PyTorch's float64 forward (gen_ref.py: torch_ref.py's MoE) and every
# tp x pp layout (all experts on every rank) pick the same tokens
"$BIN" train --model tiny --layers 2 --d-model 64 --heads 4 --seq-len 64 --batch 8 --steps 300 \
  --lr 1e-2 --threads 1 --quiet --experts 4 --top-k 2 --capacity-factor 1.0 --data "$TMP/rep.bin" \
  --save "$TMP/moe" >/dev/null 2>&1 || bad "training the MoE model"
GM=("$BIN" generate --checkpoint "$TMP/moe" --threads 1 --prompt "Call me Ishmael. Some")
mc=$("${GM[@]}" --temperature 0 --tokens 40 --ids)
mf=$("${GM[@]}" --temperature 0 --tokens 40 --ids --no-cache)
[ "$(tr ' ' '\n' <<<"$mc" | sort -u | wc -l)" -gt 5 ] && [ "$mc" = "$mf" ] \
  && ok "moe: cached greedy = full forward (40 tokens): $mc" || bad "moe: cached '$mc' != full '$mf'"
ref=$("$PY" "$HERE/gen_ref.py" "$TMP/moe" "$TMP/prompt.bin" 40)
[ "$mc" = "$ref" ] && ok "moe: greedy = PyTorch's greedy token for token" || bad "moe: mptrain '$mc' != torch '$ref'"
ms1=$("${GM[@]}" --tokens 100 --ids --seed 9 --top-p 0.9)
for lay in "2 1" "1 2" "2 2"; do
  set -- $lay; M=("${MPIRUN[@]}" -np $(($1 * $2)) "${GM[@]}" --tp "$1" --pp "$2")
  g=$("${M[@]}" --temperature 0 --tokens 40 --ids 2>"$TMP/me")
  s=$("${M[@]}" --tokens 100 --ids --seed 9 --top-p 0.9 2>>"$TMP/me")
  [ "$g" = "$mc" ] && [ "$s" = "$ms1" ] && ok "moe: tp $1 pp $2 = one rank (greedy, 100 sampled tokens past the positions)" \
    || bad "moe: tp $1 pp $2: greedy '$g' / '$mc', sampled '$s' / '$ms1': $(head -c 300 "$TMP/me")"
done
g=$("${MPIRUN[@]}" -np 2 "${GM[@]}" --tp 2 --temperature 0 --tokens 40 --ids --no-cache 2>&1)
[ "$g" = "$mc" ] && ok "moe: tp 2 --no-cache = one rank's cache" || bad "moe: tp 2 --no-cache '$g'"
refused "moe: --ep 2" 2 "takes no --ep 2: drop --ep" -- "${MPIRUN[@]}" -np 2 "${GM[@]}" --ep 2 --tokens 2

# the decoder's logits on tp 2, pp 2 and tp 2 x pp 2 (tests/mpi_decode.c, dense and MoE): equal to
# the same tp layout's training forward within 1e-5, and on pp stages to pipeline 1 bit for bit
for lay in "2 2" "2 1" "4 2"; do
  set -- $lay
  if OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 timeout -k 5 120 "${MPIRUN[@]}" -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -np "$1" "$(dirname "$BIN")/tests/mpi_decode" "$2" >"$TMP/md" 2>&1; then
    ok "mpi_decode on $1 ranks, tp $2: $(grep -c 'decoder = training forward' "$TMP/md") logit comparisons, $(tail -1 "$TMP/md")"
  else bad "mpi_decode on $1 ranks, tp $2: $(grep -m3 FAIL "$TMP/md") $(tail -3 "$TMP/md")"; fi
done

# a GPT-2-vocabulary model on documents that end after a few tokens: it learns <|endoftext|>
mkdir -p "$TMP/docs"
for i in $(seq 1 300); do printf 'the cat sat on the mat.' > "$TMP/docs/d$(printf %03d "$i").txt"; done
"$BIN" tokenize --in "$TMP/docs" --out "$TMP/cat.bin" --tokenizer gpt2 >/dev/null || bad "tokenize docs"
"$BIN" train --model tiny --vocab 50257 --layers 2 --d-model 32 --heads 2 --seq-len 16 --batch 8 \
  --steps 60 --lr 1e-2 --threads 1 --quiet --data "$TMP/cat.bin" --save "$TMP/gpt2" >/dev/null 2>&1 \
  || bad "training the gpt2-vocabulary model"
printf 'the cat' > "$TMP/p2.txt"
"$BIN" tokenize --in "$TMP/p2.txt" --out "$TMP/p2.bin" --tokenizer gpt2 >/dev/null || bad "tokenize the prompt"
G2=("$BIN" generate --checkpoint "$TMP/gpt2" --threads 1 --prompt "the cat" --temperature 0)
ids=$("${G2[@]}" --tokens 30 --ids)
ref=$("$PY" "$HERE/gen_ref.py" "$TMP/gpt2" "$TMP/p2.bin" 30)
n=$(wc -w <<<"$ids")
[ "${ids##* }" = 50256 ] && [ "$n" -lt 30 ] && ok "gpt2: stops at <|endoftext|> after $n tokens: $ids" \
  || bad "gpt2: no stop at <|endoftext|>: $ids"
[ "$ids" = "$ref" ] && ok "gpt2: greedy = PyTorch's greedy token for token" || bad "gpt2: mptrain '$ids' != torch '$ref'"
for lay in "2 1" "2 2"; do
  set -- $lay
  m=$("${MPIRUN[@]}" -np $(($1 * $2)) "${G2[@]}" --tp "$1" --pp "$2" --tokens 30 --ids 2>&1)
  ms=$("${MPIRUN[@]}" -np $(($1 * $2)) "${G2[@]}" --tp "$1" --pp "$2" --tokens 30 --ids --temperature 1 --seed 4 --no-stop 2>&1)
  os=$("${G2[@]}" --tokens 30 --ids --temperature 1 --seed 4 --no-stop)
  [ "$m" = "$ids" ] && [ "$ms" = "$os" ] && ok "gpt2 (vocabulary padded to 64 x tp): tp $1 pp $2 = one rank, greedy and sampled" \
    || bad "gpt2 tp $1 pp $2: greedy '$m' / '$ids', sampled '$ms' / '$os'"
done
nostop=$("${G2[@]}" --tokens 30 --ids --no-stop | wc -w)
[ "$nostop" = 30 ] && ok "--no-stop goes on past <|endoftext|>" || bad "--no-stop gave $nostop tokens"
text=$("${G2[@]}" --tokens 30)
[[ "$text" == "the cat"* ]] && [ "$(wc -l <<<"$text")" = 1 ] && ok "gpt2 text, ended at <|endoftext|>: '$text'" \
  || bad "gpt2 text: '$text'"
for v in 0 -0.5 1.5 nan inf; do
  "${G[@]}" --tokens 2 --top-p "$v" >/dev/null 2>"$TMP/e"; code=$?
  [ $code = 2 ] && grep -q "mptrain: error: .*--top-p" "$TMP/e" && ok "--top-p $v: exit 2" || bad "--top-p $v: exit $code $(cat "$TMP/e")"
done
finish
