#!/usr/bin/env bash
# t_plan.sh — `mptrain plan` and `mptrain simulate` end to end: the JSON fields of CONTRACT §7;
# plan's memory of the largest rank equal to the trainer's own plan and to the arena's measured
# peak for a few layouts that run here (one rank; dp 2 with ZeRO 2; pp 2 with 1f1b; tp 2 with
# sp; tests/t_plan_measured.sh has 29); the layout search listing candidates best first;
# simulate's timeline and Chrome trace; bf16 memory from the runtime's tables; bad input
# exiting 2 with "mptrain: error:" (ep, cp not splitting T, unknown option, bad layout); train
# --mem-limit suggesting the best layout of its rank count that fits (and that layout training
# within the limit).
# Usage: bash tests/t_plan.sh BUILD_DIR   (from the repo root, as ctest runs it)
set -u
source "$(dirname "$0")/lib.sh"
tmp=$TMP
py() { /usr/bin/python3 -c "$@"; }

# JSON fields of plan and simulate.
check "plan --json" sh -c "'$BIN' plan --model gpt3-175b --tp 8 --pp 16 --dp 8 --batch 1536 \
  --microbatches 192 --recompute full --cluster a100-80g --json >'$tmp/plan.json'"
check "plan fields" py "
import json; o = json.load(open('$tmp/plan.json')); m = o['memory_bytes_per_rank']
assert all(k in m for k in ('params','grads','optimizer','activations','other','total')), m
assert m['total'] == sum(m[k] for k in ('params','grads','optimizer','activations','other'))
assert all(k in o for k in ('step_time_s','tflops_per_gpu','mfu','bubble')), o
assert 0 < o['bubble'] < 1 and 0 < o['mfu'] < 1 and o['step_time_s'] > 0"
check "simulate --json" sh -c "'$BIN' simulate --model gpt-1t --tp 8 --pp 64 --dp 6 \
  --batch 3072 --microbatches 512 --recompute full --precision bf16 --json >'$tmp/sim.json'"
check "simulate fields; bf16 memory from the runtime's tables" py "
import json; o = json.load(open('$tmp/sim.json'))
assert all(k in o for k in ('step_time_s','tflops_per_gpu','mfu','bubble')), o
assert o['memory_bytes_per_rank']['total'] > 0, o
assert 140 < o['tflops_per_gpu'] < 190, o['tflops_per_gpu']"

# plan = the trainer's plan = the arena's measured peak, for layouts that run here.
compare() { # compare NAME NP TRAIN/PLAN-OPTIONS...
  local name="$1" np="$2"; shift 2
  "$BIN" plan --model tiny --batch 8 "$@" --json >"$tmp/$name.plan.json" || { bad "$name plan"; return; }
  if [ "$np" = 1 ]; then
    "$BIN" train --model tiny --batch 8 --steps 2 --quiet --log "$tmp/$name.jsonl" "$@" >/dev/null
  else
    "${MPIRUN[@]}" -np "$np" "$BIN" train --model tiny --batch 8 --steps 2 --quiet --threads 1 \
      --log "$tmp/$name.jsonl" "$@" >/dev/null
  fi || { bad "$name train"; return; }
  if py "
import json
plan = json.load(open('$tmp/$name.plan.json'))['memory_bytes_per_rank']['total']
end = [json.loads(l) for l in open('$tmp/$name.jsonl')][-1]
trainer = max(r['planned_mem_bytes'] for r in end['ranks']); peak = end['peak_mem_bytes']
print('$name: plan %d, trainer plan %d, measured peak %d (%+.2f%%)' % (plan, trainer, peak,
      100.0 * (peak / plan - 1)))
assert plan == trainer and abs(peak / plan - 1) <= 0.02"; then ok "$name: plan = trainer = peak"
  else bad "$name: plan, trainer and peak differ"; fi
}
compare one 1 --recompute selective
compare dp2-zero2 2 --dp 2 --zero 2
compare pp2-1f1b 2 --pp 2 --microbatches 4 --schedule 1f1b
compare tp2-sp 2 --tp 2 --sp --recompute full

# search: candidates best first, each fitting. In the checking builds (SMALL, tests/lib.sh) the
# same search over gpt-7.5b on 64 GPUs (10,585 layouts fit, 1.5 CPU-s here) instead of gpt3-175b
# on 1024 (9,112 fit, but ~55 CPU-s in the normal build under load and over 84 under ASan)
SEARCH=(--model gpt3-175b --gpus 1024 --batch 1536); GPUS=1024
[ "$SMALL" = 1 ] && SEARCH=(--model gpt-7.5b --gpus 64 --batch 512) && GPUS=64
check "search --json (${SEARCH[*]})" sh -c "'$BIN' plan ${SEARCH[*]} --top 5 \
  --json >'$tmp/search.json'"
check "search candidates best first" py "
import json; o = json.load(open('$tmp/search.json')); c = o['candidates']
assert len(c) == 5 and o['layouts_fit'] >= 5, o
t = [x['tokens_per_s'] for x in c]; assert t == sorted(t, reverse=True), t
assert all(x['memory_bytes_per_rank']['total'] <= 80e9 for x in c)
assert all(x['layout']['dp'] * x['layout']['tp'] * x['layout']['cp'] * x['layout']['pp'] == $GPUS
           for x in c)"
check "search prints the best train command" sh -c "'$BIN' plan --model gpt-7.5b --gpus 64 \
  --batch 512 --top 3 | grep -q 'best: mptrain train --dp'"

# MoE: memory, the all-to-alls and a search that picks expert parallelism
check "MoE plan and simulate" py "
import json, subprocess
run = lambda *a: json.loads(subprocess.check_output(['$BIN', *a, '--json']))
p = run('plan', '--model', 'gpt-1.7b', '--experts', '16', '--top-k', '2', '--dp', '8', '--ep',
        '8', '--batch', '64', '--microbatches', '8', '--precision', 'bf16', '--cluster',
        'a100-80g')
assert p['traffic_bytes_per_gpu']['ep'] > 0 and p['ep_alltoall_s'] > 0, p
s = run('plan', '--model', 'gpt-1.7b', '--experts', '32', '--top-k', '2', '--gpus', '16',
        '--batch', '64', '--precision', 'bf16', '--moe-dropless-bound', '2', '--top', '3')
assert s['candidates'][0]['layout']['ep'] > 1, s['candidates'][0]"

# simulate: timeline, trace, SVG
check "timeline" sh -c "'$BIN' simulate --model gpt-39b --tp 8 --pp 2 --dp 4 --batch 64 \
  --microbatches 16 --precision bf16 --timeline | grep -q '^rank  1 |.*B'"
check "trace" sh -c "'$BIN' simulate --model gpt-39b --tp 8 --pp 4 --dp 2 --batch 64 \
  --microbatches 8 --schedule zb-h1 --precision bf16 --trace '$tmp/trace.json' >/dev/null"
check "svg" sh -c "'$BIN' simulate --model gpt-39b --tp 8 --pp 4 --dp 2 --batch 64 \
  --microbatches 8 --schedule zb-h1 --precision bf16 --svg '$tmp/step.svg' >/dev/null"
check "svg: F, B, W per rank, the dp reduction and the optimizer" py "
import xml.dom.minidom as x; r = x.parse('$tmp/step.svg').getElementsByTagName('rect')
t = [e.getElementsByTagName('title')[0].firstChild.data for e in r if e.getElementsByTagName('title')]
assert sum(s[0] == 'F' for s in t) == 4 * 8 and sum(s[0] == 'W' for s in t) == 4 * 8, t[:8]
assert t.count('data-parallel reduction') == 4 and t.count('optimizer') == 4, set(t)"
check "trace is Chrome JSON with F, B, W" py "
import json; e = json.load(open('$tmp/trace.json'))['traceEvents']
names = {x['name'][0] for x in e}; assert names == {'F', 'B', 'W'}, names
assert len({x['pid'] for x in e}) == 4"

# bad input: exit 2 with a message
bad_input() { # bad_input WHAT ARGS...
  local what="$1"; shift
  "$BIN" "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  if [ "$rc" = 2 ] && grep -q '^mptrain: error: ' "$tmp/err"; then ok "$what"
  else bad "$what (exit $rc: $(cat "$tmp/err"))"; fi
}
bad_input "plan ep 2" plan --model gpt-7.5b --dp 2 --ep 2 --batch 64
bad_input "plan ep 3 of 8 experts" plan --model tiny --experts 8 --dp 3 --ep 3 --batch 6
bad_input "plan experts with sp" plan --model tiny --experts 4 --tp 2 --sp
bad_input "plan cp 3 (seq-len 2048 not in 6 chunks)" plan --model gpt-7.5b --dp 2 --cp 3 --batch 64
bad_input "plan unknown option" plan --frobnicate 3
bad_input "plan batch" plan --model tiny --dp 3 --batch 8
bad_input "plan gpus mismatch" plan --model tiny --dp 2 --gpus 4
bad_input "simulate tp 5" simulate --model gpt-7.5b --tp 5
bad_input "simulate cluster" simulate --model tiny --cluster nowhere
bad_input "simulate schedule" simulate --model tiny --pp 2 --schedule sideways
# train --mem-limit: exit 2 before training, every rank suggesting the best layout of the same
# rank count that fits; that layout then trains within the limit
refused "train --mem-limit suggests a layout" 2 "the best layout of 2 ranks that fits" -- \
  "${MPIRUN[@]}" -np 2 "$BIN" train --model tiny --batch 8 --steps 1 --dp 2 --threads 1 \
  --mem-limit 5M --quiet
hint=$(grep -m1 -o -- '--dp [0-9].*$' "$TMP/refused$refused_n/err")
# shellcheck disable=SC2086
if [ -n "$hint" ] && "${MPIRUN[@]}" -np 2 "$BIN" train --model tiny --batch 8 --steps 1 \
     --threads 1 --mem-limit 5M --quiet $hint >/dev/null 2>"$tmp/hint.err" </dev/null; then
  ok "the suggested layout ($hint) trains within --mem-limit 5M"
else bad "the suggested layout '$hint' does not train: $(head -c 400 "$tmp/hint.err")"; fi
# the same for an MoE model: the search now has ep, and the hint names it
refused "train --mem-limit suggests a layout with --ep (MoE)" 2 "fits .*--ep 2" -- \
  "${MPIRUN[@]}" -np 2 "$BIN" train --model tiny --batch 8 --steps 1 --dp 2 --threads 1 \
  --experts 8 --top-k 2 --mem-limit 15M --quiet
hint=$(grep -m1 -o -- '--dp [0-9].*$' "$TMP/refused$refused_n/err")
# shellcheck disable=SC2086
if [ -n "$hint" ] && "${MPIRUN[@]}" -np 2 "$BIN" train --model tiny --batch 8 --steps 1 \
     --threads 1 --experts 8 --top-k 2 --mem-limit 15M --quiet $hint >/dev/null \
     2>"$tmp/hint.err" </dev/null; then
  ok "the suggested MoE layout ($hint) trains within --mem-limit 15M"
else bad "the suggested MoE layout '$hint' does not train: $(head -c 400 "$tmp/hint.err")"; fi
check "plan --help" sh -c "'$BIN' plan --help | grep -q -- '--gpus'"
# bench/plan_vs_measured.sh's probe between the steps (train --debug-probe-seconds): every step
# line but the last of a 2-rank run carries probe_solo and probe_pair (FLOP/s, > 0 on an
# AVX2+FMA CPU); the last none (the bench probes after the run); without the option none does
if "${MPIRUN[@]}" -np 2 "$BIN" train --model tiny --batch 8 --steps 3 --dp 2 --threads 1 --quiet \
     --debug-probe-seconds 0.01 --log "$tmp/probe.jsonl" >/dev/null 2>"$tmp/probe.err" </dev/null &&
   "$BIN" train --model tiny --batch 8 --steps 1 --threads 1 --quiet \
     --log "$tmp/noprobe.jsonl" >/dev/null 2>>"$tmp/probe.err" </dev/null &&
   /usr/bin/python3 - "$tmp/probe.jsonl" "$tmp/noprobe.jsonl" <<'PY'
import json, sys
on = [json.loads(l) for l in open(sys.argv[1])]
off = [json.loads(l) for l in open(sys.argv[2])]
steps = [l for l in on if "step_ms" in l]
sys.exit(not (len(steps) == 3 and all(l.get("probe_pair", 0) > 0 and l.get("probe_solo", 0) > 0
                                      for l in steps[:-1]) and "probe_pair" not in steps[-1]
              and not any("probe_pair" in l for l in off)))
PY
then ok "train --debug-probe-seconds logs the machine probe between the steps (2 ranks)"
else bad "train --debug-probe-seconds: probe_solo / probe_pair missing between the steps, or after the last: $(head -c 400 "$tmp/probe.err")"; fi
finish
