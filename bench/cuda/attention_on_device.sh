#!/usr/bin/env bash
# bench/cuda/attention_on_device.sh: one device call for the attention kernels: build cuda_tests and
# attention_bench, run the attention and model tests, the torch SDPA baseline (same run, written
# to $OUT/sdpa.txt), then attention_bench against it. Logs under $OUT; the summary table last.
# Usage (repository root): OUT=... bash bench/cuda/attention_on_device.sh [budget seconds]
set -o pipefail
BUDGET=${1:-280}
OUT=${OUT:-/tmp/hyoracle-attn-out}
mkdir -p "$OUT"
B=/tmp/b
T0=$(date +%s); END=$((T0 + BUDGET))
lim() {  # lim CAP cmd...: cmd under timeout min(CAP, time left)
  local cap=$1; shift
  local rem=$((END - $(date +%s)))
  [ "$rem" -lt "$cap" ] && cap=$rem
  if [ "$cap" -le 3 ]; then echo "SKIPPED (deadline): $*"; return 124; fi
  timeout "$cap" "$@"; local rc=$?
  [ $rc -eq 124 ] && echo "TIMEOUT after ${cap}s: $*"
  return $rc
}
stamp() { echo "== $1 at +$(( $(date +%s) - T0 )) s"; }
stamp start
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used --format=csv | tee "$OUT/gpu.txt"
lim 40 cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYORACLE_CUDA_ARCHITECTURES=90 > "$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
lim 170 cmake --build $B -j16 --target cuda_tests attention_bench -- -k 0 >> "$OUT/build.log" 2>&1 \
  || { echo "BUILD FAILED:"; grep -E "error" -A3 "$OUT/build.log" | head -40; }
stamp built
# SASS instruction mix of the bf16 d=128 kernels (tensor-core mma, ldmatrix, cp.async, ex2, local memory)
O=$(ls $B/cuda/CMakeFiles/hyoracle_cuda.dir/attention.cu.o 2>/dev/null)
[ -n "$O" ] && command -v cuobjdump > /dev/null && cuobjdump -sass "$O" > "$OUT/attention.sass" 2>&1 && \
  awk '/Function :/{f=$3} /HMMA|LDSM|LDGSTS|MUFU.EX2|LDL|STL|LDG.E.128/{for(i=1;i<=NF;i++) if($i ~ /^(HMMA|LDSM|LDGSTS|MUFU|LDL|STL|LDG)/){split($i,a,"."); c[f" "a[1]]++}} END{for(k in c) print c[k], k}' "$OUT/attention.sass" \
  | grep -E "nv_bfloat16Li128" | sed -E 's/_ZN8hyoracle.*(flash_[a-z]+_kernel)I13__nv_bfloat16Li128(E?L?i?[0-9]*E?L?i?[0-9]*)E+.*( [A-Z]+)$/\1\2\3/' | sort -k2 | head -40
if [ -x $B/tests/cuda/cuda_tests ]; then
  lim 120 $B/tests/cuda/cuda_tests --gtest_filter="${CUDA_TEST_FILTER:-*Attention*:*Model*}" > "$OUT/tests.log" 2>&1
  echo "cuda_tests exit $?"
  grep -E "FAILED|Failure|PASSED|tests ran|compare |tiny model|decode steps" "$OUT/tests.log" | head -40
  # worst rel-L2 / bound of each kernel over the attention cases
  awk '/^  (bf16|fp16) [a-z0-9-]+ +T=/ { k=$1" "$2; for(i=1;i<=NF;i++){ if($i=="rel-L2"){r=$(i+1); sub(",","",r)} if($i=="(bound"){b=$(i+1); sub("\\)","",b)} }
       if (r/b > w[k]) { w[k]=r/b; rr[k]=r } n[k]++ } END { for (k in w) printf "  %-28s %2d cases, worst rel-L2 %.3e = %.2f of the bound\n", k, n[k], rr[k], w[k] }' "$OUT/tests.log" | sort
fi
stamp tested
PYTHONUNBUFFERED=1 lim 70 python3 bench/cuda/sdpa_baseline.py --out "$OUT/sdpa.txt" 2>&1 | tee "$OUT/sdpa.log"
stamp sdpa
[ -x $B/bench/cuda/attention_bench ] && lim 80 $B/bench/cuda/attention_bench "$OUT/sdpa.txt" 2>&1 | tee "$OUT/bench.log"
stamp done
