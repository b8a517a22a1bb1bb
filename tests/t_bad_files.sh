#!/usr/bin/env bash
# t_bad_files.sh — hostile input files (issue 12, item 5): damaged token files, checkpoints and
# tokenizer files, each made by tests/hostile_files.py from a good one (no damaged binary is
# committed). Every case must end cleanly (tests/lib.sh `refused`): exit status 2, a message on
# stderr naming the problem ("mptrain: error: ... <WANT>"), from every rank, within 20 s, no
# core file. Train cases run on 1 rank and on 4 ranks (dp 2 x pp 2).
#
#   token files   truncated (in the tokens, in the header), empty, bad magic, bad version, a
#                 count past the end, a negative count, a token >= the vocabulary, a directory,
#                 a missing file                                         (train --data)
#   checkpoints   truncated, one bit flipped (checksum), manifest not JSON, manifest of another
#                 model, a listed file missing, a dangling `latest`; and with the manifest
#                 refreshed so that the reader meets the damage itself: header not JSON, header
#                 length past the file, an empty weights file, offsets out of range, offsets
#                 overlapping, a wrong dtype, a wrong shape, a missing tensor, an extra tensor,
#                 an lm_head that is not wte in a tied model, the config of another model, an
#                 optimizer tensor of the wrong shape, trainer state with a negative step or
#                 not JSON                                               (train --resume)
#                 the weights-only cases again without a manifest        (train --init-from)
#   model configs config.json not JSON, empty, an array, another model_type, heads not dividing
#                 n_embd, vocab_size negative / a string / fractional / 1e300, n_positions 0,
#                 an unsupported LayerNorm epsilon or activation, a missing file (train --model)
#   tokenizer     encoder.json truncated, empty, not an object, missing, a bad id, an id far
#                 past the vocabulary, a token missing (a gap in the ids); vocab.bpe with a malformed line, a
#                 merge of unknown pieces, binary, missing    (tokenize --tokenizer gpt2, and
#                 train with the default corpus, which tokenizes on first use, on 4 ranks)
# Usage: bash tests/t_bad_files.sh BUILD_DIR   (from the repo root, as ctest runs it)
set -uo pipefail
REFUSED_JOBS=${REFUSED_JOBS:-2}   # two cases at a time, each within its own 20 s (tests/lib.sh)
source "$(dirname "$0")/lib.sh"
BIN=$(cd "$(dirname "$BIN")" && pwd)/mptrain
HOSTILE=(/usr/bin/python3 "$HERE/hostile_files.py")
BPE="$HERE/../.cache/gpt2-bpe"

printf 'It is a truth universally acknowledged, that a single man in possession. %.0s' {1..40} >"$TMP/text.txt"
"$BIN" tokenize --in "$TMP/text.txt" --out "$TMP/data.bin" >/dev/null || bad "tokenize the test data"
BASE=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 16 --batch 4 --steps 1 --threads 1 --quiet)
ON4=("${MPIRUN[@]}" -np 4 "$BIN" train "${BASE[@]}" --dp 2 --pp 2)

# both NAME WANT TRAIN-ARGS...: the train command on 1 rank and on 4 ranks
both() {
  local what=$1 want=$2; shift 2
  refused "$what (1 rank)" 1 "$want" -- "$BIN" train "${BASE[@]}" "$@"
  refused "$what (4 ranks)" 4 "$want" -- "${ON4[@]}" "$@"
}

# --- token files ---------------------------------------------------------------------------------
tok_case() { # DAMAGE WANT
  "${HOSTILE[@]}" tok "$TMP/data.bin" "$TMP/tok-$1.bin" "$1" || bad "make token file $1"
  both "token file: $1" "$2" --data "$TMP/tok-$1.bin"
}
tok_case truncated "truncated"
tok_case truncated-header "shorter than the 1024-byte header"
tok_case empty "shorter than the 1024-byte header"
tok_case bad-magic "bad magic number"
tok_case bad-version "version 2 is not supported"
tok_case count-past-end "truncated or corrupt"
tok_case count-negative "truncated or corrupt"
tok_case token-past-vocab "token 300 at position 5"
mkdir -p "$TMP/a-directory.bin"
both "token file: a directory" "not a regular file" --data "$TMP/a-directory.bin"
both "token file: missing" "cannot open" --data "$TMP/no-such-file.bin"

# --- checkpoints ---------------------------------------------------------------------------------
"$BIN" train "${BASE[@]}" --data "$TMP/data.bin" --save "$TMP/good" >/dev/null 2>&1 || bad "a good checkpoint"
"$BIN" train "${BASE[@]}" --d-model 64 --data "$TMP/data.bin" --save "$TMP/other" >/dev/null 2>&1 ||
  bad "another model's checkpoint"
GOOD="$TMP/good/step_000001" OTHER="$TMP/other/step_000001"
ck_case() { # DAMAGE WANT [--init-from]: resume from the damaged copy
  local dst="$TMP/ck-$1${3:-}"
  "${HOSTILE[@]}" ckpt "$GOOD" "$dst" "$1" "$OTHER" || bad "make checkpoint $1"
  if [ "${3:-}" = "--init-from" ]; then
    rm -f "$dst/manifest.json" "$dst/trainer_state.json" "$dst/optimizer.safetensors"
    both "weights (Hugging Face directory): $1" "$2" --data "$TMP/data.bin" --steps 2 --init-from "$dst"
  else
    both "checkpoint: $1" "$2" --data "$TMP/data.bin" --steps 2 --resume "$dst"
  fi
}
ck_case truncated "the manifest says"
ck_case flipped-byte "checksum mismatch"
ck_case manifest-not-json "manifest.json: not a readable JSON object"
ck_case manifest-other-model "the manifest says"
ck_case missing-optimizer "optimizer.safetensors: missing"
ck_case latest-dangling "not a checkpoint directory"
ck_case header-not-json "header is not valid JSON"
ck_case header-length-huge "header length"
ck_case empty-weights "too short for a safetensors file"
ck_case offsets-out-of-range "run past the"
ck_case offsets-overlap "overlap"
ck_case wrong-dtype "dtype I32"
ck_case wrong-shape "has shape"
ck_case missing-tensor "missing tensor"
ck_case extra-tensor "unexpected tensor"
ck_case untied-head-in-tied-model "differs from wte"
# another model's config.json beside these weights: the run's --d-model 32 (BASE) differs from
# the config's 64, which the command line refuses first (a run from a checkpoint takes its model)
ck_case config-other-model "has shape\|--d-model 32, but the checkpoint of"
ck_case optimizer-wrong-shape "has shape"
ck_case state-negative-step "step, seed and rng_counter"
ck_case state-not-json "trainer_state.json: not a readable JSON object"
for d in header-not-json offsets-out-of-range offsets-overlap wrong-dtype wrong-shape missing-tensor \
         extra-tensor untied-head-in-tied-model; do
  ck_case "$d" "$(case $d in header-not-json) echo "not valid JSON";; offsets-out-of-range) echo "run past";;
           offsets-overlap) echo overlap;; wrong-dtype) echo "dtype I32";; wrong-shape) echo "has shape";;
           missing-tensor) echo "missing tensor";; extra-tensor) echo "unexpected tensor";;
           untied-head-in-tied-model) echo "differs from wte";; esac)" --init-from
done

# --- model config files (train --model FILE.json) ------------------------------------------------
cfg_case() { # NAME WANT TEXT [4]: a config.json holding TEXT; with 4, on 4 ranks as well
  printf '%s' "$3" >"$TMP/cfg-$1.json"
  refused "model config: $1 (1 rank)" 1 "$2" -- "$BIN" train "${CBASE[@]}" --model "$TMP/cfg-$1.json"
  [ "${4:-}" = 4 ] && refused "model config: $1 (4 ranks)" 4 "$2" -- "${MPIRUN[@]}" -np 4 "$BIN" train \
    "${CBASE[@]}" --dp 2 --pp 2 --model "$TMP/cfg-$1.json"
}
CBASE=(--seq-len 16 --batch 4 --steps 1 --threads 1 --quiet --data "$TMP/data.bin")   # no overrides
G='"model_type":"gpt2","n_positions":16,"n_layer":2'
cfg_case not-json "not a JSON object" '{"model_type": "gpt2", "n_embd": ' 4
cfg_case empty "not a JSON object" ''
cfg_case array "not a JSON object" '[1, 2]'
cfg_case other-model-type 'model_type must be "gpt2"' '{"model_type":"llama","vocab_size":256,"n_positions":16,"n_embd":32,"n_layer":2,"n_head":2}' 4
cfg_case heads-not-dividing "not divisible by heads 3" "{$G,\"vocab_size\":256,\"n_embd\":32,\"n_head\":3}"
cfg_case vocab-negative '"vocab_size" must be an integer' "{$G,\"vocab_size\":-5,\"n_embd\":32,\"n_head\":2}"
cfg_case vocab-string '"vocab_size" must be an integer' "{$G,\"vocab_size\":\"256\",\"n_embd\":32,\"n_head\":2}"
cfg_case vocab-fraction '"vocab_size" must be an integer' "{$G,\"vocab_size\":256.5,\"n_embd\":32,\"n_head\":2}"
cfg_case vocab-1e300 '"vocab_size" must be an integer' "{$G,\"vocab_size\":1e300,\"n_embd\":32,\"n_head\":2}"
cfg_case positions-0 '"n_positions" must be an integer' '{"model_type":"gpt2","vocab_size":256,"n_positions":0,"n_embd":32,"n_layer":2,"n_head":2}'
cfg_case epsilon "layer_norm_epsilon -1 is not supported" "{$G,\"vocab_size\":256,\"n_embd\":32,\"n_head\":2,\"layer_norm_epsilon\":-1}"
cfg_case activation 'activation_function "relu" is not supported' "{$G,\"vocab_size\":256,\"n_embd\":32,\"n_head\":2,\"activation_function\":\"relu\"}"
refused "model config: a missing file" 1 "unknown model" -- "$BIN" train "${CBASE[@]}" \
  --model "$TMP/no-such-config.json"

# --- an error only one pipeline stage finds reaches every rank (issue 12, item 3): --mem-limit
# between the two stages' plans (the last stage holds the head's activations): stage 1 finds it,
# every rank of dp 2 x pp 2 exits 2 with its message (a corrupt shard read by one stage only is
# in t_sharded, a non-finite loss on the last rank in t_nan)
"${ON4[@]}" --data "$TMP/data.bin" --steps 0 --log "$TMP/plans.jsonl" >/dev/null 2>&1 || bad "a run for the plans"
LIMIT=$(/usr/bin/python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]['ranks']
p=sorted({int(x['planned_mem_bytes']) for x in r}); print((p[0]+p[-1])//2 if len(p) > 1 else 0)" "$TMP/plans.jsonl" 2>/dev/null)
if [ "${LIMIT:-0}" -gt 0 ]; then
  refused "--mem-limit $LIMIT: only pipeline stage 1 exceeds it (4 ranks)" 4 "stage 1 needs more than --mem-limit" -- \
    "${ON4[@]}" --data "$TMP/data.bin" --mem-limit "$LIMIT"
else bad "the two stages plan the same bytes: no limit between them ($LIMIT)"; fi

# --- tokenizer files -----------------------------------------------------------------------------
# MPTRAIN_CACHE points the tool at a cache holding the damaged gpt2-bpe/ (and the real corpus).
# `tokenize` never starts MPI, so under ASan it keeps the fast malloc unwinder: the Makefile's
# full one only serves to name OpenMPI's unloaded components in tests/lsan.supp, and costs
# ~1.5 s of CPU over the 100 000 allocations of loading the GPT-2 vocabulary. Leaks are still
# checked.
NO_MPI_ASAN=${ASAN_OPTIONS:-}; NO_MPI_ASAN=${NO_MPI_ASAN//fast_unwind_on_malloc=0/fast_unwind_on_malloc=1}
bpe_case() { # DAMAGE WANT
  local cache="$TMP/cache-$1"
  mkdir -p "$cache"
  "${HOSTILE[@]}" bpe "$BPE" "$cache/gpt2-bpe" "$1" || bad "make tokenizer files $1"
  refused "tokenizer files: $1 (tokenize)" 1 "$2" -- env MPTRAIN_CACHE="$cache" ASAN_OPTIONS="$NO_MPI_ASAN" \
    "$BIN" tokenize --tokenizer gpt2 --in "$TMP/text.txt" --out "$TMP/bpe-$1.bin"
}
bpe_case encoder-truncated "encoder.json: not a JSON object of token -> id"
bpe_case encoder-empty "encoder.json"
bpe_case encoder-not-object "encoder.json: not a JSON object of token -> id"
bpe_case encoder-missing "encoder.json"
bpe_case encoder-bad-id "encoder.json: entry"
bpe_case encoder-id-gap "Ġzzzzzz"
bpe_case encoder-missing-byte "ids up to 50256"
bpe_case merges-bad-line "vocab.bpe line"
bpe_case merges-unknown-token "vocab.bpe"
bpe_case merges-binary "vocab.bpe"
bpe_case merges-missing "vocab.bpe"
# train without --data tokenizes the default corpus on first use, on every rank
cache="$TMP/cache-train"; mkdir -p "$cache"
ln -s "$HERE/../.cache/moby-dick" "$cache/moby-dick"
"${HOSTILE[@]}" bpe "$BPE" "$cache/gpt2-bpe" merges-bad-line || bad "make tokenizer files for train"
refused "tokenizer files: vocab.bpe bad line (train, default corpus, 4 ranks)" 4 "vocab.bpe line" -- \
  env MPTRAIN_CACHE="$cache" "${MPIRUN[@]}" -np 4 -x MPTRAIN_CACHE "$BIN" train "${BASE[@]}" \
  --vocab 50257 --dp 2 --pp 2

finish
