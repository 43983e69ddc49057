#!/usr/bin/env bash
# The main job, end to end: installs what is missing, builds hyoracle, runs the CPU reference
# on the committed tiny Hy3-shaped fixture, and compares the committed HF transformers golden
# (float64) with it, printing the report (also as JSON, Markdown and HTML under out/). FIXTURE=tiny-mt2 for the Hy-MT2 shape.
set -euo pipefail
cd "$(dirname "$0")/.."
HYORACLE_NO_PYTHON_TESTS=1 scripts/install-deps.sh  # the demo needs no python3-torch
BUILD=${BUILD:-build}
FIXTURE=${FIXTURE:-tiny-hy3}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target hyoracle
HY="$BUILD/tools/hyoracle"
GOLDEN="fixtures/$FIXTURE/golden/hf-f64"
OUT="out/$FIXTURE-reference-exact"
"$HY" run --model "fixtures/$FIXTURE" --tokens-from "$GOLDEN" --generate 5 --dump-steps --precision exact --dump "$OUT"
echo
# The reference is the baseline; HF transformers' float64 run is judged against it.
"$HY" compare "$OUT" "$GOLDEN" --model "fixtures/$FIXTURE" --json "out/$FIXTURE-report.json" \
  --markdown "out/$FIXTURE-report.md" --html "out/$FIXTURE-report.html"
