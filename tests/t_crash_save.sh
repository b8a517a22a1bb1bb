#!/usr/bin/env bash
# t_crash_save.sh — crash safety of checkpoints (issue 12, item 2): the job is killed (SIGKILL)
# at every file-system step of a save, and each time the --save directory still holds a
# checkpoint that loads: `latest` names the previous step or the new one, never a mix, and
# resuming from it continues bit-identically to a run that was never killed.
#
# tests/killpoint.c (LD_PRELOAD) counts the save's steps — every fwrite, fflush, fsync, mkdir,
# rename, symlink, unlink, remove and rmdir once the temporary step directory exists — and
# kills the process just before step N, or just after it. A run without a kill lists them
# (76 for this model: the temporary directory, each file's writes, flush and fsync, the
# directory fsyncs, the rename to step_000002, the new `latest` link and its rename). Every step
# that is not a data write is a kill point both before and after it, and every 8th data write
# (fwrite) before it: about 50 kills. For each: copy the directory holding step 1, resume to
# step 2 with the kill, then check the directory: `latest` is step_000001 or step_000002, and
# resuming to step 3 gives the same model.safetensors, byte for byte, as the run that was
# never killed (1 -> 3 from step 1, 1 -> 2 -> 3 from step 2). In the ASan and valgrind builds
# (SMALL, tests/lib.sh) only the kills before each step are made, and after the last: a kill
# after step k leaves on disk what a kill before step k+1 leaves, so the same states are met
# (about half the runs). One rank, a one-block model (the save's steps do not depend on the layout:
# world rank 0 writes every file).
# Usage: bash tests/t_crash_save.sh BUILD_DIR   (from the repo root, as ctest runs it)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
KILL="$(cd "$1" && pwd)/tests/libkillpoint.so"
[ -f "$KILL" ] || { bad "$KILL is not built"; finish; exit 1; }
# an LD_PRELOAD library ahead of ASan's runtime (make test-asan) is fine here
export ASAN_OPTIONS="verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

printf 'It is a truth universally acknowledged, that a single man in possession. %.0s' {1..40} >"$TMP/text.txt"
"$BIN" tokenize --in "$TMP/text.txt" --out "$TMP/data.bin" >/dev/null || bad "tokenize the test data"
BASE=(--model tiny --layers 1 --d-model 32 --heads 2 --seq-len 16 --batch 4 --threads 1 --quiet
      --data "$TMP/data.bin")

# the two runs a killed one may continue as: 1 -> 3 (the save of step 2 lost) and 1 -> 2 -> 3
# (the learning-rate schedule depends on --steps, so these differ)
"$BIN" train "${BASE[@]}" --steps 1 --save "$TMP/start" >/dev/null 2>&1 || bad "step 1"
cp -a "$TMP/start" "$TMP/ref1"
cp -a "$TMP/start" "$TMP/ref2"
"$BIN" train "${BASE[@]}" --steps 3 --resume "$TMP/ref1" --save "$TMP/ref1" >/dev/null 2>&1 ||
  bad "the uninterrupted run 1 -> 3"
"$BIN" train "${BASE[@]}" --steps 2 --resume "$TMP/ref2" --save "$TMP/ref2" >/dev/null 2>&1 &&
  "$BIN" train "${BASE[@]}" --steps 3 --resume "$TMP/ref2" --save "$TMP/ref2" >/dev/null 2>&1 ||
  bad "the uninterrupted run 1 -> 2 -> 3"

cp -a "$TMP/start" "$TMP/count"
MPT_KILL_COUNT="$TMP/points" LD_PRELOAD="$KILL" "$BIN" train "${BASE[@]}" --steps 2 \
  --resume "$TMP/count" --save "$TMP/count" >/dev/null 2>&1 || bad "a save under killpoint without a kill"
P=$(wc -l <"$TMP/points" 2>/dev/null || echo 0)
if [ "$P" -ge 10 ]; then ok "a save passes $P kill points"; else bad "only $P kill points counted"; fi
CASES=() # "MODE N FUNCTION"
while read -r k fn; do
  if [ "$fn" != fwrite ] && [ "$SMALL" = 1 ]; then CASES+=("before $k $fn")
  elif [ "$fn" != fwrite ]; then CASES+=("before $k $fn" "after $k $fn")
  elif [ $((k % 8)) = 0 ]; then CASES+=("before $k $fn"); fi
done <"$TMP/points"
[ "$SMALL" = 1 ] && read -r k fn < <(tail -1 "$TMP/points") && CASES+=("after $k $fn")

killed=0 prev=0 new=0
for c in "${CASES[@]}"; do
  read -r mode k fn <<<"$c"
  d="$TMP/kill-$mode-$k"
  cp -a "$TMP/start" "$d"
  if [ "$mode" = after ]; then export MPT_KILL_AFTER=1; else unset MPT_KILL_AFTER; fi
  # (in a subshell whose stderr is closed: bash's "Killed" notice is expected here)
  (MPT_KILL_AT=$k LD_PRELOAD="$KILL" timeout -k 5 60 "$BIN" train "${BASE[@]}" --steps 2 \
    --resume "$d" --save "$d" >"$d.out" 2>&1; exit $?) 2>/dev/null; rc=$?
  unset MPT_KILL_AFTER
  [ "$rc" = 137 ] && killed=$((killed + 1))
  latest=$(readlink "$d/latest")
  case "$latest" in
    step_000001) prev=$((prev + 1)); ref="$TMP/ref1/step_000003/model.safetensors" ;;
    step_000002) new=$((new + 1)); ref="$TMP/ref2/step_000003/model.safetensors" ;;
    *) bad "kill $mode point $k ($fn, exit $rc): latest is '$latest'"; continue ;;
  esac
  if ! timeout -k 5 60 "$BIN" train "${BASE[@]}" --steps 3 --resume "$d" --save "$d" >"$d.resume" 2>&1; then
    bad "kill $mode point $k ($fn): latest $latest does not resume: $(tail -2 "$d.resume")"
  elif ! cmp -s "$ref" "$d/step_000003/model.safetensors"; then
    bad "kill $mode point $k ($fn): resumed from $latest, step 3 differs from the run never killed"
  else
    ok "kill $mode $fn (point $k, exit $rc): $latest loads, step 3 bit-identical"
  fi
  rm -rf "$d"
done
echo "killed $killed of ${#CASES[@]} runs; latest was the previous step $prev times, the new one $new times"
[ "$killed" = "${#CASES[@]}" ] || bad "the kill happened in only $killed of ${#CASES[@]} runs"
[ "$prev" -gt 0 ] && [ "$new" -gt 0 ] || bad "the kills never fell on both sides of the switch of latest"
finish
