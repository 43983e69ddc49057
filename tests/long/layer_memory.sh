#!/usr/bin/env bash
# Long test (label "long", not in the default suite): `hyoracle layer` on a full-size
# single-MoE-layer checkpoint at T=512 in double stays within its peak-RSS bound.
#   layer_memory.sh HYORACLE BENCH PRESET MAX_GB
# PRESET mt2 (bound 3 GB) or hy3 (bound 8 GB). The checkpoint is written by another process
# (bench_reference_layer --write-only) so its writer's memory is not counted.
set -euo pipefail
HY=$1 BENCH=$2 PRESET=$3 MAX_GB=$4
DIR=${TMPDIR:-/tmp}/hyoracle-long-$PRESET
"$BENCH" --preset "$PRESET" --model "$DIR/ckpt" --write-only
TOKENS=$(seq -s, 0 511 | awk -F, '{for(i=1;i<=NF;i++) printf "%s%d", (i>1?",":""), ($i*37)%256}')
[ -f "$DIR/in/manifest.json" ] || "$HY" run --model "$DIR/ckpt" --tokens "$TOKENS" --lazy-experts --dump "$DIR/in" >/dev/null
OUT=$("$HY" layer --model "$DIR/ckpt" --layer 1 --input "$DIR/in" --dump "$DIR/out")
echo "$OUT"
RSS=$(echo "$OUT" | sed -n 's/.*peak RSS \([0-9.]*\) GB.*/\1/p')
awk -v r="$RSS" -v m="$MAX_GB" 'BEGIN { if (r == "" || r > m) { print "peak RSS " r " GB exceeds " m " GB"; exit 1 } print "peak RSS " r " GB <= " m " GB" }'
