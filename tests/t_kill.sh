#!/usr/bin/env bash
# t_kill.sh — no hangs (issue 12, item 3): one rank of a 4-rank job is killed with SIGKILL at
# some moment of a step (forward, backward, the gradient reduction, the loss and norm
# reductions, the optimizer's agreement, a time into the step, the checkpoint save), under
# dp 2 x pp 2 and tp 2 x pp 2. Every other rank must exit with status 1 and the message
# "mptrain: error: rank K stopped responding ..." naming the killed rank K (the failure
# detector, src/comm/alive.h), and --resume must then continue from the last checkpoint to the
# same final weights, byte for byte, as a run that was never killed.
#
# The kill points come from MPT_DEBUG_KILL=RANK:STEP:POINT (alive.h: "+MS" after the step
# begins, or "OP@GROUP#N" before the Nth such operation of the step) and, for the save, from
# tests/killpoint.c (LD_PRELOAD; world rank 0 writes the checkpoint). Each rank's exit status is
# recorded by a small shell wrapper; mpirun runs with orte_enable_recovery so that it leaves
# the surviving ranks to end themselves (by default mpirun kills them at once: one case checks
# that the message still comes out then). A `timeout` catches a hang; no speed is asserted.
# Usage: bash tests/t_kill.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
KILL="$(cd "$1" && pwd)/tests/libkillpoint.so"
export ASAN_OPTIONS="verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

printf 'Call me Ishmael. Some years ago, never mind how long precisely, having little money. %.0s' {1..60} >"$TMP/text.txt"
"$BIN" tokenize --in "$TMP/text.txt" --out "$TMP/data.bin" >/dev/null || bad "tokenize the test data"
BASE=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 16 --batch 8 --microbatches 2
      --threads 1 --quiet --data "$TMP/data.bin" --save-every 2)
RUN=("${MPIRUN[@]}" --mca orte_enable_recovery 1 -x MPT_DEBUG_KILL -x LD_PRELOAD -x MPT_KILL_AT
     -x ASAN_OPTIONS -np 4)
# each rank's exit status into $RC.<rank>
WRAP='"$0" "$@"; echo $? >"$RC.$OMPI_COMM_WORLD_RANK"'

# one layout: a step-2 checkpoint to start every case from, and the run 2 -> 6 never killed
setup() { # NAME LAYOUT...
  local name=$1; shift
  "${MPIRUN[@]}" -np 4 "$BIN" train "${BASE[@]}" "$@" --steps 2 --save "$TMP/$name.start" \
    >/dev/null 2>"$TMP/$name.err" || bad "$name: the first two steps: $(tail -3 "$TMP/$name.err")"
  cp -a "$TMP/$name.start" "$TMP/$name.ref"
  "${MPIRUN[@]}" -np 4 "$BIN" train "${BASE[@]}" "$@" --steps 6 --resume "$TMP/$name.ref" \
    --save "$TMP/$name.ref" >/dev/null 2>"$TMP/$name.err" || bad "$name: the reference run 2 -> 6"
}

n=0
# kill NAME RANK POINT LAYOUT...: POINT is an MPT_DEBUG_KILL point at step 3, or save:N (the
# Nth file-system step of the save of step 4, on rank 0)
kill_case() {
  local name=$1 rank=$2 point=$3; shift 3
  n=$((n + 1))
  local d="$TMP/case$n" what="$name: kill rank $rank at $point"
  cp -a "$TMP/$name.start" "$d"
  local dk="" pre="" at=""
  case "$point" in
    save:*) pre="$KILL"; at=${point#save:} ;;
    *) dk="$rank:3:$point" ;;
  esac
  (export RC="$d/rc" MPT_DEBUG_KILL="$dk" LD_PRELOAD="$pre" MPT_KILL_AT="$at"
   timeout -k 5 60 "${RUN[@]}" sh -c "$WRAP" "$BIN" train "${BASE[@]}" "$@" --steps 6 \
     --resume "$d" --save "$d" >"$d.out" 2>"$d.err")
  local good=1 why=""
  for r in 0 1 2 3; do
    local rc; rc=$(cat "$d/rc.$r" 2>/dev/null || echo none)
    if [ "$r" = "$rank" ]; then
      [ "$rc" = 137 ] || { good=0; why+=" killed rank $r exit $rc (want 137: did the point come?);"; }
    elif [ "$rc" != 1 ]; then good=0; why+=" rank $r exit $rc (want 1);"; fi
  done
  local said; said=$(grep -c "^mptrain: error: rank $rank stopped responding" "$d.err")
  [ "$said" -ge 3 ] || { good=0; why+=" $said of 3 ranks named rank $rank;"; }
  if [ "$good" = 1 ]; then ok "$what: 3 ranks exit 1: $(grep -m1 '^mptrain: error' "$d.err" | cut -c1-150)"
  else bad "$what:$why $(grep -v PMIX "$d.err" | head -c 800)"; fi
  # the run continues from the last checkpoint to the weights of the run never killed
  local latest; latest=$(readlink "$d/latest")
  if ! timeout -k 5 120 "${MPIRUN[@]}" -np 4 "$BIN" train "${BASE[@]}" "$@" --steps 6 --resume "$d" \
      --save "$d" >/dev/null 2>"$d.resume"; then
    bad "$what: --resume from $latest failed: $(tail -3 "$d.resume")"
  elif ! cmp -s "$TMP/$name.ref/step_000006/model.safetensors" "$d/step_000006/model.safetensors"; then
    bad "$what: resumed from $latest, step 6 differs from the run never killed"
  else
    ok "$what: --resume from $latest reaches step 6 bit-identical"
  fi
  rm -rf "$d" "$d".*
}

DPPP=(--dp 2 --pp 2)   # world rank = dp + 2 * stage
setup dppp "${DPPP[@]}"
kill_case dppp 1 +0 "${DPPP[@]}"                 # as step 3 begins (before its forward)
kill_case dppp 0 send@pp#1 "${DPPP[@]}"          # forward: stage 0 sends activations
kill_case dppp 2 send@pp#1 "${DPPP[@]}"          # backward: stage 1 sends gradients back
kill_case dppp 3 recv@pp#2 "${DPPP[@]}"          # between micro-batches
kill_case dppp 1 send@dp#1 "${DPPP[@]}"          # the gradient reduction (dp ring)
kill_case dppp 0 allreduce@dp#1 "${DPPP[@]}"     # the loss over replicas
kill_case dppp 3 allreduce@pp#2 "${DPPP[@]}"     # the gradient norm over stages
kill_case dppp 2 allreduce@world#1 "${DPPP[@]}"  # after the optimizer: the step's agreement
kill_case dppp 1 +40 "${DPPP[@]}"                # 40 ms into the step, wherever that is
kill_case dppp 0 save:3 "${DPPP[@]}"             # saving step 4: rank 0 writing

TPPP=(--tp 2 --pp 2)   # world rank = tp + 2 * stage
# last stage, per micro-batch: 2 tp all-reduces in the forward (the row-parallel sums; the
# vocabulary-parallel loss is an all-gather) and 3 in the backward, so #8 is micro-batch 2's first
setup tppp "${TPPP[@]}"
kill_case tppp 0 allreduce@tp#1 "${TPPP[@]}"     # forward: the first row-parallel sum
kill_case tppp 3 allreduce@tp#8 "${TPPP[@]}"     # backward on the last stage (micro-batch 2)
kill_case tppp 2 recv@pp#1 "${TPPP[@]}"          # stage 1 waiting for activations
kill_case tppp 1 allreduce@embed#1 "${TPPP[@]}"  # the tied embedding's gradient
kill_case tppp 3 +60 "${TPPP[@]}"                # 60 ms into the step
kill_case tppp 0 save:9 "${TPPP[@]}"             # saving step 4: rank 0 writing

# mpirun's default policy kills the other ranks itself: the job still ends, and the ranks
# still name the lost one
d="$TMP/default"; cp -a "$TMP/dppp.start" "$d"
MPT_DEBUG_KILL=3:3:allreduce@pp#1 timeout -k 5 60 "${MPIRUN[@]}" -x MPT_DEBUG_KILL -np 4 "$BIN" train \
  "${BASE[@]}" "${DPPP[@]}" --steps 6 --resume "$d" --save "$d" >"$d.out" 2>"$d.err"; rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "^mptrain: error: rank 3 stopped responding" "$d.err"; then
  ok "default mpirun: the job ends (mpirun exit $rc) and a rank says: $(grep -m1 '^mptrain: error' "$d.err" | cut -c1-120)"
else
  bad "default mpirun: exit $rc, stderr: $(grep -v PMIX "$d.err" | head -c 600)"
fi
finish
