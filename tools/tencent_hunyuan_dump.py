#!/usr/bin/env python3
"""Write a hyoracle activation dump (DUMP_FORMAT.md) of a Hunyuan v1 checkpoint with hyoracle's
independent PyTorch implementation (tools/hytools/tencent_hunyuan.py): Tencent's Hunyuan-Large
semantics for model_type "hunyuan" (cross-layer attention, top-1 weight p_max, ...), transformers'
semantics for "hunyuan_v1_moe" / "hunyuan_v1_dense". CPU or CUDA, torch only (no transformers).

    python3 tools/tencent_hunyuan_dump.py CHECKPOINT_DIR OUT_DIR --tokens 1,2,3 \
        [--dtype float64|float32|bfloat16] [--device cpu|cuda] [--kind full|modules] [--generate N] [--no-steps]

float64 (the default) computes every operation in double: the exact mathematical model, recorded
as producer.precision "exact". float32 computes in float32 ("fp32"). bfloat16 ("bf16") is an
engine-like run: each operation computed in float32 and its output rounded to bf16 once, the router
kept fp32 (hytools/tencent_hunyuan.py says exactly what is rounded). --device cuda runs it on the
GPU (no TF32). --kind modules writes only what forward hooks on modules would give. The dump holds every canonical tensor of the prefill, the
generated tokens and their logits, each decode step as steps.S.* (unless --no-steps), the router's
top-k margin, and each layer's KV cache after the run (layers.L.kv.k / kv.v). The manifest names
the producer "hyoracle-tencent-hunyuan-torch", the config's class and the semantics followed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_io import dtype_arg  # noqa: E402
from hytools.tencent_hunyuan_run import PRECISION, dump  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--dtype", default="float64", type=dtype_arg, choices=sorted(PRECISION),
                    help="float64 (default, exact), float32 or bfloat16; any case, also fp64, fp32, bf16")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ap.add_argument("--kind", default="full", choices=["full", "modules"],
                    help="full (every canonical tensor, default) or modules (module outputs only)")
    ap.add_argument("--generate", type=int, default=0, help="greedy tokens to generate (KV-cache decode)")
    ap.add_argument("--no-steps", action="store_true", help="do not record steps.S.* activations")
    a = ap.parse_args(argv)
    toks = [int(x) for x in a.tokens.split(",") if x.strip()]
    s = dump(a.checkpoint, toks, a.out, a.generate, dtype=a.dtype, record_steps=not a.no_steps,
             checkpoint=a.checkpoint, device=a.device, kind=a.kind)
    print(json.dumps(s))


if __name__ == "__main__":
    main()
