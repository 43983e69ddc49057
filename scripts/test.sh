#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the default test suite (everything
# not labelled "long"). CUDA tests print a skip where no GPU is found.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" -LE long --output-on-failure -j"$(nproc)" --timeout 600
