#!/usr/bin/env bash
# t_nan.sh — non-finite values (issue 12, item 4): --on-nan stop|skip with a NaN injected by
# --debug-nan loss:STEP (the last rank's loss of that step) or grad:STEP (the last rank's
# gradients of that step, through a NaN loss gradient: the loss stays finite, the norm not).
#   stop (default): exit 1 with the message on every rank, nothing of that step saved: `latest`
#     stays at the step before and resumes;
#   skip: the run goes on; the step's update is skipped (its checkpoint holds the weights of the
#     step before, exactly), the log line says skipped_non_finite, stderr has the warning once.
# On one rank and on dp 2 x tp 2 (all ranks take the same branch: the loss and the norm are
# sums over all of them), and the two skip runs agree with each other (losses and weights).
# Usage: bash tests/t_nan.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"

printf 'It was the best of times, it was the worst of times, it was the age of wisdom. %.0s' {1..40} >"$TMP/text.txt"
"$BIN" tokenize --in "$TMP/text.txt" --out "$TMP/data.bin" >/dev/null || bad "tokenize the test data"
BASE=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 16 --batch 8 --threads 1 --quiet
      --data "$TMP/data.bin" --steps 5 --save-every 1 --lr 3e-3)

# stop NAME NP WHAT LAUNCH...: the run stops at step 3 with exit 1, every rank says why
stop_case() {
  local name=$1 np=$2 what=$3 want=$4; shift 4
  local d="$TMP/$name"
  timeout -k 5 120 "$@" "$BIN" train "${BASE[@]}" "${LAYOUT[@]}" --debug-nan "$what:3" --save "$d" \
    >"$d.out" 2>"$d.err"; local rc=$?
  local said; said=$(grep -c "^mptrain: error: .*$want at step 3" "$d.err")
  if [ "$rc" = 1 ] && [ "$said" -ge "$np" ]; then ok "$name: exit 1, $said of $np ranks: $(grep -m1 '^mptrain: error' "$d.err" | cut -c1-130)"
  else bad "$name: exit $rc (want 1), $said of $np ranks said '$want': $(head -c 600 "$d.err")"; fi
  local latest; latest=$(readlink "$d/latest")
  if [ "$latest" = step_000002 ] && [ ! -e "$d/step_000003" ]; then ok "$name: latest is step 2, step 3 never saved"
  else bad "$name: latest '$latest', step 3 $( [ -e "$d/step_000003" ] && echo saved || echo absent)"; fi
  if timeout -k 5 120 "$@" "$BIN" train "${BASE[@]}" "${LAYOUT[@]}" --resume "$d" --save "$d" >/dev/null 2>"$d.resume" &&
     [ "$(readlink "$d/latest")" = step_000005 ]; then ok "$name: --resume runs on to step 5"
  else bad "$name: --resume: $(tail -3 "$d.resume")"; fi
}

# skip NAME WHAT LAUNCH...: the run ends well; step 3 changed no weight
skip_case() {
  local name=$1 what=$2; shift 2
  local d="$TMP/$name"
  timeout -k 5 120 "$@" "$BIN" train "${BASE[@]}" "${LAYOUT[@]}" --on-nan skip --debug-nan "$what:3" \
    --save "$d" --log "$d.jsonl" >"$d.out" 2>"$d.err"; local rc=$?
  local warned; warned=$(grep -c "^mptrain: warning: step 3: the .* is not finite.*update skipped" "$d.err")
  if [ "$rc" = 0 ] && [ "$warned" = 1 ]; then ok "$name: exit 0, warned once: $(grep -m1 warning "$d.err" | cut -c1-120)"
  else bad "$name: exit $rc, $warned warnings: $(head -c 600 "$d.err")"; fi
  local skipped; skipped=$(python3 -c "
import json, sys
print(','.join(str(j['step']) for j in map(json.loads, open(sys.argv[1])) if j.get('skipped_non_finite')))" "$d.jsonl")
  [ "$skipped" = 3 ] && ok "$name: the log marks step 3 (only) skipped" || bad "$name: skipped steps in the log: '$skipped'"
  if "${CMP[@]}" --tensors "$d/step_000002/model.safetensors" "$d/step_000003/model.safetensors" --rtol 0 >"$d.cmp" 2>&1
  then ok "$name: step 3's weights are step 2's, exactly"; else bad "$name: step 3 changed the weights: $(tail -3 "$d.cmp")"; fi
  if "${CMP[@]}" --tensors "$d/step_000003/model.safetensors" "$d/step_000004/model.safetensors" --rtol 0 >/dev/null 2>&1
  then bad "$name: step 4 did not train"; else ok "$name: step 4 trains again"; fi
}

LAYOUT=()
stop_case one-loss 1 loss "loss became non-finite"
stop_case one-grad 1 grad "gradient norm became non-finite"
skip_case one-skip-loss loss
skip_case one-skip-grad grad
LAYOUT=(--dp 2 --tp 2)
stop_case four-loss 4 loss "loss became non-finite" "${MPIRUN[@]}" -np 4
stop_case four-grad 4 grad "gradient norm became non-finite" "${MPIRUN[@]}" -np 4
skip_case four-skip-loss loss "${MPIRUN[@]}" -np 4
skip_case four-skip-grad grad "${MPIRUN[@]}" -np 4
refused "--on-nan maybe" 1 "use stop or skip" -- "$BIN" train "${BASE[@]}" --on-nan maybe
refused "--on-nan maybe (4 ranks)" 4 "use stop or skip" -- "${MPIRUN[@]}" -np 4 "$BIN" train "${BASE[@]}" --dp 4 --on-nan maybe
refused "--debug-nan loss:0" 1 "use loss:STEP or grad:STEP" -- "$BIN" train "${BASE[@]}" --debug-nan loss:0
# the same skipped step on one rank and on four: the same run
if "${CMP[@]}" "$TMP/one-skip-grad.jsonl" "$TMP/one-skip-grad/step_000005/model.safetensors" \
     "$TMP/four-skip-grad.jsonl" "$TMP/four-skip-grad/step_000005/model.safetensors" >"$TMP/cmp" 2>&1
then ok "skip on dp 2 x tp 2 = skip on one rank: $(tail -1 "$TMP/cmp")"
else bad "skip on dp 2 x tp 2 differs from one rank: $(tail -5 "$TMP/cmp")"; fi
finish
