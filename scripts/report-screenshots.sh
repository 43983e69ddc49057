#!/usr/bin/env bash
# Renders three `hyoracle compare` HTML reports of the committed tiny-mt2 engine dumps to PNG with
# headless Chromium, to look at what an engine team sees: a passing dump (honest-modules), a
# failing prefill (head-scale-modules: head 5 of o_proj scaled) and a failing decode step
# (kv-cache-drop-last-modules: the KV cache drops its last entry from decode step 2 on).
#
#   scripts/report-screenshots.sh [HYORACLE] [OUTDIR]      (defaults: build/tools/hyoracle, report-screenshots)
#
# Needs Chromium (Debian: apt-get install chromium); writes OUTDIR/{pass,fail-prefill,fail-decode}.{html,md,png}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
hyoracle=${1:-$root/build/tools/hyoracle}
out=${2:-report-screenshots}
fx=$root/fixtures/tiny-mt2
ed=$fx/engine-dumps
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "report-screenshots: no chromium on PATH (Debian: apt-get install chromium)" >&2
  exit 77
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The baseline: the reference's exact run of the engine dumps' prompt, with its decode steps.
n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generate"]["n"])' "$ed/honest-modules/manifest.json")
"$hyoracle" run --model "$fx" --tokens-from "$ed/honest-modules" --generate "$n" --dump-steps --precision exact \
  --dump "$tmp/ref" > /dev/null
for pair in pass:honest-modules fail-prefill:head-scale-modules fail-decode:kv-cache-drop-last-modules; do
  name=${pair%%:*} variant=${pair#*:}
  "$hyoracle" compare "$tmp/ref" "$ed/$variant" --model "$fx" --html "$out/$name.html" --markdown "$out/$name.md" -q || true
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2400 \
    --screenshot="$out/$name.png" "file://$out/$name.html" 2> /dev/null
  echo "$out/$name.png"
done
