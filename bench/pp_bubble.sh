#!/usr/bin/env bash
# The measured pipeline bubble of 1F1B on 2 stages equals the theory, (p-1)/(m+p-1), within 2
# points (tests/t_pp_bubble.sh runs it alone, with retries). Each stage
# needs a core of its own. Usage: bash bench/pp_bubble.sh BUILD_DIR The model keeps the
# two stages equal (a 32-token vocabulary makes the head negligible next to the blocks).
set -uo pipefail
BIN="$1/mptrain"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 - "$TMP/v32.bin" <<'PY'
import struct, sys, random
random.seed(1)
n = 200000
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
    f.write(struct.pack(f"<{n}H", *[random.randrange(32) for _ in range(n)]))
PY
fails=0
for m in 4 8; do
  mpirun --oversubscribe --bind-to none -np 2 "$BIN" train --model tiny --layers 4 --d-model 256 \
    --heads 4 --seq-len 128 --vocab 32 --data "$TMP/v32.bin" --batch 32 --microbatches $m --steps 8 \
    --threads 1 --quiet --pp 2 --schedule 1f1b --log "$TMP/b$m.jsonl" >/dev/null 2>&1 || { echo "FAIL run m=$m"; fails=1; continue; }
  /usr/bin/python3 - "$TMP/b$m.jsonl" $m <<'PY' || fails=1
import json, statistics, sys
m, p = int(sys.argv[2]), 2
bubbles = [json.loads(l)["bubble"] for l in open(sys.argv[1]) if '"bubble"' in l][3:]
got, want = statistics.median(bubbles), (p - 1) / (m + p - 1)
ok = abs(got - want) <= 0.02
print(f"{'ok  ' if ok else 'FAIL'} pp 2, m {m}, 1F1B: measured bubble {got:.4f} (median of {len(bubbles)} steps), theory {want:.4f}")
sys.exit(0 if ok else 1)
PY
done
[ $fails = 0 ] && echo "2 passed, 0 failed" || echo "some failed"
exit $fails
