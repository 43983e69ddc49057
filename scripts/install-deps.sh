#!/usr/bin/env bash
# Installs hyoracle's build dependencies from Debian's packages when any is missing.
# python3-torch is for the Python tests of the engine dump converters (tests/tools, CTest label
# "tools"): Debian 12's 1.13.1 with numpy, measured at about 1 minute and 0.9 GB of disk on a
# fresh machine. HYORACLE_NO_PYTHON_TESTS=1 leaves it out, and a distribution without the
# package gets a note instead of a failure; those tests then report "skipped".
set -euo pipefail
pkgs=(cmake g++ make libeigen3-dev libopenblas-dev nlohmann-json3-dev libcli11-dev libgtest-dev libbenchmark-dev)
if [ "${HYORACLE_NO_PYTHON_TESTS:-0}" != 1 ]; then
  pkgs+=(python3-torch)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  keep=()
  for p in "${missing[@]}"; do
    if [ "$p" = python3-torch ] && ! apt-cache show python3-torch >/dev/null 2>&1; then
      echo "note: python3-torch is not available from apt here; the engine converter tests will be skipped"
      continue
    fi
    keep+=("$p")
  done
  if ((${#keep[@]})); then
    echo "installing: ${keep[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${keep[@]}"
  fi
fi
