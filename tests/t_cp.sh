#!/usr/bin/env bash
# Context parallelism (--cp, ring attention over zigzag chunks): every cp layout trains like one
# rank -- cp 2, cp 4, cp 2 x tp 2 (with and without sp), cp 2 x pp 2, cp 2 x dp 2 x ZeRO-1, -2, -3:
# step-1 gradients of every tensor (where a dump is possible: ZeRO 0), 5 steps' losses and final
# weights within 1e-5 relative; every rank's arena peak equals its memory plan (which counts the
# ring buffers); a checkpoint saved under cp 2 resumes under cp 1; a sequence that does not split
# into 2cp chunks exits 2 with the numbers on every rank.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
COMMON=(--model tiny --layers 2 --d-model 32 --heads 4 --ffn 96 --seq-len 32 --batch 4 --steps 5
        --threads 1 --quiet --lr 3e-3)

# run NAME NP ARGS...: one layout with a log and a final checkpoint (and a step-1 gradient dump
# unless the arguments ask for ZeRO)
run() {
  local name=$1 np=$2; shift 2
  local launch=("$BIN") dump=(--dump-step1 "$TMP/$name.grads")
  [ "$np" -gt 1 ] && launch=("${MPIRUN[@]}" -np "$np" "$BIN")
  case " $* " in *" --zero "*) dump=() ;; esac
  timeout 300 "${launch[@]}" train "${COMMON[@]}" "$@" --log "$TMP/$name.jsonl" --save "$TMP/$name" \
     "${dump[@]}" >"$TMP/$name.out" 2>&1 || { bad "$name failed: $(tail -3 "$TMP/$name.out")"; return 1; }
}
# same NAME REF: losses and weights (and step-1 gradients when both dumped) of NAME equal REF's
same() {
  local g="" w=""
  if [ -f "$TMP/$1.grads" ] && [ -f "$TMP/$2.grads" ]; then
    g=$("${CMP[@]}" --tensors "$TMP/$1.grads" "$TMP/$2.grads" 2>&1) || { bad "$1 step-1 grads differ from $2: $g"; return 1; }
    g=" step-1 grads$(echo $g | sed 's/^ *//') |"
  fi
  if w=$("${CMP[@]}" "$TMP/$1.jsonl" "$TMP/$1/latest/model.safetensors" "$TMP/$2.jsonl" "$TMP/$2/latest/model.safetensors" 2>&1); then
    ok "$1 = $2:$g $(echo $w)"
  else bad "$1 differs from $2: $(echo $w)"; fi
}

run ref 1 && {
  run cp2 2 --cp 2 && same cp2 ref && plan_is_peak cp2
  run cp4 4 --cp 4 && same cp4 ref && plan_is_peak cp4
  run cp2tp2 4 --cp 2 --tp 2 && same cp2tp2 ref && plan_is_peak cp2tp2
  run cp2tp2sp 4 --cp 2 --tp 2 --sp && same cp2tp2sp ref
  run cp2dp2z3 4 --cp 2 --dp 2 --zero 3 && same cp2dp2z3 ref && plan_is_peak cp2dp2z3
  run cp2dp2z1 4 --cp 2 --dp 2 --zero 1 && same cp2dp2z1 ref && plan_is_peak cp2dp2z1
  run cp2dp2z2 4 --cp 2 --dp 2 --zero 2 && same cp2dp2z2 ref && plan_is_peak cp2dp2z2
}
run ref_m2 1 --microbatches 2 && {
  run cp2pp2 4 --cp 2 --pp 2 --microbatches 2 && same cp2pp2 ref_m2 && plan_is_peak cp2pp2
}

# the log names the layout
/usr/bin/python3 -c 'import json,sys; s=json.loads(open(sys.argv[1]).readline()); sys.exit(0 if s["layout"]["cp"] == 2 else 1)' \
  "$TMP/cp2.jsonl" 2>/dev/null && ok "the start line says cp 2" || bad "the start line's layout lacks cp 2"

# a cp 2 checkpoint resumes under cp 1 (and cp 4) with the same losses and weights
"${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" --cp 2 --save "$TMP/c2" --save-every 3 --log "$TMP/c2.jsonl" >/dev/null 2>&1
grep -v '"step":[123],' "$TMP/c2.jsonl" > "$TMP/c2tail.jsonl"
for c in 1 4; do
  launch=("$BIN"); [ $c -gt 1 ] && launch=("${MPIRUN[@]}" -np $c "$BIN")
  "${launch[@]}" train "${COMMON[@]}" --cp $c --resume "$TMP/c2/step_000003" --log "$TMP/r$c.jsonl" --save "$TMP/r$c" >/dev/null 2>&1
  w=$("${CMP[@]}" "$TMP/r$c.jsonl" "$TMP/r$c/latest/model.safetensors" "$TMP/c2tail.jsonl" "$TMP/c2/latest/model.safetensors" 2>&1) \
    && ok "cp2 checkpoint resumed at cp $c: $(echo $w)" || bad "resume at cp $c: $w"
done

# bad splits exit 2 on every rank, naming the numbers
"${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" --cp 2 --seq-len 30 >/dev/null 2>"$TMP/e1"; c=$?
[ $c = 2 ] && [ "$(grep -c 'seq-len 30' "$TMP/e1")" = 2 ] && ok "seq % 2cp: $(head -1 "$TMP/e1")" || bad "seq % 2cp: exit $c $(cat "$TMP/e1")"
"${MPIRUN[@]}" -np 3 "$BIN" train "${COMMON[@]}" --cp 3 >/dev/null 2>"$TMP/e2"; c=$?
[ $c = 2 ] && grep -q "divisible by 6" "$TMP/e2" && ok "seq 32 over cp 3: $(head -1 "$TMP/e2")" || bad "cp 3: exit $c $(cat "$TMP/e2")"
"${MPIRUN[@]}" -np 8 "$BIN" train "${COMMON[@]}" --cp 2 --tp 4 --sp --seq-len 12 >/dev/null 2>"$TMP/e3"; c=$?
[ $c = 2 ] && grep -q "seq-len 12" "$TMP/e3" && ok "cp x sp split: $(head -1 "$TMP/e3")" || bad "cp x sp: exit $c $(cat "$TMP/e3")"
"$BIN" train "${COMMON[@]}" --cp 2 >/dev/null 2>"$TMP/e4"; c=$?
[ $c = 2 ] && grep -q "cp 2" "$TMP/e4" && ok "cp 2 on one rank: $(head -1 "$TMP/e4")" || bad "cp 2 on one rank: exit $c $(cat "$TMP/e4")"

finish
