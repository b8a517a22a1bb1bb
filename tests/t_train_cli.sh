#!/usr/bin/env bash
# The train command as a user meets it: checkpoints and bit-exact resume, the memory plan
# against the measured peak, and bad input failing with exit 2 and a message.
set -uo pipefail
BIN="$1/mptrain"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
fails=0; passes=0
ok()   { passes=$((passes+1)); echo "ok   $*"; }
bad()  { fails=$((fails+1)); echo "FAIL $*"; }
MODEL=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --threads 1 --quiet)

# expect_exit CODE PATTERN -- command...: exit status, and "mptrain: error: " with PATTERN on stderr
expect_exit() {
  local code=$1 pat=$2; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"; local got=$?
  if [ "$got" = "$code" ] && grep -q "^mptrain: error: " "$TMP/err" && grep -q -- "$pat" "$TMP/err"; then ok "exit $code: $(head -c 150 "$TMP/err")"
  else bad "expected exit $code and '$pat' from: $* (got $got: $(cat "$TMP/err"))"; fi
}

# --- resume is bit-identical to a run that never stopped ---------------------------------------
"$BIN" train "${MODEL[@]}" --steps 6 --log "$TMP/a.jsonl" --save "$TMP/a" --save-every 3 || bad "run A"
"$BIN" train "${MODEL[@]}" --steps 6 --log "$TMP/b.jsonl" --save "$TMP/b" --resume "$TMP/a/step_000003" || bad "run B"
la=$(grep '"step":[456],' "$TMP/a.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
lb=$(grep '"step":[456],' "$TMP/b.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/')
if [ "$(echo "$la" | wc -l)" = 3 ] && [ -n "$la" ] && [ "$la" = "$lb" ]; then ok "resumed losses equal: $(echo $lb)"; else bad "resumed losses differ: [$la] vs [$lb]"; fi
if cmp -s "$TMP/a/step_000006/model.safetensors" "$TMP/b/step_000006/model.safetensors"; then ok "resumed final weights bit-identical"; else bad "resumed weights differ"; fi
[ "$(readlink "$TMP/a/latest")" = "step_000006" ] || [ "$(basename "$(readlink "$TMP/a/latest")")" = "step_000006" ] && ok "latest -> step_000006" || bad "latest is $(readlink "$TMP/a/latest")"
"$BIN" train "${MODEL[@]}" --steps 6 --resume "$TMP/a" --log "$TMP/c.jsonl" && grep -q '"start_step":6' "$TMP/c.jsonl" && ok "--resume DIR takes its latest" || bad "--resume DIR"

# --- the memory plan equals the measured peak ------------------------------------------------
# Both fields must be present (as positive integers) in the log's end line: a log without them
# fails rather than comparing two empty values.
if mem=$(/usr/bin/python3 - "$TMP/a.jsonl" 2>&1 <<'PY'
import json, sys
end = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if end.get("event") != "end":
    sys.exit(f"the last log line is not the end event: {end}")
peak, plan = end.get("peak_mem_bytes"), end.get("planned_mem_bytes")
if not (isinstance(peak, int) and isinstance(plan, int) and peak > 0 and plan > 0):
    sys.exit(f"the end line lacks positive peak_mem_bytes / planned_mem_bytes: {peak} / {plan}")
print(f"plan {plan} = measured peak {peak}" if plan == peak else f"plan {plan} != measured peak {peak}")
sys.exit(0 if plan == peak else 1)
PY
); then ok "memory: $mem"; else bad "memory: $mem"; fi

# --- bad input: exit 2 with a message, before training ---------------------------------------
head -c 4096 /dev/urandom > "$TMP/junk.bin"
printf 'Some plain text to tokenize with bytes above fifty. ' > "$TMP/text.txt"
"$BIN" tokenize --in "$TMP/text.txt" --out "$TMP/text.bin" >/dev/null || bad "tokenize"
expect_exit 2 "magic" -- "$BIN" train "${MODEL[@]}" --data "$TMP/junk.bin"
expect_exit 2 "no such\|cannot\|missing\|not found" -- "$BIN" train "${MODEL[@]}" --data "$TMP/nope.bin"
expect_exit 2 "vocab" -- "$BIN" train "${MODEL[@]}" --vocab 50 --data "$TMP/text.bin"
expect_exit 2 "mem-limit" -- "$BIN" train "${MODEL[@]}" --mem-limit 64K
expect_exit 2 "needs --experts" -- "$BIN" train "${MODEL[@]}" --ep 2   # ep splits experts
expect_exit 2 "need 2 ranks" -- "$BIN" train "${MODEL[@]}" --cp 2
expect_exit 2 "divisible" -- "$BIN" train "${MODEL[@]}" --batch 6 --microbatches 4
expect_exit 2 "unknown option" -- "$BIN" train --bogus 1
expect_exit 2 "unknown option '--microbatch' for train: did you mean --microbatches?" -- "$BIN" train --microbatch 2
expect_exit 2 "did you mean --batch?" -- "$BIN" train --batch-size 8
expect_exit 2 "--schedule 1F1B: unknown pipeline schedule" -- "$BIN" train "${MODEL[@]}" --schedule 1F1B
expect_exit 2 "unexpected argument '-steps': did you mean --steps?" -- "$BIN" train -steps 3
expect_exit 2 "did you mean --prompt?" -- "$BIN" generate --prompt-text hi
expect_exit 2 "heads" -- "$BIN" train --model tiny --heads 5
expect_exit 2 "" -- "$BIN" train "${MODEL[@]}" --steps x
cp -r "$TMP/a/step_000003" "$TMP/corrupt"
printf 'XXXX' | dd of="$TMP/corrupt/model.safetensors" bs=1 seek=2000 conv=notrunc 2>/dev/null
expect_exit 2 "model.safetensors" -- "$BIN" train "${MODEL[@]}" --steps 6 --resume "$TMP/corrupt"
expect_exit 2 "" -- "$BIN" frobnicate
expect_exit 2 "no command given" -- "$BIN"
# --save a path that cannot hold checkpoints: exit 2 before the first step (it used to train to
# the end and then fail with exit 1 at the save); the probe leaves nothing behind
expect_exit 2 "--save .*text.txt is a file, not a directory" -- "$BIN" train "${MODEL[@]}" --steps 2 \
  --save "$TMP/text.txt" --log "$TMP/save1.jsonl"
! grep -q '"step":' "$TMP/save1.jsonl" 2>/dev/null && ok "--save a file: no step ran" || bad "--save a file: steps ran"
expect_exit 2 "--save .*/text.txt/sub: Not a directory" -- "$BIN" train "${MODEL[@]}" --steps 2 \
  --save "$TMP/text.txt/sub"
expect_exit 2 "--save /proc/mpt-no: cannot create /proc/mpt-no" -- "$BIN" train "${MODEL[@]}" --steps 2 \
  --save /proc/mpt-no
"$BIN" train "${MODEL[@]}" --steps 0 --save "$TMP/new/a/b" >/dev/null 2>&1 && [ -L "$TMP/new/a/b/latest" ] &&
  [ -z "$(find "$TMP/a" "$TMP/new" -name '.mpt-probe-*')" ] && ok "--save into new directories, no probe left" ||
  bad "--save into new directories"
# a run from a checkpoint takes its model from it: an architecture option that differs is refused
# (it used to be ignored without a word), one that agrees is fine
expect_exit 2 "--d-model 64, but the checkpoint of --resume" -- "$BIN" train "${MODEL[@]}" --steps 7 \
  --resume "$TMP/a" --d-model 64
expect_exit 2 "--model gpt2-124m is L2 D32 H2 F128 V50257, but" -- "$BIN" train "${MODEL[@]}" --steps 7 --resume "$TMP/a" \
  --model gpt2-124m
expect_exit 2 "--experts 4, but the checkpoint of --init-from" -- "$BIN" train "${MODEL[@]}" --steps 1 \
  --init-from "$TMP/a" --experts 4 --top-k 1
"$BIN" train "${MODEL[@]}" --steps 7 --resume "$TMP/a" --save "$TMP/a7" >/dev/null 2>&1 &&
  ok "--resume with the checkpoint's own --layers --d-model --heads" || bad "--resume with equal options"

# a fresh run into a --save directory that holds another run's checkpoints is refused (it would
# overwrite their latest, and --keep would delete their steps); --resume of that directory is fine
ls "$TMP/a" > "$TMP/a.before"
expect_exit 2 "--save .*/a already holds checkpoints .* pass --resume" -- "$BIN" train "${MODEL[@]}" --steps 2 \
  --save "$TMP/a" --keep 1
ls "$TMP/a" | cmp -s - "$TMP/a.before" && ok "refused --save: the other run's checkpoints untouched" ||
  bad "refused --save changed $TMP/a"

# resuming a run that is already at --steps says so; convert refuses to overwrite its input
out=$("$BIN" train "${MODEL[@]:0:${#MODEL[@]}-1}" --steps 6 --resume "$TMP/a" 2>&1) && echo "$out" | grep -q "nothing to train" &&
  ok "resume at --steps: says nothing to train" || bad "resume at --steps: $out"
cp -r "$TMP/a" "$TMP/conv"
expect_exit 2 "would replace the checkpoint it converts" -- "$BIN" convert --in "$TMP/conv" --out "$TMP/conv"
cmp -s "$TMP/conv/step_000006/model.safetensors" "$TMP/a/step_000006/model.safetensors" &&
  ok "convert --out = --in: the checkpoint is untouched" || bad "convert --out = --in changed the checkpoint"

# train --help under mpirun: printed once, by rank 0
n=$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 "$BIN" train --help 2>/dev/null |
    grep -c '^usage: mptrain train')
[ "$n" = 1 ] && ok "train --help on 2 ranks: printed once" || bad "train --help on 2 ranks: printed $n times"

# plan and simulate say whether the layout fits (a simulated step of a layout over the memory
# was printed without a word)
"$BIN" plan --model tiny --mem-limit 1M | grep -q "^fits: NO, the largest rank needs .* more than --mem-limit 1.0 MiB" &&
  ok "plan --mem-limit 1M: fits: NO" || bad "plan --mem-limit 1M: no 'fits: NO' line"
"$BIN" simulate --model tiny --cluster a100-80g | grep -q "^fits: yes" && ok "simulate tiny: fits: yes" ||
  bad "simulate tiny: no 'fits: yes' line"

# --- generate from the checkpoint -------------------------------------------------------------
out=$("$BIN" generate --checkpoint "$TMP/a" --prompt "The " --tokens 20 --threads 1) && [ ${#out} -ge 20 ] && ok "generate printed ${#out} chars" || bad "generate"

expect_exit 2 "the model only 256: pass --tokenizer byte" -- "$BIN" generate --checkpoint "$TMP/a" \
  --tokenizer gpt2 --tokens 2 --threads 1

# --- the default threads: the cores of this rank's affinity mask, shared by the ranks of the job on
# this node that overlap it (from MPI, not from a launcher's variables); the banner and the log say it
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun --oversubscribe --bind-to none --mca btl self,vader)
TH=(--model tiny --layers 2 --d-model 32 --heads 2 --seq-len 32 --batch 4 --steps 1)
nc=$(nproc); half=$((nc / 2 > 0 ? nc / 2 : 1))
th_case() { # NAME WANT_THREADS BANNER_PATTERN -- command...
  local name=$1 want=$2 pat=$3; shift 4
  "$@" --log "$TMP/th.jsonl" >"$TMP/th.out" 2>&1
  if grep -q "^threads: $want per rank $pat" "$TMP/th.out" && grep -q "\"threads\":$want[,}]" "$TMP/th.jsonl"; then
    ok "threads, $name: $(grep '^threads:' "$TMP/th.out")"
  else bad "threads, $name: want $want ($pat): $(head -c 600 "$TMP/th.out")"; fi
}
th_case "one rank under taskset -c 0" 1 "(default: 1 core this rank may use, shared by 1 rank" -- \
  taskset -c 0 "$BIN" train "${TH[@]}"
th_case "one rank on $nc cores" "$nc" "(default: $nc cores" -- "$BIN" train "${TH[@]}"
# OMPI_COMM_WORLD_LOCAL_SIZE removed: the count comes from MPI_COMM_TYPE_SHARED under any launcher
th_case "2 ranks on $nc cores" "$half" "(default: $nc cores this rank may use, shared by 2 ranks" -- \
  "${MPI[@]}" -np 2 env -u OMPI_COMM_WORLD_LOCAL_SIZE "$BIN" train "${TH[@]}" --dp 2
th_case "2 ranks under taskset -c 0" 1 "(default: 1 core this rank may use, shared by 2 ranks" -- \
  taskset -c 0 "${MPI[@]}" -np 2 "$BIN" train "${TH[@]}" --dp 2
th_case "--threads 1" 1 "(--threads)" -- "$BIN" train "${TH[@]}" --threads 1

[ "$passes" -gt 0 ] || bad "no check ran"
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
