#!/usr/bin/env bash
# t_sharded.sh — sharded checkpoints (issue 12, item 1; src/train/ckpt_shard.h) and
# `mptrain convert` (src/cli/cmd_convert.c):
#   - a 4-rank save (tp 2 x pp 2) writes one shard file per rank and an index; converted to
#     the single format it is byte for byte the single-format save of the same run (weights
#     and AdamW moments), and converting that back and forth changes nothing;
#   - resuming under the same layout continues bit-identically to resuming from the single
#     format; under other layouts (one rank, dp 2 x pp 2 ZeRO 1, dp 4 ZeRO 3, tp 2 x dp 2
#     ZeRO 2, dp 2 x cp 2) it matches the one-rank continuation within 1e-5 (losses and final
#     weights, tests/compare_runs.py): weights, AdamW state, step, LR schedule and data position
#     carry over;
#   - ZeRO-3 and cp saves (slices cut inside rows, on every rank) convert to the single save;
#   - MoE under ep 2 (each ep rank writes its own experts) converts to the single save and
#     resumes under ep 4, ep 2 x pp 2 and dp 2 within 1e-5; so does dp 4 x ep 2 x ZeRO-3 (each
#     expert sliced over its edp group of 2), resumed under ep 4 x ZeRO-0; a dp 2 x cp 2 save
#     resumes under cp 4 within 1e-5;
#   - each rank checksums the shards it writes (the manifest holds their hashes) and the shards
#     it reads: rank 2's shard corrupt is found by the ranks that read it and all ranks exit 2;
#   - killed during a sharded save (a rank before or after writing its shard, rank 0 while it
#     writes the index and publishes), `latest` is the previous or the new step and resuming
#     reaches the same weights as a run never killed;
#   - bf16 (tp 2 x pp 2) and the schedules that place two chunks per rank (interleaved v 2,
#     zb-v): the sharded save converts to the single save byte for byte and resumes under
#     another layout or schedule (bf16 -> pp 2, interleaved -> zb-v, zb-v -> interleaved x dp 2)
#     within 1e-5 of one rank resuming the single save;
#   - damaged sharded checkpoints (tests/hostile_files.py shard ...) exit 2 with their message,
#     on 1 and on 4 ranks.
# Usage: bash tests/t_sharded.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
BIN=$(cd "$(dirname "$BIN")" && pwd)/mptrain
KILL="$(cd "$1" && pwd)/tests/libkillpoint.so"
HOSTILE=(/usr/bin/python3 "$HERE/hostile_files.py")
export ASAN_OPTIONS="verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

printf 'Whether I shall turn out to be the hero of my own life, or whether that station. %.0s' {1..60} >"$TMP/text.txt"
"$BIN" tokenize --in "$TMP/text.txt" --out "$TMP/data.bin" >/dev/null || bad "tokenize the test data"
BASE=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 16 --batch 8 --microbatches 2
      --threads 1 --quiet --data "$TMP/data.bin" --lr 3e-3)
M4=("${MPIRUN[@]}" -np 4)
TPPP=(--tp 2 --pp 2)
run() { # LOGNAME command...: runs quietly, reports a failure
  local name=$1; shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || { bad "$name: $(grep -v PMIX "$TMP/$name.err" | tail -3)"; return 1; }
}

# --- the same run saved both ways at step 2
run save-sharded "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 2 --save "$TMP/sh" --save-format sharded
run save-single "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 2 --save "$TMP/si"
S="$TMP/sh/step_000002"
n=$(ls "$S"/shard-*.bin 2>/dev/null | wc -l)
if [ "$n" = 4 ] && [ -f "$S/shards.json" ] && [ ! -e "$S/model.safetensors" ]; then ok "sharded save: 4 shard files and an index, no model.safetensors"
else bad "sharded save: $n shard files: $(ls "$S")"; fi
run conv1 "$BIN" convert --in "$TMP/sh" --out "$TMP/conv1"
for f in model.safetensors optimizer.safetensors; do
  if cmp -s "$TMP/conv1/step_000002/$f" "$TMP/si/step_000002/$f"; then ok "convert sharded -> single: $f identical to the single-format save"
  else bad "convert sharded -> single: $f differs from the single-format save"; fi
done
run conv2 "$BIN" convert --in "$TMP/conv1" --out "$TMP/conv2"
run conv3 "$BIN" convert --in "$TMP/conv2" --out "$TMP/conv3"
[ -f "$TMP/conv2/step_000002/shards.json" ] && cmp -s "$TMP/conv3/step_000002/model.safetensors" "$TMP/si/step_000002/model.safetensors" &&
  cmp -s "$TMP/conv3/step_000002/optimizer.safetensors" "$TMP/si/step_000002/optimizer.safetensors" &&
  ok "convert single -> sharded -> single: unchanged" || bad "convert single -> sharded -> single changed the checkpoint"

# --- same layout: bit-identical continuation
cp -a "$TMP/sh" "$TMP/sh-same"; cp -a "$TMP/si" "$TMP/si-same"; cp -a "$TMP/conv2" "$TMP/conv2-same"
run same-sh "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 5 --resume "$TMP/sh-same" --save "$TMP/sh-same"
run same-si "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 5 --resume "$TMP/si-same" --save "$TMP/si-same"
run same-c2 "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 5 --resume "$TMP/conv2-same" --save "$TMP/conv2-same"
REF5="$TMP/si-same/step_000005/model.safetensors"
cmp -s "$TMP/sh-same/step_000005/model.safetensors" "$REF5" && ok "same layout: resumed from the sharded save, step 5 bit-identical" ||
  bad "same layout: resumed from the sharded save, step 5 differs"
cmp -s "$TMP/conv2-same/step_000005/model.safetensors" "$REF5" && ok "same layout: resumed from a converted (one-shard) checkpoint, step 5 bit-identical" ||
  bad "same layout: resumed from the converted checkpoint, step 5 differs"

# --- other layouts, against one rank resuming from the single save
cp -a "$TMP/si" "$TMP/one"
run one "$BIN" train "${BASE[@]}" --steps 5 --resume "$TMP/one" --save "$TMP/one" --log "$TMP/one.jsonl"
other() { # NAME NP LAYOUT...
  local name=$1 np=$2; shift 2
  local launch=("$BIN"); [ "$np" -gt 1 ] && launch=("${MPIRUN[@]}" -np "$np" "$BIN")
  run "$name" "${launch[@]}" train "${BASE[@]}" "$@" --steps 5 --resume "$S" --save "$TMP/$name" \
    --log "$TMP/$name.jsonl" || return
  if "${CMP[@]}" "$TMP/$name.jsonl" "$TMP/$name/step_000005/model.safetensors" "$TMP/one.jsonl" \
       "$TMP/one/step_000005/model.safetensors" --rtol 1e-5 >"$TMP/$name.cmp" 2>&1
  then ok "sharded tp 2 x pp 2 -> $name: $(tail -1 "$TMP/$name.cmp" | sed 's/^ *//')"
  else bad "sharded tp 2 x pp 2 -> $name: $(tail -4 "$TMP/$name.cmp")"; fi
}
other one-rank 1
other dp2-pp2-zero1 4 --dp 2 --pp 2 --zero 1
other dp4-zero3 4 --dp 4 --zero 3
other tp2-dp2-zero2 4 --tp 2 --dp 2 --zero 2
other dp2-cp2 4 --dp 2 --cp 2

# --- slices cut inside rows (ZeRO 3 over 4 ranks, cp): sharded = single after convert
for L in "--dp 4 --zero 3" "--dp 2 --cp 2 --zero 1"; do
  tag=$(echo "$L" | tr -d ' -')
  run "z-sh-$tag" "${M4[@]}" "$BIN" train "${BASE[@]}" $L --steps 2 --save "$TMP/z-sh-$tag" --save-format sharded
  run "z-si-$tag" "${M4[@]}" "$BIN" train "${BASE[@]}" $L --steps 2 --save "$TMP/z-si-$tag"
  run "z-cv-$tag" "$BIN" convert --in "$TMP/z-sh-$tag" --out "$TMP/z-cv-$tag"
  if cmp -s "$TMP/z-cv-$tag/step_000002/model.safetensors" "$TMP/z-si-$tag/step_000002/model.safetensors" &&
     cmp -s "$TMP/z-cv-$tag/step_000002/optimizer.safetensors" "$TMP/z-si-$tag/step_000002/optimizer.safetensors"
  then ok "$L: the sharded save converts to the single save, byte for byte ($(python3 -c "import json,sys; print(sum(len(t['slices']) for t in json.load(open(sys.argv[1]))['tensors']))" "$TMP/z-sh-$tag/step_000002/shards.json") slices)"
  else bad "$L: the sharded save does not convert to the single save"; fi
done

# --- Mixture-of-Experts: a sharded save under ep 2 (each ep rank's experts in its own shard)
# converts to the single save; resumed under ep 4, ep 2 x pp 2 and dp 2 without ep it matches
# one rank resuming the same checkpoint within 1e-5 (the aux loss is per micro-batch, so the
# one-rank reference runs dp x m micro-batches: tests/t_moe.sh)
MOE=(--experts 4 --top-k 2)
run moe-sh "${M4[@]}" "$BIN" train "${BASE[@]}" "${MOE[@]}" --dp 4 --ep 2 --steps 2 --save "$TMP/moe-sh" --save-format sharded
run moe-si "${M4[@]}" "$BIN" train "${BASE[@]}" "${MOE[@]}" --dp 4 --ep 2 --steps 2 --save "$TMP/moe-si"
run moe-cv "$BIN" convert --in "$TMP/moe-sh" --out "$TMP/moe-cv"
cmp -s "$TMP/moe-cv/step_000002/model.safetensors" "$TMP/moe-si/step_000002/model.safetensors" &&
  cmp -s "$TMP/moe-cv/step_000002/optimizer.safetensors" "$TMP/moe-si/step_000002/optimizer.safetensors" &&
  ok "MoE dp 4 x ep 2: the sharded save converts to the single save, byte for byte (every expert)" ||
  bad "MoE dp 4 x ep 2: the sharded save does not convert to the single save"
for m in 4 8; do
  run "moe-one$m" "$BIN" train "${BASE[@]}" "${MOE[@]}" --microbatches $m --steps 4 \
    --resume "$TMP/moe-si/step_000002" --save "$TMP/moe-one$m" --log "$TMP/moe-one$m.jsonl"
done
moe_other() { # NAME NP REF-M LAYOUT...
  local name=$1 np=$2 m=$3; shift 3
  run "$name" "${MPIRUN[@]}" -np "$np" "$BIN" train "${BASE[@]}" "${MOE[@]}" "$@" --steps 4 \
    --resume "$TMP/moe-sh/step_000002" --save "$TMP/$name" --log "$TMP/$name.jsonl" || return
  if "${CMP[@]}" "$TMP/$name.jsonl" "$TMP/$name/step_000004/model.safetensors" "$TMP/moe-one$m.jsonl" \
       "$TMP/moe-one$m/step_000004/model.safetensors" --rtol 1e-5 >"$TMP/$name.cmp" 2>&1
  then ok "sharded MoE ep 2 -> $name: $(tail -1 "$TMP/$name.cmp" | sed 's/^ *//')"
  else bad "sharded MoE ep 2 -> $name: $(tail -4 "$TMP/$name.cmp")"; fi
}
moe_other moe-dp4-ep4 4 8 --dp 4 --ep 4
moe_other moe-dp2-ep2-pp2 4 4 --dp 2 --ep 2 --pp 2
moe_other moe-dp2 2 4 --dp 2
# ZeRO-3 under dp 4 x ep 2 slices each expert (weights and AdamW state) over its edp group of
# 2 (parallel/dp.h): both edp ranks write their slices of it; the sharded save converts to the
# single save byte for byte and resumes under ep 4 x ZeRO-0 like one rank resuming the single
# save
MZ=("${MOE[@]}" --dp 4 --ep 2 --zero 3 --steps 2)
run mz-sh "${M4[@]}" "$BIN" train "${BASE[@]}" "${MZ[@]}" --save "$TMP/mz-sh" --save-format sharded
run mz-si "${M4[@]}" "$BIN" train "${BASE[@]}" "${MZ[@]}" --save "$TMP/mz-si"
run mz-cv "$BIN" convert --in "$TMP/mz-sh" --out "$TMP/mz-cv"
cmp -s "$TMP/mz-cv/step_000002/model.safetensors" "$TMP/mz-si/step_000002/model.safetensors" &&
  cmp -s "$TMP/mz-cv/step_000002/optimizer.safetensors" "$TMP/mz-si/step_000002/optimizer.safetensors" &&
  ok "MoE dp 4 x ep 2 x ZeRO-3 (experts sliced over edp): the sharded save converts to the single save, byte for byte" ||
  bad "MoE dp 4 x ep 2 x ZeRO-3: the sharded save does not convert to the single save"
run mz-one "$BIN" train "${BASE[@]}" "${MOE[@]}" --microbatches 8 --steps 4 \
  --resume "$TMP/mz-si/step_000002" --save "$TMP/mz-one" --log "$TMP/mz-one.jsonl"
run mz-ep4 "${M4[@]}" "$BIN" train "${BASE[@]}" "${MOE[@]}" --dp 4 --ep 4 --steps 4 \
  --resume "$TMP/mz-sh/step_000002" --save "$TMP/mz-ep4" --log "$TMP/mz-ep4.jsonl"
if "${CMP[@]}" "$TMP/mz-ep4.jsonl" "$TMP/mz-ep4/step_000004/model.safetensors" "$TMP/mz-one.jsonl" \
     "$TMP/mz-one/step_000004/model.safetensors" --rtol 1e-5 >"$TMP/mz.cmp" 2>&1
then ok "sharded MoE ep 2 x ZeRO-3 -> ep 4 x ZeRO-0: $(tail -1 "$TMP/mz.cmp" | sed 's/^ *//')"
else bad "sharded MoE ep 2 x ZeRO-3 -> ep 4 x ZeRO-0: $(tail -4 "$TMP/mz.cmp")"; fi
# ep over dp x cp (ep 2 over dp 2 x cp 2, ep 4 spanning cp): each expert written once, by its
# holder in dp x cp; the sharded save converts to the single save byte for byte
for L in "--dp 2 --cp 2 --ep 2" "--dp 2 --cp 2 --ep 4"; do
  tag=$(echo "$L" | tr -d ' -')
  run "mc-sh-$tag" "${M4[@]}" "$BIN" train "${BASE[@]}" "${MOE[@]}" $L --steps 2 --save "$TMP/mc-sh-$tag" --save-format sharded
  run "mc-si-$tag" "${M4[@]}" "$BIN" train "${BASE[@]}" "${MOE[@]}" $L --steps 2 --save "$TMP/mc-si-$tag"
  run "mc-cv-$tag" "$BIN" convert --in "$TMP/mc-sh-$tag" --out "$TMP/mc-cv-$tag"
  cmp -s "$TMP/mc-cv-$tag/step_000002/model.safetensors" "$TMP/mc-si-$tag/step_000002/model.safetensors" &&
    cmp -s "$TMP/mc-cv-$tag/step_000002/optimizer.safetensors" "$TMP/mc-si-$tag/step_000002/optimizer.safetensors" &&
    ok "MoE $L: the sharded save converts to the single save, byte for byte" ||
    bad "MoE $L: the sharded save does not convert to the single save"
done

# --- cp: a dp 2 x cp 2 sharded save resumed under cp 4 and on one rank (within 1e-5)
run cp-sh "${M4[@]}" "$BIN" train "${BASE[@]}" --dp 2 --cp 2 --steps 2 --save "$TMP/cp-sh" --save-format sharded
cp -a "$TMP/cp-sh" "$TMP/cp-one"
run cp-one "$BIN" train "${BASE[@]}" --steps 4 --resume "$TMP/cp-one" --save "$TMP/cp-one" --log "$TMP/cp-one.jsonl"
run cp-cp4 "${M4[@]}" "$BIN" train "${BASE[@]}" --cp 4 --steps 4 --resume "$TMP/cp-sh/step_000002" \
  --save "$TMP/cp-cp4" --log "$TMP/cp-cp4.jsonl" &&
if "${CMP[@]}" "$TMP/cp-cp4.jsonl" "$TMP/cp-cp4/step_000004/model.safetensors" "$TMP/cp-one.jsonl" \
     "$TMP/cp-one/step_000004/model.safetensors" --rtol 1e-5 >"$TMP/cp.cmp" 2>&1
then ok "sharded dp 2 x cp 2 -> cp 4: $(tail -1 "$TMP/cp.cmp" | sed 's/^ *//')"
else bad "sharded dp 2 x cp 2 -> cp 4: $(tail -4 "$TMP/cp.cmp")"; fi

# --- bf16 and the pipeline schedules that place blocks differently (interleaved: 2 chunks per
# rank round the ranks; zb-v: 2 chunks per rank in a V): a sharded save converts to the single
# save of the same run byte for byte (checkpoints stay fp32 under bf16), and resumes under
# another layout or schedule within 1e-5 of one rank resuming the same run's single save
# (bf16 resumed under pp 2: pp keeps bf16's rounding points, tests/t_bf16.sh)
conv_same() { # TAG: $TMP/TAG-sh converts to $TMP/TAG-si byte for byte
  run "$1-cv" "$BIN" convert --in "$TMP/$1-sh" --out "$TMP/$1-cv" || return
  cmp -s "$TMP/$1-cv/step_000002/model.safetensors" "$TMP/$1-si/step_000002/model.safetensors" &&
    cmp -s "$TMP/$1-cv/step_000002/optimizer.safetensors" "$TMP/$1-si/step_000002/optimizer.safetensors" &&
    ok "$2: the sharded save converts to the single save, byte for byte" ||
    bad "$2: the sharded save does not convert to the single save"
}
resume_vs_one() { # NAME FROM NP ONE-RANK-ARGS -- LAYOUT...: resume $TMP/FROM-sh under LAYOUT,
  local name=$1 from=$2 np=$3 one=(); shift 3           # against one rank from $TMP/FROM-si
  while [ "$1" != -- ]; do one+=("$1"); shift; done; shift
  run "$name-one" "$BIN" train "${BASE[@]}" "${one[@]}" --steps 4 --resume "$TMP/$from-si/step_000002" \
    --save "$TMP/$name-one" --log "$TMP/$name-one.jsonl" || return
  run "$name" "${MPIRUN[@]}" -np "$np" "$BIN" train "${BASE[@]}" "${one[@]}" "$@" --steps 4 \
    --resume "$TMP/$from-sh/step_000002" --save "$TMP/$name" --log "$TMP/$name.jsonl" || return
  if "${CMP[@]}" "$TMP/$name.jsonl" "$TMP/$name/step_000004/model.safetensors" "$TMP/$name-one.jsonl" \
       "$TMP/$name-one/step_000004/model.safetensors" --rtol 1e-5 >"$TMP/$name.cmp" 2>&1
  then ok "sharded $name: $(tail -1 "$TMP/$name.cmp" | sed 's/^ *//')"
  else bad "sharded $name: $(tail -4 "$TMP/$name.cmp")"; fi
}
BF=(--dtype bf16)
for f in sh si; do
  run "bf-$f" "${M4[@]}" "$BIN" train "${BASE[@]}" "${BF[@]}" "${TPPP[@]}" --steps 2 --save "$TMP/bf-$f" \
    $([ $f = sh ] && echo --save-format sharded)
done
conv_same bf "bf16 tp 2 x pp 2"
resume_vs_one "bf16-tp2pp2-to-pp2" bf 2 "${BF[@]}" -- --pp 2
SCH=(--layers 4 --microbatches 4)
IL=(--pp 2 --schedule interleaved --virtual-stages 2)
ZV=(--pp 2 --schedule zb-v)
for f in sh si; do
  run "il-$f" "${MPIRUN[@]}" -np 2 "$BIN" train "${BASE[@]}" "${SCH[@]}" "${IL[@]}" --steps 2 --save "$TMP/il-$f" \
    $([ $f = sh ] && echo --save-format sharded)
  run "zv-$f" "${MPIRUN[@]}" -np 2 "$BIN" train "${BASE[@]}" "${SCH[@]}" "${ZV[@]}" --steps 2 --save "$TMP/zv-$f" \
    $([ $f = sh ] && echo --save-format sharded)
done
conv_same il "pp 2 interleaved v 2"
conv_same zv "pp 2 zb-v"
resume_vs_one "interleaved-to-zb-v" il 2 "${SCH[@]}" -- "${ZV[@]}"
resume_vs_one "zb-v-to-interleaved-dp2" zv 4 "${SCH[@]}" -- "${IL[@]}" --dp 2 --microbatches 2

# --- the manifest's shard checksums come from the ranks that wrote them (rank 0 reads no other
# shard): every entry equals the file's XXH3-64
/usr/bin/python3 - "$S" <<'PY' && ok "manifest: every shard's size and XXH3-64 match the file" || bad "manifest checksums"
import ctypes, json, sys
x = ctypes.CDLL("libxxhash.so.0"); x.XXH3_64bits.restype = ctypes.c_uint64
x.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
d = sys.argv[1]; m = json.load(open(d + "/manifest.json"))["files"]
assert len([k for k in m if k.startswith("shard-")]) == 4
for k, v in m.items():
    b = open(d + "/" + k, "rb").read()
    assert len(b) == v["size"] and "%016x" % x.XXH3_64bits(b, len(b)) == v["xxh3_64"], k
PY

# --- killed during a sharded save of step 4 (from step 2, saving every 2 steps)
cp -a "$TMP/sh" "$TMP/kref"
run kref "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 6 --save-every 2 --resume "$TMP/kref" \
  --save "$TMP/kref" --save-format sharded
RC_WRAP='"$0" "$@"; echo $? >"$RC.$OMPI_COMM_WORLD_RANK"'
k=0
kill_save() { # RANK POINT: MPT_DEBUG_KILL point at step 4, or kp:N (tests/killpoint.c, rank 0)
  local rank=$1 point=$2 d="$TMP/kill$k"; k=$((k + 1))
  cp -a "$TMP/sh" "$d"
  local dk="" pre="" at=""
  case "$point" in kp:*|kpa:*) pre="$KILL"; at=${point#*:} ;; *) dk="$rank:4:$point" ;; esac
  local after=""; case "$point" in kpa:*) after=1 ;; esac
  (export RC="$d.rc" MPT_DEBUG_KILL="$dk" LD_PRELOAD="$pre" MPT_KILL_AT="$at" MPT_KILL_AFTER="$after"
   [ -n "$after" ] || unset MPT_KILL_AFTER
   timeout -k 5 60 "${MPIRUN[@]}" --mca orte_enable_recovery 1 -x MPT_DEBUG_KILL -x LD_PRELOAD \
     -x MPT_KILL_AT ${after:+-x MPT_KILL_AFTER} -x ASAN_OPTIONS -np 4 sh -c "$RC_WRAP" "$BIN" train "${BASE[@]}" "${TPPP[@]}" \
     --steps 6 --save-every 2 --resume "$d" --save "$d" --save-format sharded >"$d.out" 2>"$d.err")
  local rcs="" r; for r in 0 1 2 3; do rcs+="$(cat "$d.rc.$r" 2>/dev/null || echo -) "; done
  local latest; latest=$(readlink "$d/latest")
  if [ "${rcs// /}" = "$(for r in 0 1 2 3; do [ $r = "$rank" ] && printf 137 || printf 1; done)" ] &&
     [ "$(grep -c "^mptrain: error: rank $rank stopped responding" "$d.err")" -ge 3 ]; then
    ok "kill rank $rank at $point in the save of step 4: exit codes $rcs, latest $latest"
  else bad "kill rank $rank at $point: exit codes $rcs: $(grep -v PMIX "$d.err" | head -c 500)"; fi
  if ! timeout -k 5 120 "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 6 --save-every 2 \
       --resume "$d" --save "$d" --save-format sharded >/dev/null 2>"$d.resume"; then
    bad "kill rank $rank at $point: resume from $latest failed: $(tail -2 "$d.resume")"
  elif ! cmp -s "$d/step_000006/shard-00000.bin" "$TMP/kref/step_000006/shard-00000.bin" ||
       ! cmp -s "$d/step_000006/shard-00003.bin" "$TMP/kref/step_000006/shard-00003.bin"; then
    bad "kill rank $rank at $point: resumed from $latest, step 6 differs from the run never killed"
  else ok "kill rank $rank at $point: resumed from $latest, step 6 bit-identical"; fi
}
kill_save 1 bcast@world#1      # before writing its shard
kill_save 2 allreduce@world#2  # its shard written, before the index
kill_save 3 allgather@world#1  # while the slices are gathered
# rank 0's file-system steps in the save (tests/killpoint.c counts them: its shard's writes,
# then the index, state, manifest, syncs, the rename and `latest`)
cp -a "$TMP/sh" "$TMP/count"
MPT_KILL_COUNT="$TMP/points" LD_PRELOAD="$KILL" "${MPIRUN[@]}" -x MPT_KILL_COUNT -x LD_PRELOAD \
  -x ASAN_OPTIONS -np 4 "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 4 --resume "$TMP/count" \
  --save "$TMP/count" --save-format sharded >/dev/null 2>&1 || bad "a sharded save under killpoint"
P=$(wc -l <"$TMP/points" 2>/dev/null || echo 0)
[ "$P" -ge 20 ] && ok "rank 0 passes $P file-system steps in a sharded save" || bad "only $P kill points"
kill_save 0 kp:2               # rank 0 writing its shard
kill_save 0 kp:$((P - 12))     # rank 0 writing the index, state and manifest
kill_save 0 kp:$((P - 2))      # rank 0 publishing (rename, latest)
kill_save 0 kpa:$P             # rank 0 just after its last step: `latest` names the new step

# --- damaged sharded checkpoints
run other-model "$BIN" train "${BASE[@]}" --d-model 64 --steps 1 --save "$TMP/other" --save-format sharded
ON4=("${MPIRUN[@]}" -np 4 "$BIN" train "${BASE[@]}" --dp 2 --pp 2 --steps 3)
damaged() { # DAMAGE WANT
  local d="$TMP/dmg-$1"
  "${HOSTILE[@]}" shard "$S" "$d" "$1" "$TMP/other/step_000001" || { bad "make $1"; return; }
  refused "sharded $1 (1 rank)" 1 "$2" -- "$BIN" train "${BASE[@]}" --steps 3 --resume "$d"
  refused "sharded $1 (4 ranks)" 4 "$2" -- "${ON4[@]}" --resume "$d"
}
damaged missing-shard "missing (listed in manifest.json)"
damaged truncated-shard "truncated or damaged"
damaged missing-shard-unlisted "is missing or unreadable"
damaged overlap "overlap"
damaged gap "a shard is missing"
damaged outside "outside its shape"
damaged past-file "past the end of shard file"
damaged bad-kind "malformed slice"
damaged not-json "shards.json"
damaged other-model "another model"
damaged unknown-tensor "not in this model"
# rank 2's shard corrupt, manifest as it was: under tp 2 x pp 2 only the ranks that read it
# (the second stage) checksum it, and the error reaches every rank, which all exit 2
"${HOSTILE[@]}" shard "$S" "$TMP/dmg-rank2" flipped-rank2 || bad "make flipped-rank2"
refused "sharded shard-00002.bin corrupt (4 ranks, tp 2 x pp 2: read by stage 2 only)" 4 \
  "shard-00002.bin: checksum mismatch" -- "${M4[@]}" "$BIN" train "${BASE[@]}" "${TPPP[@]}" --steps 3 \
  --resume "$TMP/dmg-rank2"
refused "sharded shard-00002.bin corrupt (1 rank)" 1 "shard-00002.bin: checksum mismatch" -- \
  "$BIN" train "${BASE[@]}" --steps 3 --resume "$TMP/dmg-rank2"
refused "convert of a damaged index" 1 "overlap" -- "$BIN" convert --in "$TMP/dmg-overlap" --out "$TMP/nowhere"
refused "convert without --out" 1 "needs --in DIR and --out ROOT" -- "$BIN" convert --in "$S"
refused "convert --to bogus" 1 "use single or sharded" -- "$BIN" convert --in "$S" --out "$TMP/x" --to bogus
refused "--save-format bogus (4 ranks)" 4 "use single or sharded" -- "${ON4[@]}" --save-format bogus --save "$TMP/x"
finish
