#!/usr/bin/env bash
# The project builds warning-free (-Werror) with clang as well as gcc (house rule). Builds the
# library and the tool into a build directory of its own next to the one ctest runs from.
set -uo pipefail
command -v clang >/dev/null || { echo "clang not installed: scripts/setup.sh installs it"; exit 1; }
DIR="$1/../build-clang"
CC=clang cmake -S "$(dirname "$0")/.." -B "$DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
if cmake --build "$DIR" -j2 --target mptrain >"$DIR/build.log" 2>&1; then
  echo "clang build: ok"; echo "1 passed, 0 failed"
else
  tail -20 "$DIR/build.log"; echo "0 passed, 1 failed"; exit 1
fi
