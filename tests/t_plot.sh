#!/usr/bin/env bash
# `mptrain plot`: the SVG parses as XML and holds, for every log, one path per series (loss,
# val_loss where logged, lr, tokens_per_s, peak_mem_bytes) with one point per logged step; a real
# training log plots; bad input exits 2 with a message.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

# two fabricated logs: 20 and 12 steps, validation every 5 steps in the first
/usr/bin/python3 - "$TMP" <<'PY'
import json, sys, math
d = sys.argv[1]
for name, steps, val in (("a", 20, 5), ("b", 12, 0)):
    with open(f"{d}/{name}.jsonl", "w") as f:
        f.write(json.dumps({"event": "start", "batch": 8, "seq_len": 64}) + "\n")
        for s in range(1, steps + 1):
            line = {"step": s, "loss": 5.0 / math.sqrt(s), "lr": 1e-3 * s / steps,
                    "tokens_per_s": 1000 + s, "peak_mem_bytes": 2 ** 20 * (10 + s)}
            if val and s % val == 0: line["val_loss"] = 5.5 / math.sqrt(s)
            f.write(json.dumps(line) + "\n")
        f.write(json.dumps({"event": "end", "steps": steps}) + "\n")
PY
check "plot two logs" "$BIN" plot "$TMP/a.jsonl" "$TMP/b.jsonl" --svg "$TMP/ab.svg" --label "first,second"
check "plot --x tokens" "$BIN" plot "$TMP/a.jsonl" --x tokens --svg "$TMP/tok.svg"
/usr/bin/python3 - "$TMP" <<'PY' && ok "SVG parses; every series has one point per step; legend and tokens axis" || bad "SVG content"
import sys, re, xml.etree.ElementTree as ET
d = sys.argv[1]
ns = {"s": "http://www.w3.org/2000/svg"}
def paths(file):
    root = ET.parse(file).getroot()
    return root, {p.get("id"): len(re.findall(r"[ML]", p.get("d"))) for p in root.iterfind(".//s:path", ns)}
root, p = paths(f"{d}/ab.svg")
want = {"run0-loss": 20, "run0-val_loss": 4, "run0-lr": 20, "run0-tokens_per_s": 20,
        "run0-peak_mem_bytes": 20, "run1-loss": 12, "run1-lr": 12, "run1-tokens_per_s": 12,
        "run1-peak_mem_bytes": 12}
assert p == want, f"paths {p} != {want}"
texts = [t.text for t in root.iterfind(".//s:text", ns)]
assert "first" in texts and "second" in texts, texts
_, p = paths(f"{d}/tok.svg")
assert p["run0-loss"] == 20
assert "tokens" in [t.text for t in ET.parse(f"{d}/tok.svg").getroot().iterfind(".//s:text", ns)]
PY

# a real run's log
"$BIN" train --model tiny --layers 1 --d-model 32 --heads 2 --seq-len 16 --batch 2 --steps 5 \
  --threads 1 --quiet --log "$TMP/real.jsonl" && "$BIN" plot "$TMP/real.jsonl" --svg "$TMP/real.svg" &&
  /usr/bin/python3 -c "
import sys, xml.etree.ElementTree as ET
ids = [p.get('id') for p in ET.parse(sys.argv[1]).getroot().iter('{http://www.w3.org/2000/svg}path')]
assert 'run0-loss' in ids and 'run0-lr' in ids, ids" "$TMP/real.svg" && ok "a training log plots" || bad "real log"

# bad input: exit 2 and a message
expect2() { local what=$1; shift; "$@" >/dev/null 2>"$TMP/err"; local c=$?
  if [ $c = 2 ] && grep -q "mptrain: error:" "$TMP/err"; then ok "$what: $(head -c 120 "$TMP/err")"; else bad "$what: exit $c"; fi; }
echo "not json" > "$TMP/bad.jsonl"
printf '{"event":"start"}\n' > "$TMP/nosteps.jsonl"
expect2 "no log given" "$BIN" plot --svg "$TMP/x.svg"
expect2 "missing file" "$BIN" plot "$TMP/missing.jsonl"
expect2 "not JSON" "$BIN" plot "$TMP/bad.jsonl"
expect2 "no steps" "$BIN" plot "$TMP/nosteps.jsonl"
expect2 "bad --x" "$BIN" plot "$TMP/a.jsonl" --x time
expect2 "unwritable output" "$BIN" plot "$TMP/a.jsonl" --svg "$TMP/no/such/dir.svg"
finish
