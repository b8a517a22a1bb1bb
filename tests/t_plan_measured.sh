#!/usr/bin/env bash
# t_plan_measured.sh — issue 13 item 2: for every layout of tests/plan_layouts.txt (dp, tp, sp,
# pp with naive/gpipe/1f1b, cp, ZeRO 0-3, recompute none/selective/full; the tiny model, two
# steps), `mptrain plan`'s largest rank equals the trainer's own plan and is within 2% of the
# arena's measured peak (the end line of --log). Prints the resident high-water mark beside
# them (VmHWM: the process's libraries, MPI's buffers and the code are on top of the arena, so
# it is shown, not asserted). Usage: bash tests/t_plan_measured.sh BUILD_DIR
set -u
source "$(dirname "$0")/lib.sh"
tmp=$TMP
n=0
while IFS='|' read -r np opts; do
  case "$np" in ''|'#'*) continue ;; esac
  n=$((n + 1))
  # shellcheck disable=SC2086
  "$BIN" plan --model tiny --batch 8 --threads 1 $opts --json >"$tmp/$n.plan.json" \
    || { bad "[$opts] plan"; continue; }
  if [ "$np" = 1 ]; then
    # shellcheck disable=SC2086
    "$BIN" train --model tiny --batch 8 --steps 2 --quiet --threads 1 --log "$tmp/$n.jsonl" \
      $opts >/dev/null </dev/null
  else
    # shellcheck disable=SC2086
    "${MPIRUN[@]}" -np "$np" "$BIN" train --model tiny --batch 8 --steps 2 --quiet --threads 1 \
      --log "$tmp/$n.jsonl" $opts >/dev/null </dev/null
  fi || { bad "[$opts] train"; continue; }
  if /usr/bin/python3 - "$tmp/$n.plan.json" "$tmp/$n.jsonl" "${opts:-(one rank)}" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))['memory_bytes_per_rank']['total']
end = [json.loads(l) for l in open(sys.argv[2])][-1]
trainer = max(r['planned_mem_bytes'] for r in end['ranks'])
peak = end['peak_mem_bytes']
rss = max(r['rss_peak_bytes'] for r in end['ranks'])
print('%-50s plan %9d  trainer %9d  arena peak %9d (%+.2f%%)  VmHWM %10d' % (
    sys.argv[3], plan, trainer, peak, 100.0 * (peak / plan - 1), rss))
sys.exit(0 if plan == trainer and abs(peak / plan - 1) <= 0.02 else 1)
PY
  then ok "[${opts:-one rank}] plan = trainer's plan, arena peak within 2%"
  else bad "[${opts:-one rank}] plan, trainer's plan and arena peak differ"; fi
done <"${PLAN_LAYOUTS:-$HERE/plan_layouts.txt}" # (PLAN_LAYOUTS: another list, to try a few)
[ "$n" -ge 20 ] && ok "$n layouts" || bad "only $n layouts (want >= 20)"
finish
