#!/usr/bin/env bash
# t_schedule.sh — `mptrain schedule` end to end: the 1f1b timeline for 4 ranks and 8 micro-batches
# (rank lines in the [F0][F1]... style, warm-up of p-r-1 forwards, simulated bubble equal to the
# theoretical 3/11), zb-h1 and interleaved runs, --actions, --svg writing a well-formed SVG (xmllint
# when installed, else grep), --help, and bad input exiting 2 with "mptrain: error:".
# Usage: bash tests/t_schedule.sh BUILD_DIR   (from the repo root, as ctest runs it)
set -u
source "$(dirname "$0")/lib.sh"
tmp=$TMP
has() { grep -qF -- "$2" "$1"; }           # has FILE TEXT
has_re() { grep -qE -- "$2" "$1"; }        # has_re FILE REGEX

# 1f1b, p = 4, m = 8: one line per rank, warm-up of p-r-1 forwards then F,B alternating.
out="$tmp/1f1b.txt"
check "1f1b runs" "$BIN" schedule --pp 4 --microbatches 8 --schedule 1f1b >"$out"
cat "$out"
check "4 rank lines" test "$(grep -c '^rank [0-9]: ' "$out")" -eq 4
check "rank 0 starts with four forwards" has_re "$out" '^rank 0: \[F0\]\[F1\]\[F2\]\[F3\]\[  \]'
check "rank 3 alternates F0 B0 F1" has_re "$out" '^rank 3: (\[  \]){3}\[F0\]\[B0 *\]\[F1\]\[B1 *\]'
check "rank 0 ends with B7" has_re "$out" '^rank 0: .*\[B7 *\]$'
check "every rank shows 8 forwards" test "$(grep '^rank' "$out" | grep -o '\[F[0-9]\]' | wc -l)" -eq 32
check "every rank shows 8 backwards" test "$(grep '^rank' "$out" | grep -oE '\[B[0-9] *\]' | wc -l)" -eq 32
check "rank lines equally long" test "$(grep '^rank' "$out" | awk '{print length($0)}' | sort -u | wc -l)" -eq 1
check "legend explains the cells" has "$out" "legend:"
check "simulated bubble 3/11" has_re "$out" 'simulated 0\.2727 \(27\.27%\)'
check "theoretical bubble 3/11" has_re "$out" 'theoretical \(p-1\)/\(m\+p-1\) = 0\.2727'
check "memory: in flight 4 3 2 1" has_re "$out" 'per rank: 4 3 2 1$'

# naive, gpipe, zb-h1 and interleaved.
check "naive bubble 3/4" sh -c "'$BIN' schedule --pp 4 --microbatches 2 --schedule naive | grep -q 'simulated 0.7500'"
check "gpipe bubble 3/11" sh -c "'$BIN' schedule --pp 4 --microbatches 8 --schedule gpipe | grep -q 'simulated 0.2727'"
out="$tmp/zb.txt"
check "zb-h1 runs" "$BIN" schedule --pp 4 --microbatches 8 --schedule zb-h1 >"$out"
check "zb-h1 has W actions" has_re "$out" '^rank 0: .*\[W7\]$'
check "zb-h1 bubble 1/9" has_re "$out" 'simulated 0\.1111 .* = 0\.1111'
out="$tmp/int.txt"
check "interleaved runs" "$BIN" schedule --pp 4 --microbatches 8 --schedule interleaved --virtual-stages 2 --actions >"$out"
check "interleaved names chunks" has_re "$out" '^rank 0: \[F0\.0 *\]'
check "interleaved bubble 3/19" has_re "$out" 'simulated 0\.1579 .* = 0\.1579'
check "--actions lists communication" has_re "$out" '^rank 1: recv-act0\.0<0 .*send-act0\.0>2'
check "costs change the drawing" sh -c "'$BIN' schedule --pp 2 --microbatches 2 --cost-f 1 --cost-b 2 --cost-w 0 | grep -qF '[B0    ]'"

# --svg
svg="$tmp/s.svg"
check "--svg runs" sh -c "'$BIN' schedule --pp 4 --microbatches 8 --schedule 1f1b --svg '$svg' >/dev/null"
check "svg written" test -s "$svg"
if command -v xmllint >/dev/null 2>&1; then
  check "svg is well-formed XML" xmllint --noout "$svg"
else
  check "svg opens and closes" sh -c "head -2 '$svg' | grep -q '<svg' && tail -1 '$svg' | grep -q '</svg>'"
fi
check "svg has one rect per action" test "$(grep -c '<rect [^>]*><title>' "$svg")" -eq 64
check "svg names actions" has "$svg" ">F0<"

# --help and bad input
check "--help exits 0" sh -c "'$BIN' schedule --help | grep -q 'usage: mptrain schedule'"
bad() { # bad "what" args... : exit 2 and "mptrain: error:" on stderr
  local what="$1"; shift
  "$BIN" schedule "$@" >/dev/null 2>"$tmp/err"
  local rc=$?
  check "$what exits 2 (got $rc)" test "$rc" -eq 2
  check "$what says mptrain: error:" has "$tmp/err" "mptrain: error: "
}
bad "unknown schedule" --schedule pipedream
bad "pp 0" --pp 0
bad "microbatches 0" --microbatches 0
bad "interleaved m % p" --schedule interleaved --pp 4 --microbatches 6
bad "virtual stages without interleaved" --schedule 1f1b --virtual-stages 2
bad "interleaved v 1" --schedule interleaved --virtual-stages 1
bad "negative cost" --cost-b -1
bad "zero forward cost" --cost-f 0
bad "non-number" --pp four
bad "unknown option" --stages 4
bad "unwritable svg" --svg "$tmp/no/such/dir/x.svg"

finish
