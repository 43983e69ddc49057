#!/usr/bin/env bash
# bench/cuda/run_on_device.sh: one call on the GPU machine: build the CUDA targets, run the CUDA
# tests, run the CLI on the tiny fixtures (the CPU reference's exact dump vs the CUDA dumps, and the
# HF float64 golden vs the CUDA dumps, judged by hyoracle compare), then the benchmarks and the
# torch SDPA baseline. The working tree is sent as is (no snapshot needed unless someone has
# uncommitted broken edits). Every stage has a timeout, capped by one overall deadline, so one hang
# cannot eat the whole device call. Logs go to $OUT (at most 8 files come back).
# Usage (repository root): bash bench/cuda/run_on_device.sh [all|tests,cli,model,bench,sanitize,tools (any comma list)] [budget seconds]
#   TARGETS="..." narrows the build; BENCH_SET="moe_bench hf_moe ..." the benchmarks;
#   MEMCHECK_FILTER=<gtest filter> the memcheck run; RACECHECK_ATTENTION=0 skips that racecheck.
#   "tests" runs only the tests; CUDA_TEST_FILTER=<gtest filter> narrows them.
set -o pipefail
what=${1:-all}
BUDGET=${2:-410}
OUT=${OUT:-/tmp/hyoracle-cuda-out}
mkdir -p "$OUT"
B=build-dev
T0=$(date +%s)
END=$((T0 + BUDGET))
# lim CAP cmd...: run cmd under timeout min(CAP, time left before the deadline).
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
# want STAGE: the stage was asked for ("all", or a comma list such as tests,cli,model).
want() { [ "$what" = all ] || [[ ",$what," == *",$1,"* ]]; }
stamp() { echo "== $1 at +$(( $(date +%s) - T0 )) s"; }

stamp "start"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used --format=csv | tee "$OUT/gpu.txt"
G=""; command -v ninja > /dev/null && G="-G Ninja"
lim 60 cmake -S . -B $B $G -DCMAKE_BUILD_TYPE=Release -DHYORACLE_CUDA_ARCHITECTURES=90 > "$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
# One build of the three targets (keep going past a failing one: the others still run).
K="-k"; [ -n "$G" ] && K="-k 0"
lim 200 cmake --build $B -j16 --target ${TARGETS:-cuda_tests cuda_bench moe_bench attention_bench model_bench hyoracle} -- $K >> "$OUT/build.log" 2>&1 \
  || { echo "BUILD FAILED (some targets):"; grep -E "error|Error" -A3 "$OUT/build.log" | head -60; }
stamp "built"

if want tests; then
  if [ -x $B/tests/cuda/cuda_tests ]; then
    lim 110 $B/tests/cuda/cuda_tests ${CUDA_TEST_FILTER:+--gtest_filter=$CUDA_TEST_FILTER} > "$OUT/tests.log" 2>&1
    echo "cuda_tests exit $?"
    grep -vE "^\[ RUN|^\[       OK" "$OUT/tests.log" | grep -vE "^$" | tail -80
  else
    echo "cuda_tests not built"
  fi
  stamp "tests done"
fi

if want cli; then
  H=$B/tools/hyoracle
  D=/tmp/hyoracle-dumps; rm -rf $D; mkdir -p $D
  # Hy3 / Hy-MT2 fixtures with HF float64 goldens, and the Hunyuan v1 fixtures (reference goldens;
  # their HF and Tencent-code goldens are checked on the CPU, tests/fixture/hf_on_generated_test.cpp).
  # CLI_FIXTURES narrows the list.
  for f in ${CLI_FIXTURES:-tiny-hy3 tiny-mt2 gen-tiny-hunyuan-large gen-tiny-hunyuan-a13b gen-tiny-hunyuan-dense}; do
    M=fixtures/$f; G64=$M/golden/hf-f64; [ -d $G64 ] || G64=$M/golden/reference-exact
    # The golden's generated length; a prefill-only golden: 4 steps (the reference run below is the baseline).
    N=$(python3 -c "import json;print(json.load(open('$G64/manifest.json')).get('generate', {}).get('n', 4))")
    echo "### $f: tokens from $G64, generate $N"
    lim 60 $H run --model $M --tokens-from $G64 --generate $N --dump-steps --dump $D/$f-ref | tail -4
    for dt in fp32 bf16 fp16 fp64; do
      lim 60 $H run --device cuda --dtype $dt --model $M --tokens-from $G64 --generate $N --dump-steps --dump $D/$f-$dt
      echo "run cuda $dt exit $?"
      for base in ref hf64; do
        bd=$D/$f-ref; [ $base = hf64 ] && bd=$G64
        [ $base = hf64 ] && [ ! -d $M/golden/hf-f64 ] && continue
        lim 60 $H compare $bd $D/$f-$dt --model $M --json $D/$f-$dt-vs-$base.json | head -25
        echo "hyoracle compare $f: $base vs cuda $dt: exit $?"
      done
      # fp64 decodes step by step (no graph); the other dtypes replay a captured graph.
      [ $dt = fp64 ] && continue
      # Without --dump-steps the decode steps replay one captured CUDA graph (its first decode
      # launch is inside the capture): its generated tokens and logits must equal the recorded run's.
      lim 60 $H run --device cuda --dtype $dt --model $M --tokens-from $G64 --generate $N --dump $D/$f-$dt-graph | grep generate
      python3 - "$D/$f-$dt" "$D/$f-$dt-graph" <<'PY'
import sys, json, struct
def read(d):
    raw = open(d + "/activations.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]; h = json.loads(raw[8:8 + n])
    out = {}
    for k in ("generate.tokens", "generate.logits"):
        a, b = h[k]["data_offsets"]; out[k] = raw[8 + n + a:8 + n + b]
    return out
e, g = read(sys.argv[1]), read(sys.argv[2])
same = all(e[k] == g[k] for k in e)
print(f"graph decode vs recorded decode ({sys.argv[2]}): generate.tokens and generate.logits {'identical' if same else 'DIFFER'}")
PY
    done
  done
  python3 bench/cuda/summarize_compare.py $D/*.json
  stamp "cli done"
fi 2>&1 | tee "$OUT/cli.log"

if want model; then
  # The whole full-size Hy-MT2 (61 GB of bf16 weights made on the GPU): ours, then HF's, one
  # process after the other (both do not fit at once). SKIP_HF_MODEL=1 leaves HF's out.
  [ -x $B/bench/cuda/model_bench ] && lim 150 $B/bench/cuda/model_bench 2>&1 | tee "$OUT/model.log"
  [ "${SKIP_HF_MODEL:-0}" = 1 ] || PYTHONUNBUFFERED=1 lim 150 python3 bench/cuda/hf_model_baseline.py 48 16 2>&1 | tee -a "$OUT/model.log"
  stamp "model done"
fi

if want bench; then
  # Each benchmark next to its same-run baselines: cuBLAS (cuda_bench, moe_bench), torch SDPA
  # (sdpa_baseline.py, read back by attention_bench), HF transformers' experts (hf_moe_baseline.py).
  # BENCH_SET narrows them (default: all five).
  BS=" ${BENCH_SET:-cuda_bench moe_bench sdpa attention hf_moe} "
  for b in cuda_bench moe_bench; do
    [[ "$BS" == *" $b "* ]] && [ -x $B/bench/cuda/$b ] && lim 120 $B/bench/cuda/$b 2>&1 | tee -a "$OUT/bench.log"
  done
  if [[ "$BS" == *" sdpa "* ]]; then
    PYTHONUNBUFFERED=1 lim 70 python3 bench/cuda/sdpa_baseline.py --out "$OUT/sdpa.txt" 2>&1 | tee -a "$OUT/bench.log"
  fi
  if [[ "$BS" == *" attention "* ]]; then
    [ -x $B/bench/cuda/attention_bench ] && lim 80 $B/bench/cuda/attention_bench "$OUT/sdpa.txt" 2>&1 | tee -a "$OUT/bench.log"
  fi
  if [[ "$BS" == *" hf_moe "* ]]; then
    PYTHONUNBUFFERED=1 lim 70 python3 bench/cuda/hf_moe_baseline.py --reps 30 2>&1 | tee -a "$OUT/bench.log"
  fi
  stamp "bench done"
fi

if want sanitize; then
  # compute-sanitizer (it runs on this machine's runtime): out-of-bounds and uninitialised reads
  # in the own kernels (gemv, attention, grouped GEMM, fused decode router), races in the tiled ones.
  if command -v compute-sanitizer > /dev/null && [ -x $B/tests/cuda/cuda_tests ]; then
    lim 90 compute-sanitizer --tool memcheck --print-limit 5 $B/tests/cuda/cuda_tests \
      --gtest_filter="${MEMCHECK_FILTER:-Gemv/0.*:Fused/1.*:MoeTyped/1.*:AttentionMma/0.*}" > "$OUT/memcheck.log" 2>&1
    echo "memcheck exit $?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)"
    grep -E "Invalid|at 0x|by thread|FAILED" "$OUT/memcheck.log" | head -8
    # racecheck: the grouped GEMM (every tile kernel, the mbarrier-fed wgmma ones included) and
    # the attention kernels, each under its own limit.
    lim 120 compute-sanitizer --tool racecheck --print-limit 5 $B/tests/cuda/cuda_tests \
      --gtest_filter='MoeTyped/1.GroupedGemmIsBitExactOnIntegers' > "$OUT/racecheck.log" 2>&1
    echo "racecheck (grouped GEMM) exit $?: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | tail -1)"
    if [ "${RACECHECK_ATTENTION:-1}" = 1 ]; then
      lim 90 compute-sanitizer --tool racecheck --print-limit 5 $B/tests/cuda/cuda_tests \
        --gtest_filter='AttentionMma/0.BothKernelsMatchReference' > "$OUT/racecheck-attention.log" 2>&1
      echo "racecheck (attention) exit $?: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck-attention.log" | tail -1)"
    fi
  else
    echo "compute-sanitizer or cuda_tests missing: sanitize stage skipped"
  fi
  stamp "sanitize done"
fi

if want tools; then
  # The engine-dump converter tests with this machine's torch (2.x; CI runs them with Debian's
  # 1.13), and tools/hf_dump.py (rewritten onto tools/dump_io.py) re-making a committed golden.
  lim 60 cmake -S . -B $B -DHYORACLE_PYTHON3="$(command -v python3)" > /dev/null 2>&1
  lim 150 ctest --test-dir $B -L tools --output-on-failure 2>&1 | tail -8
  F=fixtures/tiny-hy3; G=$F/golden/hf-bf16
  TOK=$(python3 -c "import json;print(','.join(map(str,json.load(open('$G/manifest.json'))['input']['token_ids'])))" 2>/dev/null)
  N=$(python3 -c "import json;print(json.load(open('$G/manifest.json'))['generate']['n'])" 2>/dev/null)
  PYTHONUNBUFFERED=1 lim 90 python3 tools/hf_dump.py $F /tmp/hf-bf16-again --tokens "$TOK" --dtype bfloat16 --generate "$N" 2>&1 | tail -3
  lim 60 $B/tools/hyoracle compare $G /tmp/hf-bf16-again --model $F | head -6
  echo "hyoracle compare committed hf-bf16 vs re-made: exit ${PIPESTATUS[0]}"
  cmp -s $G/activations.safetensors /tmp/hf-bf16-again/activations.safetensors && echo "re-made golden: activations byte-identical" \
    || echo "re-made golden: activations differ in bytes (judged by compare above)"
  stamp "tools done"
fi
