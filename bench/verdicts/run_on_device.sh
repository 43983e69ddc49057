#!/usr/bin/env bash
# bench/verdicts/run_on_device.sh: one device call for the verdicts harness (bench/verdicts/README.md):
# configure + build only the hyoracle target (Ninja, Release; CUDA for arch 90 when nvcc works,
# else without), then the harness stages asked for, each under its own deadline and all under one
# overall deadline; the confusion tables, the tiny engine dumps (tar.gz) and the logs (tar.gz) go to
# $OUT (a handful of files, two folder levels at most).
# Usage (repository root): bash bench/verdicts/run_on_device.sh [STAGES] [BUDGET_S] [-- harness options]
#   STAGES: comma list of tiny,full,sweep,hunyuan,cla (default full), run one after the other; stages
#     joined by '+' (e.g. hunyuan+cla) run at the same time, each as its own harness process with the
#     group's whole share (they share the GPU and the cores); BUDGET_S: overall seconds before packing
#     (default 565; packing takes < 25 s more)
#   VERDICTS_CUDA=off skips building the CUDA path (a shorter build; no cuda-* rows).
#   VERDICTS_BIN=FILE uses a hyoracle binary built elsewhere (carried; CUDA off) when `FILE --version`
#     runs there, and skips the build; otherwise the build below runs.
#   VERDICTS_SRC=DIR builds hyoracle from the sources in DIR instead of the working tree (e.g. a
#     `git archive HEAD` export carried to the machine, when the tree holds someone's unfinished C++).
#   e.g. bash bench/verdicts/run_on_device.sh full 565 -- --jobs 4
#        VERDICTS_CUDA=off bash bench/verdicts/run_on_device.sh tiny,sweep 565
#        VERDICTS_CUDA=off bash bench/verdicts/run_on_device.sh hunyuan+cla 540 -- --jobs 2 --threads 8
set -o pipefail
what=${1:-full}
BUDGET=${2:-565}
shift 2 2>/dev/null || shift $#
[ "${1:-}" = "--" ] && shift
OUT=${OUT:-/tmp/hyoracle-verdicts-out}
WORK=${WORK:-/tmp/hyoracle-verdicts}
B=build-verdicts
SRC=${VERDICTS_SRC:-.}
mkdir -p "$OUT" "$WORK"
T0=$(date +%s)
END=$((T0 + BUDGET))
LOG="$OUT/harness.log"
stamp() { echo "== $1 at +$(( $(date +%s) - T0 )) s" | tee -a "$LOG"; }
left() { echo $((END - $(date +%s))); }
# lim CAP cmd...: run cmd under timeout min(CAP, time left before the deadline).
lim() {
  local cap=$1; shift
  local rem; rem=$(left)
  [ "$rem" -lt "$cap" ] && cap=$rem
  if [ "$cap" -le 3 ]; then echo "SKIPPED (deadline): $*"; return 124; fi
  timeout -k 5 "$cap" "$@"
  local rc=$?
  [ $rc -eq 124 ] && echo "TIMEOUT after ${cap}s: $*"
  return $rc
}
pack() {
  # what explains the run (logs, slimmed compare reports, table JSONs, the build log) in one file;
  # the big dumps stay on the machine
  timeout 25 python3 bench/verdicts/pack.py "$WORK" "$OUT" "$OUT/$B-build.log" 2>&1 | tee -a "$LOG"
  ls -la "$OUT" | tee -a "$LOG"
}
trap pack EXIT

stamp "start ($what, budget $BUDGET s)"
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv 2>&1 | tee -a "$LOG"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)" 2>&1 | tee -a "$LOG"
nproc | sed 's/^/cores: /' | tee -a "$LOG"; df -h /tmp | tail -1 | tee -a "$LOG"

# ---- build ------------------------------------------------------------------------------------
HY=$B/tools/hyoracle
CUDA=OFF
if [ -n "${VERDICTS_BIN:-}" ] && "$VERDICTS_BIN" --version > /dev/null 2>&1; then
  HY=$VERDICTS_BIN
  echo "hyoracle: carried binary $HY ($("$HY" --version)); no build" | tee -a "$LOG"
else
[ -n "${VERDICTS_BIN:-}" ] && { echo "carried binary $VERDICTS_BIN does not run here:"; "$VERDICTS_BIN" --version 2>&1 | head -3; } | tee -a "$LOG"
if [ "${VERDICTS_CUDA:-auto}" = off ]; then :
elif command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  echo 'int main(){return 0;}' > /tmp/verdicts_nvcc_probe.cu
  if timeout 60 "$NVCC" -arch=sm_90 -o /tmp/verdicts_nvcc_probe /tmp/verdicts_nvcc_probe.cu > /dev/null 2>&1; then CUDA=ON; fi
fi
echo "CUDA path: $CUDA" | tee -a "$LOG"
G=""; command -v ninja > /dev/null && G="-G Ninja"
BL="$OUT/$B-build.log"
echo "hyoracle sources: $SRC" | tee -a "$LOG"
lim 90 cmake -S "$SRC" -B $B $G -DCMAKE_BUILD_TYPE=Release -DHYORACLE_CUDA=$CUDA -DHYORACLE_CUDA_ARCHITECTURES=90 > "$BL" 2>&1 \
  || { echo "CONFIGURE FAILED"; tail -30 "$BL"; } | tee -a "$LOG"
lim 420 cmake --build $B -j16 --target hyoracle >> "$BL" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $CUDA = ON ]; then
  echo "build with CUDA failed (exit $rc); retrying without CUDA" | tee -a "$LOG"
  grep -E "error" -A3 "$BL" | head -20 | tee -a "$LOG"
  CUDA=OFF
  lim 60 cmake -S "$SRC" -B $B $G -DCMAKE_BUILD_TYPE=Release -DHYORACLE_CUDA=OFF >> "$BL" 2>&1
  lim 300 cmake --build $B -j16 --target hyoracle >> "$BL" 2>&1
fi
if [ ! -x $B/tools/hyoracle ]; then
  echo "BUILD FAILED" | tee -a "$LOG"; grep -E "error|Error" -A3 "$BL" | head -40 | tee -a "$LOG"; exit 1
fi
stamp "built (CUDA $CUDA)"
fi

# ---- stages -----------------------------------------------------------------------------------
status=0
IFS=',' read -ra STAGES <<< "$what"
n=${#STAGES[@]}
i=0
for st in "${STAGES[@]}"; do
  i=$((i + 1))
  rem=$(left)
  # the stages after this one keep their share; tiny needs about 2 minutes
  share=$rem
  if [ $i -lt $n ]; then
    [ "$st" = tiny ] && share=$(( rem < 200 ? rem : 200 ))
    [ "$st" != tiny ] && share=$(( rem / (n - i + 1) ))
  fi
  hd=$((share - 15)); [ $hd -lt 30 ] && hd=30
  stamp "stage $st (deadline ${hd} s)"
  IFS='+' read -ra GROUP <<< "$st"
  pids=()
  for g in "${GROUP[@]}"; do
    ( PYTHONUNBUFFERED=1 lim $((share - 5)) python3 bench/verdicts/harness.py "$g" --out "$OUT" --work "$WORK" \
        --hyoracle "$HY" --deadline $hd --tiny-deadline $hd --cuda $( [ $CUDA = ON ] && echo on || echo off ) \
        "$@" > "$OUT/stage-$g.log" 2>&1 ) &
    pids+=($!)
  done
  for k in "${!GROUP[@]}"; do
    wait "${pids[$k]}"
    rc=$?
    g=${GROUP[$k]}
    cat "$OUT/stage-$g.log" >> "$LOG"
    grep -vE "^\[ *[0-9.]+s\] [a-z0-9-]+: (dump|compare) " "$OUT/stage-$g.log" | tail -120
    rm -f "$OUT/stage-$g.log"
    echo "stage $g: exit $rc" | tee -a "$LOG"
    [ $rc -ne 0 ] && status=1
  done
done
stamp "done (exit $status)"
exit $status
