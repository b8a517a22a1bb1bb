#!/usr/bin/env bash
# t_tokenize.sh — `mptrain tokenize` end to end: byte and gpt2 token files of the right size
# (1024-byte header + 2 bytes per token), folder input in name order with <|endoftext|> between
# documents, --help, and bad input exiting 2 with "mptrain: error:". The gpt2 checks need the
# BPE files that scripts/setup.sh fetches into .cache; where they are missing the test fails.
# Usage: bash tests/t_tokenize.sh BUILD_DIR   (from the repo root, as ctest runs it)
set -u
source "$(dirname "$0")/lib.sh"
tmp=$TMP
size_of() { stat -c %s "$1" 2>/dev/null || echo -1; }
# The token count stored in the header: int32 little-endian at byte 8.
count_of() { od -An -t d4 -j 8 -N 4 "$1" | tr -d ' '; }

printf 'Call me Ishmael. Some years ago—never mind how long precisely.\n' >"$tmp/a.txt"
bytes=$(size_of "$tmp/a.txt")

# byte: one token per byte.
check "byte tokenize runs" "$BIN" tokenize --in "$tmp/a.txt" --out "$tmp/a.bin"
check "byte file is 1024 + 2*$bytes bytes" test "$(size_of "$tmp/a.bin")" -eq $((1024 + 2 * bytes))
check "byte header counts $bytes tokens" test "$(count_of "$tmp/a.bin")" -eq "$bytes"
check "header magic 20240520, version 1" \
  test "$(od -An -t d4 -N 8 "$tmp/a.bin" | tr -s ' ')" = " 20240520 1"

# A folder of .txt files: byte joins them with nothing between.
mkdir "$tmp/docs"
printf 'second' >"$tmp/docs/b.txt"
printf 'first ' >"$tmp/docs/a.txt"
printf 'ignored' >"$tmp/docs/c.md"
check "byte folder tokenize" "$BIN" tokenize --in "$tmp/docs" --out "$tmp/d.bin" --tokenizer byte
check "folder joins a.txt then b.txt" \
  test "$(tail -c 24 "$tmp/d.bin" | od -An -t u2 | tr -s ' \n' ' ')" = \
       " 102 105 114 115 116 32 115 101 99 111 110 100 "

# gpt2 (needs the vocabulary from scripts/setup.sh, which `make test` and CI run first; the binary
# finds .cache beside build/). Without it the gpt2 checks fail: they are never skipped.
if [ -f .cache/gpt2-bpe/encoder.json ] && [ -f .cache/gpt2-bpe/vocab.bpe ]; then
  export MPTRAIN_CACHE="$PWD/.cache"
  out=$("$BIN" tokenize --in "$tmp/a.txt" --out "$tmp/g.bin" --tokenizer gpt2)
  check "gpt2 tokenize runs" test $? -eq 0
  echo "$out"
  n=$(count_of "$tmp/g.bin")
  check "gpt2 file is 1024 + 2*$n bytes" test "$(size_of "$tmp/g.bin")" -eq $((1024 + 2 * n))
  check "gpt2 needs fewer tokens than bytes ($n < $bytes)" test "$n" -lt "$bytes" -a "$n" -gt 5
  check "summary line names the counts" grep -q "$bytes bytes.* $n gpt2 tokens.*tokens/s" <<<"$out"
  # "first " + "second" as two documents: [first][ ]<eot>[second] = 11085, 220, 50256, 12227.
  check "gpt2 folder tokenize" "$BIN" tokenize --in "$tmp/docs" --out "$tmp/e.bin" --tokenizer gpt2
  check "documents joined by <|endoftext|>" \
    test "$(tail -c +1025 "$tmp/e.bin" | od -An -t u2 | tr -s ' \n' ' ')" = \
         " 11085 220 50256 12227 "
else
  bad "gpt2 checks: .cache/gpt2-bpe/encoder.json and vocab.bpe are missing (run bash scripts/setup.sh)"
fi

# --help: usage on stdout, exit 0.
check "--help exits 0 with usage" \
  bash -c "'$BIN' tokenize --help | grep -q 'usage: mptrain tokenize'"

# Bad input: exit 2 and "mptrain: error:" on stderr, no output file.
expect_2() { # expect_2 "what" args...
  local what="$1"; shift
  "$BIN" tokenize "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  check "$what exits 2 (got $rc)" test "$rc" -eq 2
  check "$what says mptrain: error:" grep -q "^mptrain: error: " "$tmp/err"
}
expect_2 "missing input" --in "$tmp/no-such.txt" --out "$tmp/x.bin"
expect_2 "missing --out" --in "$tmp/a.txt"
expect_2 "unknown option" --in "$tmp/a.txt" --out "$tmp/x.bin" --frobnicate
expect_2 "unknown tokenizer" --in "$tmp/a.txt" --out "$tmp/x.bin" --tokenizer sentencepiece
expect_2 "unwritable output" --in "$tmp/a.txt" --out "$tmp/no-such-dir/x.bin"
MPTRAIN_CACHE="$tmp/no-cache" expect_2 "missing gpt2 vocabulary" --in "$tmp/a.txt" \
  --out "$tmp/x.bin" --tokenizer gpt2
check "no output file after errors" test ! -e "$tmp/x.bin"

finish
