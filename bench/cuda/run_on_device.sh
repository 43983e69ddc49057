#!/usr/bin/env bash
# bench/cuda/run_on_device.sh: one call on the GPU machine: build the CUDA targets, run the CUDA
# tests, run the CLI on the tiny fixture (reference vs CUDA dumps judged by hyoracle compare),
# then the benchmarks and the torch SDPA baseline. Logs go to $OUT (at most 8 files come back).
# Usage (repository root): bash bench/cuda/run_on_device.sh [tests|bench|all]
set -o pipefail
# Every stage has a timeout, so one hang cannot eat the whole device call.
what=${1:-all}
OUT=${OUT:-/tmp/hyoracle-cuda-out}
mkdir -p "$OUT"
B=build-dev
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used --format=csv | tee "$OUT/gpu.txt"
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DHYORACLE_CUDA_ARCHITECTURES=90 > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
start=$(date +%s)
cmake --build $B -j16 --target cuda_tests cuda_bench >> "$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
# The CLI is built apart, so that a CLI build failure does not stop the tests and benchmarks.
cmake --build $B -j16 --target hyoracle >> "$OUT/build.log" 2>&1 || { echo "hyoracle CLI did not build:"; grep -E "error" -A3 "$OUT/build.log" | head -20; }
if [ "$what" != bench ]; then
  timeout 240 $B/tests/cuda/cuda_tests 2>&1 | tee "$OUT/tests.log" | grep -vE "^\[ RUN|^\[       OK" | tail -150
  {
    T=17,3,99,200,5,1,254,42,42,0,77
    H="timeout 60 $B/tools/hyoracle"
    D=/tmp/hyoracle-dumps; rm -rf $D; mkdir -p $D
    $H run --model fixtures/tiny-hy3 --tokens $T --generate 4 --dump $D/ref
    for dt in fp32 bf16 fp16; do
      $H run --device cuda --dtype $dt --model fixtures/tiny-hy3 --tokens $T --generate 4 --dump $D/cuda_$dt
      $H compare $D/ref $D/cuda_$dt --model fixtures/tiny-hy3 --json $D/compare_$dt.json | tail -25
      echo "hyoracle compare exact vs cuda $dt: exit $?"
    done
  } 2>&1 | tee "$OUT/cli.log"
fi
if [ "$what" != tests ]; then
  timeout 200 $B/bench/cuda/cuda_bench 2>&1 | tee "$OUT/bench.log"
  timeout 60 python3 bench/cuda/sdpa_baseline.py 2>&1 | tee -a "$OUT/bench.log"
fi
