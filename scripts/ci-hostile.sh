#!/usr/bin/env bash
# CI step for hostile input: the ASan + UBSan test suite, then every libFuzzer harness
# for FUZZ_SECONDS (60 by default). Fails on any sanitizer report, test failure or fuzz finding.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
scripts/install-deps.sh
# The fuzzers need clang with its libFuzzer/sanitizer runtime (Debian 12: clang 14).
for p in clang libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
    break
  fi
done
scripts/sanitize.sh
echo "ci-hostile: sanitizer suite green after $((SECONDS - start)) s"
FUZZ_SECONDS=${FUZZ_SECONDS:-60} scripts/fuzz.sh
echo "ci-hostile: done in $((SECONDS - start)) s"
