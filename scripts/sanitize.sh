#!/usr/bin/env bash
# The whole default test suite under AddressSanitizer + UndefinedBehaviorSanitizer: builds in
# build-asan (-DHYORACLE_SANITIZE=ON, no CUDA) and runs `ctest -LE long`. Any sanitizer report
# aborts the test that triggered it (-fno-sanitize-recover, halt_on_error), so green means clean.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD:-build-asan}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHYORACLE_SANITIZE=ON -DHYORACLE_CUDA=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
# detect_leaks: leaks fail the test; the child `hyoracle` processes of the catalogue inherit it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
ctest --test-dir "$BUILD" -LE long --output-on-failure -j"$(nproc)" --timeout 900
