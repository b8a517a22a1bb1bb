#!/usr/bin/env bash
# valgrind_cli.sh — the mptrain tool itself, one rank, under valgrind memcheck: the commands that
# run the most library code (tokenize byte and gpt2, train with sharded checkpoints and
# validation, resume, a MoE + bf16 + recompute run, generate with and without the key/value
# cache, convert both ways (Hugging Face export and import), plan, simulate, schedule, plot),
# and four refused bad inputs (their error paths).
# Each command is one check: exit status 0 and a memcheck log with no error (invalid access,
# use of an uninitialised value, definite leak); any memcheck error makes valgrind exit 99
# (--error-exitcode), so the check fails and prints the log's errors. Two more checks show the
# runs under memcheck still compute what they should: resume ends bit-identical to the
# uninterrupted run, and export then import gives back the same shard file.
# Not a t_*.sh script: CMakeLists.txt adds it to ctest (as t_valgrind_cli) only in the
# MPT_VALGRIND build (make test-valgrind), whose environment caps oneDNN at AVX
# (tests/valgrind.supp), sets OMP_WAIT_POLICY=PASSIVE and MPT_TEST_SMALL=1.
# MPI: mptrain calls MPI_Init even on one rank; it runs here as a singleton (no mpirun): Open MPI
# forks its own daemon, which valgrind does not follow (no --trace-children). Open MPI's own
# allocations kept until exit are suppressed by tests/valgrind_mpi.supp, whose two entries
# match only leaks allocated inside Open MPI's MPI_Init or MPI_Finalize, never mptrain's.
# Usage: bash tests/valgrind_cli.sh BUILD_DIR (from the source directory)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
[ -x "$BIN" ] || { echo "FAIL: $BIN is missing"; exit 1; }
export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
VG=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=40
    --suppressions="$HERE/valgrind.supp" --suppressions="$HERE/valgrind_mpi.supp")
# vg_case_ NAME RC WANT command args...: one check, mptrain under memcheck (log $TMP/vg.NAME.log):
# exit status RC (valgrind's 99 instead when memcheck found an error), no memcheck error, and for
# RC 2 a line "mptrain: error: ...WANT..." on stderr. On failure, the log's errors.
vg_case_() {
  local name=$1 want_rc=$2 want=$3; shift 3
  local log="$TMP/vg.$name.log" t0 rc errs said=1
  t0=$(date +%s)
  "${VG[@]}" --log-file="$log" "$BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"; rc=$?
  errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -1)
  [ "$want_rc" = 0 ] || grep -q "^mptrain: error: .*$want" "$TMP/$name.err" || said=0
  if [ "$rc" = "$want_rc" ] && [ "${errs:-x}" = 0 ] && [ "$said" = 1 ]; then
    if [ "$want_rc" = 0 ]; then
      ok "$name: clean ($(( $(date +%s) - t0 )) s wall, $(grep -m1 'total heap usage' "$log" | sed 's/.*usage: //'))"
    else ok "$name: refused, clean: $(grep -m1 '^mptrain: error: ' "$TMP/$name.err" | cut -c1-120)"; fi
  else
    bad "$name: exit $rc (want $want_rc), memcheck errors ${errs:-?} (mptrain $*)"
    sed -n '/^==[0-9]*== \(Invalid\|Conditional\|Use of\|Syscall\|Mismatched\|.*definitely lost\)/,/^==[0-9]*== $/p' "$log" | head -60
    grep -v '^hwloc\|^May be\|^and reloading' "$TMP/$name.err" | tail -5
  fi
}
vg() { vg_case_ "$1" 0 "" "${@:2}"; }                # vg NAME command args...: runs cleanly
vg_refused() { vg_case_ "$1" 2 "$2" "${@:3}"; }      # vg_refused NAME WANT command...: bad input

printf 'Call me Ishmael. Some years ago, never mind how long precisely, having little money. %.0s' {1..40} >"$TMP/a.txt"
MODEL=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --threads 2 --quiet)

vg tokenize tokenize --in "$TMP/a.txt" --out "$TMP/a.bin"
vg tokenize_gpt2 tokenize --in "$TMP/a.txt" --out "$TMP/g.bin" --tokenizer gpt2
# sharded checkpoints (every rank's slices and a manifest), validation, resume from step 2
vg train train "${MODEL[@]}" --data "$TMP/a.bin" --steps 4 --save "$TMP/ck" --save-every 2 \
   --save-format sharded --log "$TMP/a.jsonl" --eval-every 2 --eval-batches 1 --val-data "$TMP/a.bin"
vg resume train "${MODEL[@]}" --data "$TMP/a.bin" --steps 4 --save "$TMP/rs" --save-format sharded \
   --resume "$TMP/ck/step_000002" --log "$TMP/b.jsonl" --eval-every 2 --eval-batches 1 --val-data "$TMP/a.bin"
if cmp -s "$TMP/ck/step_000004/shard-00000.bin" "$TMP/rs/step_000004/shard-00000.bin"; then
  ok "resumed final state bit-identical to the uninterrupted run"
else bad "resumed final state differs from the uninterrupted run"; fi
# Mixture-of-Experts (top-2 of 2), bf16 GEMMs, full recomputation, 2 micro-batches, OpenBLAS,
# warm-up, --on-nan skip, a single-file checkpoint
vg train_moe_bf16 train "${MODEL[@]}" --data "$TMP/a.bin" --steps 2 --experts 2 --top-k 2 \
   --dtype bf16 --recompute full --microbatches 2 --gemm openblas --warmup 1 --on-nan skip \
   --save "$TMP/moe"
vg generate generate --checkpoint "$TMP/ck" --prompt "Call me" --tokens 8 --threads 2
# Hugging Face export (sharded -> one directory) and import (-> sharded)
vg convert_export convert --in "$TMP/ck" --out "$TMP/hf" --to single
vg convert_import convert --in "$TMP/hf/latest" --out "$TMP/sh" --to sharded
if cmp -s "$TMP/ck/step_000004/shard-00000.bin" "$TMP/sh/step_000004/shard-00000.bin"; then
  ok "export then import gives back the same shard"
else bad "export then import changed the shard"; fi
vg generate_hf generate --checkpoint "$TMP/hf/latest" --prompt "Call me" --tokens 4 --threads 2 \
   --no-cache --temperature 0
# bad input: a token file with a wrong magic, a truncated shard, a config.json that is not JSON,
# a truncated safetensors file
head -c 4096 /dev/urandom >"$TMP/junk.bin"
vg_refused refused_data "bad magic" train "${MODEL[@]}" --data "$TMP/junk.bin" --steps 1
cp -r "$TMP/ck/step_000002" "$TMP/trunc" && truncate -s 1000 "$TMP/trunc/shard-00000.bin"
vg_refused refused_shard "truncated" train "${MODEL[@]}" --data "$TMP/a.bin" --steps 4 --resume "$TMP/trunc"
cp -rL "$TMP/hf/latest" "$TMP/badcfg" && echo '{"n_layer": 2, "n_embd": ' >"$TMP/badcfg/config.json"
vg_refused refused_config "JSON" generate --checkpoint "$TMP/badcfg" --tokens 2 --threads 2
cp -rL "$TMP/hf/latest" "$TMP/badst" && truncate -s 3000 "$TMP/badst/model.safetensors"
vg_refused refused_safetensors "truncated" convert --in "$TMP/badst" --out "$TMP/x" --to sharded
vg plan plan --model tiny --layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --pp 2 --microbatches 2 --json
vg simulate simulate --model gpt2-124m --dp 2 --tp 2 --pp 2 --microbatches 4 --schedule 1f1b
vg schedule schedule --pp 4 --microbatches 8 --schedule zb-h1 --svg "$TMP/s.svg"
vg plot plot "$TMP/a.jsonl" "$TMP/b.jsonl" --svg "$TMP/p.svg"
finish
