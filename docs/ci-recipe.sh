#!/usr/bin/env bash
# hyoracle golden-output check for a hy_v3 engine.
set -euo pipefail
HYORACLE_REPO=${HYORACLE_REPO:-https://github.com/hyoracle/hyoracle.git}  # your mirror of hyoracle
HYORACLE_REF=${HYORACLE_REF:-main}
HYORACLE_SRC=${HYORACLE_SRC:-.hyoracle/src}
FIXTURE=${FIXTURE:-$HYORACLE_SRC/fixtures/gen-tiny-hy3}   # or gen-tiny-mt2, or your own
# How your engine writes a dump. Placeholders: {model} checkpoint dir, {tokens} prompt
# (comma-separated), {generate} greedy tokens, {dump} output dir. This one is the HF example.
HF_EXAMPLE="python3 $HYORACLE_SRC/tools/hf_dump.py {model} {dump} --tokens {tokens} --generate {generate} --dtype bfloat16"
ENGINE_CMD=${ENGINE_CMD:-$HF_EXAMPLE}

# 1-2. Debian packages, then build the hyoracle command (CPU only).
[ -d "$HYORACLE_SRC" ] || git clone --depth 1 --branch "$HYORACLE_REF" "$HYORACLE_REPO" "$HYORACLE_SRC"
HYORACLE_NO_PYTHON_TESTS=1 "$HYORACLE_SRC/scripts/install-deps.sh"   # no python3-torch: hyoracle's own Python tests are not run here
cmake -S "$HYORACLE_SRC" -B "$HYORACLE_SRC/build-ci" -DCMAKE_BUILD_TYPE=Release -DHYORACLE_CUDA=OFF >/dev/null
cmake --build "$HYORACLE_SRC/build-ci" -j"$(nproc)" --target hyoracle
HYORACLE="$HYORACLE_SRC/build-ci/tools/hyoracle"

# 3. A fixture: the committed one above, or make your own, e.g.
#    "$HYORACLE" fixture --preset tiny-mt2 --seed 7 --out my-fixture && FIXTURE=my-fixture

# 4-5. Run the engine on the fixture and check its dump against the golden.
if [ -n "${ENGINE_DUMP:-}" ]; then
  "$HYORACLE" check "$FIXTURE" "$ENGINE_DUMP" --junit hyoracle-junit.xml
else
  "$HYORACLE" check "$FIXTURE" --engine-cmd "$ENGINE_CMD" --dump-dir hyoracle-engine-dump --junit hyoracle-junit.xml
fi
