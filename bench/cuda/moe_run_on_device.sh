#!/usr/bin/env bash
# bench/cuda/moe_run_on_device.sh: one device call for the MoE work: build cuda_tests + moe_bench,
# count the tensor-core / ldmatrix / cp.async instructions in the grouped GEMM's SASS, run the
# grouped-GEMM / MoE / model tests, a memcheck pass over the integer grouped-GEMM test (guards catch
# stray writes, memcheck stray reads), then moe_bench and HF's HYV3MoE baseline
# (hf_moe_baseline.py). Each stage has a cap under one overall deadline; logs go to $OUT; a short
# table is printed last.
# Usage (repository root): bash bench/cuda/moe_run_on_device.sh [budget seconds, default 290]
#   CUDA_TEST_FILTER=<gtest filter> narrows the tests (default: all of cuda_tests).
set -o pipefail
BUDGET=${1:-290}
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
B=/tmp/b-moe
T0=$(date +%s)
END=$((T0 + BUDGET))
lim() {
  local cap=$1; shift
  local rem=$((END - $(date +%s)))
  [ "$rem" -lt "$cap" ] && cap=$rem
  if [ "$cap" -le 3 ]; then echo "SKIPPED (deadline): $*"; return 124; fi
  timeout "$cap" "$@"
  local rc=$?
  [ $rc -eq 124 ] && echo "TIMEOUT after ${cap}s: $*"
  return $rc
}
stamp() { echo "== $1 at +$(( $(date +%s) - T0 )) s"; }

stamp start
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used --format=csv,noheader
lim 40 cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYORACLE_CUDA_ARCHITECTURES=90 > "$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
lim 150 cmake --build $B -j16 --target cuda_tests moe_bench -- -k 0 >> "$OUT/build.log" 2>&1 \
  || { echo "BUILD FAILED:"; grep -E "error" -A3 "$OUT/build.log" | head -40; }
stamp built
O=$(find $B -name 'grouped_gemm.cu.o' | head -1)
if [ -n "$O" ] && command -v cuobjdump > /dev/null; then
  cuobjdump --dump-sass "$O" > "$OUT/sass.txt" 2>&1
  echo "SASS grouped_gemm.cu.o: HMMA $(grep -c HMMA "$OUT/sass.txt") LDSM $(grep -c LDSM "$OUT/sass.txt")" \
       "LDGSTS $(grep -c LDGSTS "$OUT/sass.txt") LDG.E.128 $(grep -c 'LDG.E.128' "$OUT/sass.txt")" \
       "LDL/STL $(grep -cE 'LDL|STL' "$OUT/sass.txt")"
fi
if [ -x $B/tests/cuda/cuda_tests ]; then
  lim 90 $B/tests/cuda/cuda_tests ${CUDA_TEST_FILTER:+--gtest_filter=$CUDA_TEST_FILTER} > "$OUT/tests.log" 2>&1
  echo "cuda_tests exit $?"
  grep -E "^\[  FAILED|^\[  PASSED|Failure|Expected|Which is|actual|  moe |  grouped_gemm|first mismatch|SKIPPED \]" \
    "$OUT/tests.log" | head -60
  if command -v compute-sanitizer > /dev/null; then
    lim 35 compute-sanitizer --tool memcheck --print-limit 5 $B/tests/cuda/cuda_tests \
      --gtest_filter='MoeTyped/1.GroupedGemmIsBitExactOnIntegers:*FusedDecode*' > "$OUT/memcheck.log" 2>&1
    echo "memcheck exit $?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log")"
    grep -E "Invalid|at 0x|by thread" "$OUT/memcheck.log" | head -8
    lim 30 compute-sanitizer --tool racecheck --print-limit 5 $B/tests/cuda/cuda_tests \
      --gtest_filter='MoeTyped/2.GroupedGemmIsBitExactOnIntegers' > "$OUT/racecheck.log" 2>&1
    echo "racecheck exit $?: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | head -2)"
    grep -E "hazard|Race" "$OUT/racecheck.log" | head -5
  fi
fi
stamp tests
[ -x $B/bench/cuda/moe_bench ] && lim 70 $B/bench/cuda/moe_bench 2>&1 | tee "$OUT/bench.log"
stamp bench
PYTHONUNBUFFERED=1 lim 70 python3 bench/cuda/hf_moe_baseline.py --reps 30 2>&1 | tee "$OUT/hf.log"
stamp done
echo "==== summary"
grep -E "^\[  PASSED|^\[  FAILED" "$OUT/tests.log" | head -20
grep -A4 "^summary" "$OUT/bench.log"
grep -E "part |vs measured|whole block|separate launches" "$OUT/bench.log"
grep -E "^\| T=" "$OUT/hf.log"
