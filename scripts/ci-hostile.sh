#!/usr/bin/env bash
# CI step for hostile input (issue 8): the ASan + UBSan test suite, then every libFuzzer harness
# for FUZZ_SECONDS (60 by default). Fails on any sanitizer report, test failure or fuzz finding.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
scripts/sanitize.sh
echo "ci-hostile: sanitizer suite green after $((SECONDS - start)) s"
FUZZ_SECONDS=${FUZZ_SECONDS:-60} scripts/fuzz.sh
echo "ci-hostile: done in $((SECONDS - start)) s"
