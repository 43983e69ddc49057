#!/usr/bin/env python3
"""Write a hyoracle activation dump (docs: DUMP_FORMAT.md, version 1) from an HF transformers
`HYV3ForCausalLM` (model_type `hy_v3`), `HunYuanMoEV1ForCausalLM` (`hunyuan_v1_moe`) or
`HunYuanDenseV1ForCausalLM` (`hunyuan_v1_dense`); the class follows config.json's model_type.

The module attaches forward hooks (and two light function wrappers) to a loaded model, runs one
prefill over the prompt and, optionally, N greedy decode steps with the KV cache, and writes

    <out>/manifest.json
    <out>/activations.safetensors

with the canonical tensor names of DUMP_FORMAT.md, batch 1, leading dimension T, HF's internal
layouts undone (heads [T, n, d], router top-k reordered, batch dimension dropped).

Library use (the same code dumps patched "planted bug" models):

    import hf_dump
    hf_dump.set_strict_fp()                       # no TF32, "highest" fp32 matmul precision
    model, info = hf_dump.load_model(ckpt, "bfloat16", device="cuda")
    summary = hf_dump.dump_model(model, token_ids, out_dir, generate_n=5,
                                 precision="bf16", config_path=ckpt + "/config.json")

For a float64 run (precision "exact") call `prepare_exact_f64(model)` after loading; `dump_model`
then runs the forward under `PromoteFp32Mode`, which rewrites every hard-coded float32 cast of
the HF code (`.float()`, `.to(torch.float32)`, `dtype=torch.float32`) to float64 and audits that
every floating tensor produced during the forward is float64.

CLI:
    python3 tools/hf_dump.py CHECKPOINT_DIR OUT_DIR --tokens 1,2,3 --dtype bfloat16 \
        [--generate 5] [--device cuda] [--no-steps] [--kind full|modules] \
        [--attn-implementation sdpa] [--experts-implementation grouped_mm|default]

Module-only mode (`--kind modules`, `dump_model(..., dump_kind="modules")`) records only what
forward hooks on modules give (no function wrappers): embed, per layer input_norm, attn.q_norm,
attn.k_norm, attn.out, post_norm, moe.router_logits/topk_ids/topk_weights/routed_out/shared_out,
mlp.out, out, then final_norm and logits (plus input ids, generate.* and the steps.S.* copies).

The manifest records `model.weights_fingerprint` of CHECKPOINT_DIR's safetensors files
(`dump_model(..., weights_dir=...)`; hytools/checkpoint.py defines it). A Hunyuan v1 dump also
records `producer.class` and `producer.semantics` ("hf"), and `hf_run.loading_info`; its load must
report no missing, unexpected or mismatched keys (hytools/hf_recorder_hunyuan.py says where each
tensor is taken).

Needs torch, transformers (with hy_v3) and nothing else: the safetensors writer is built in.
The code lives in tools/hytools (hf_precision, hf_load, hf_recorder, hf_run); this script is its
command line, and `import hf_dump` gives the library names used above.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lazy_import import torch  # noqa: E402  (imported on first use: --help works without torch)
from dump_io import (canonical_dtype, canonical_names, dtype_arg, dump_order, order_key, read_dump,  # noqa: E402,F401
                     read_safetensors, write_dump, write_safetensors)
from hytools.checkpoint import read_config, sha256_file, weights_fingerprint  # noqa: E402,F401
from hytools.families import family_of  # noqa: E402
from hytools.hf_load import (DTYPES, experts_implementation_in_effect, load_model,  # noqa: E402,F401
                             set_experts_implementation)
from hytools.hf_precision import PromoteFp32Mode, prepare_exact_f64, set_strict_fp  # noqa: E402,F401
from hytools.hf_recorder import Recorder, canonical_order, is_moe, patch_function, topk_with_tiebreak  # noqa: E402,F401
from hytools.hf_run import dump_model, greedy, logit_margin, run_forward_and_generate  # noqa: E402,F401
from hytools.module_names import DUMP_KINDS, layer_module_suffixes, module_names  # noqa: E402,F401


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--dtype", default="bfloat16", type=dtype_arg, choices=sorted(DTYPES),
                    help="bfloat16 (default), float32 or float64; any case, also bf16, fp32, fp64")
    ap.add_argument("--generate", type=int, default=0)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--no-steps", action="store_true", help="do not record steps.S.* activations")
    ap.add_argument("--attn-implementation", default="eager",
                    help="eager (default, the goldens'), sdpa, ... (HF's attn_implementation)")
    ap.add_argument("--experts-implementation", default="eager",
                    help="eager (default), grouped_mm, batched_mm, or 'default' for HF's own choice")
    ap.add_argument("--kind", default=None, choices=["full", "modules"],
                    help="full (every canonical tensor) or modules (module forward hooks only); "
                         "recorded as hf_run.dump_kind (absent: the goldens' full dump)")
    a = ap.parse_args(argv)
    if a.device is None:
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    set_strict_fp()
    ei = None if a.experts_implementation == "default" else a.experts_implementation
    fam = family_of(read_config(os.path.join(a.checkpoint, "config.json"))[0]["model_type"])
    if fam.hf_class is None:
        raise SystemExit(f"hf_dump.py: error: transformers has no class for {fam.semantics} semantics "
                         "(model_type hunyuan): use tools/tencent_hunyuan_dump.py")
    model, info = load_model(a.checkpoint, a.dtype, a.device, attn_implementation=a.attn_implementation,
                             experts_implementation=ei, model_class=fam.hf_class)
    print(json.dumps(info, indent=1))
    extra = {}
    if fam.family == "hunyuan_v1":
        bad = {k: v for k, v in info["loading_info"].items() if v not in ([], "", "[]", "{}", "set()", "None")}
        if bad:
            raise SystemExit(f"hf_dump.py: error: {fam.hf_class}.from_pretrained reports {bad}")
        extra["loading_info"] = info["loading_info"]
        wg = [l.mlp.gate.wg.weight for l in model.model.layers if hasattr(getattr(l.mlp, "gate", None), "wg")]
        extra["router_weight_dtype_loaded"] = str(wg[0].dtype).replace("torch.", "") if wg else None
    if a.dtype == "float64":
        extra["exact_prep"] = prepare_exact_f64(model)
    prec = {"float64": "exact", "float32": "fp32", "bfloat16": "bf16"}[a.dtype]
    toks = [int(x) for x in a.tokens.split(",") if x.strip()]
    s = dump_model(model, toks, a.out, a.generate, precision=prec,
                   config_path=os.path.join(a.checkpoint, "config.json"), checkpoint=a.checkpoint,
                   record_steps=not a.no_steps, extra_manifest=extra, dump_kind=a.kind,
                   weights_dir=a.checkpoint)
    print(json.dumps({"tokens": s["tokens"], "logit_margins": s["logit_margins"]}))


if __name__ == "__main__":
    main()
