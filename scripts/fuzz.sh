#!/usr/bin/env bash
# Builds the libFuzzer harnesses in fuzz/ with clang (-fsanitize=fuzzer,address,undefined) in
# build-fuzz/ and runs each for FUZZ_SECONDS (default 60). Fails on any crash, leak, timeout
# (> 10 s on one input) or input using more than 2 GB. New inputs go to build-fuzz/corpus/;
# the committed seeds in fuzz/corpus/ are read only. A finding is kept in build-fuzz/artifacts/
# (rerun it with: build-fuzz/fuzz_<name> build-fuzz/artifacts/<file>).
#
#   FUZZ_SECONDS=60 scripts/fuzz.sh [harness ...]     (default: every harness built)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
CXX_CLANG=${CXX_CLANG:-clang++}

command -v "$CXX_CLANG" >/dev/null || { echo "fuzz.sh: $CXX_CLANG not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
cmake -S fuzz -B "$BUILD" -DCMAKE_CXX_COMPILER="$CXX_CLANG" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for exe in "$BUILD"/fuzz_*; do
    [ -x "$exe" ] && [ -f "$exe" ] && harnesses+=("$(basename "$exe" | sed 's/^fuzz_//')")
  done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
for h in "${harnesses[@]}"; do
  mkdir -p "$BUILD/corpus/$h" "$BUILD/artifacts"
  echo "== fuzz_$h for ${FUZZ_SECONDS}s"
  if ! "$BUILD/fuzz_$h" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 \
      -dict=fuzz/json.dict -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$h-" \
      "$BUILD/corpus/$h" "fuzz/corpus/$h" 2>"$BUILD/fuzz_$h.log"; then
    failed+=("$h")
    tail -n 60 "$BUILD/fuzz_$h.log" >&2
  else
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$BUILD/fuzz_$h.log" | tail -n 2 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in: ${failed[*]} (see $BUILD/artifacts/ and $BUILD/fuzz_<name>.log)" >&2
  exit 1
fi
echo "fuzz.sh: ${#harnesses[@]} harness(es), ${FUZZ_SECONDS}s each, no findings"
