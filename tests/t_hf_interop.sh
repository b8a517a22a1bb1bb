#!/usr/bin/env bash
# Hugging Face interop of checkpoints (CONTRACT §3): mptrain's files read as GPT-2 by hand-written
# Python (no transformers needed), and Hugging Face style directories loaded with --init-from.
# Usage: bash tests/t_hf_interop.sh BUILD_DIR   (from the repository root; ctest does this)
set -uo pipefail
BIN="${1:?usage: t_hf_interop.sh BUILD_DIR}/mptrain"
PY=/usr/bin/python3
[ -x "$BIN" ] || { echo "FAIL: $BIN is missing"; exit 1; }
if ! help=$("$BIN" train --help 2>&1); then echo "FAIL: $BIN train --help: $help"; exit 1; fi
"$PY" -c 'import torch, numpy' || { echo "FAIL: $PY needs torch and numpy (scripts/setup.sh)"; exit 1; }
TMP=$(mktemp -d /tmp/mpt_hf_XXXXXX); trap 'rm -rf "$TMP"' EXIT
"$PY" tests/hf_interop.py "$BIN" "$TMP"
