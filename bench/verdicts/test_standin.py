#!/usr/bin/env python3
"""The verdicts harness's torch code on CPU stand-ins: the HF worker on the stand-in of transformers'
HYV3ForCausalLM and HunYuanMoEV1ForCausalLM (standin/), and the cla stage's worker on hyoracle's
independent Tencent implementation. Each writes every variant of its fixture (honest and planted
bugs, module-only and full; the HF rows in the harness's bf16 sdpa + grouped_mm configuration,
which falls back to batched_mm on tiny-mt2, the cla rows in bf16), and the engine's own ground
truth must agree with variants.py / variants_hunyuan.py: each bug's dump first differs from the
honest one at its expected tensor (or nowhere: an inert bug), a second honest run is bitwise
identical, a module-only dump holds exactly the module tensors. Independent of compare's verdicts.

    python3 bench/verdicts/test_standin.py       # exit 77 (skipped) without torch
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import variants as V  # noqa: E402
import variants_hunyuan as VH  # noqa: E402

# (fixture, golden whose prompt is used, rows, engine configuration, worker)
CASES = (
    ("tiny-mt2", "hf-bf16", V.tiny_variants, "bf16-fast", "hf_worker.py"),
    ("tiny-hy3", "hf-bf16", V.tiny_variants, "bf16-fast", "hf_worker.py"),
    ("gen-tiny-hunyuan-a13b", "reference-exact", VH.hunyuan_variants, "bf16-fast", "hf_worker.py"),
    ("gen-tiny-hunyuan-large", "reference-exact", VH.cla_variants, "tencent-bf16", "tencent_worker.py"),
)
OPTIONAL_BUGS = {"router-bias-bf16", "router-logits-bf16"}   # may change nothing on a short prompt

MODULE_BASE = {"input_ids", "embed", "final_norm", "logits"}


def main():
    try:
        import torch  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        print("torch/numpy not available: skipped")
        return 77
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from dump_io import read_safetensors
    bad = []
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "standin") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for fx, golden, make_rows, cname, worker in CASES:
        fxd = os.path.join(ROOT, "fixtures", fx)
        cfg = json.load(open(os.path.join(fxd, "config.json")))
        man = json.load(open(os.path.join(fxd, "golden", golden, "manifest.json")))
        rows = [r for r in make_rows(cfg) if r["config"] == cname]
        with tempfile.TemporaryDirectory() as d:
            c = VH.all_configs()[cname]
            dumps = [dict(variant=r["variant"], kind=r["kind"], out=os.path.join(d, r["variant"]), bug=r["bug"],
                          params=r["params"],
                          expected=None if r["expected"] in (V.PASS, VH.OBSERVE) else r["expected"])
                     for r in rows]
            plan = dict(ckpt=fxd, checkpoint_label=f"fixtures/{fx}", tokens=man["input"]["token_ids"], generate=5,
                        device="cpu", models=[dict(name=cname, dtype=c["dtype"], attn=c["attn"],
                                                   experts=c["experts"], dumps=dumps)])
            pp, sp = os.path.join(d, "plan.json"), os.path.join(d, "status.jsonl")
            json.dump(plan, open(pp, "w"))
            r = subprocess.run([sys.executable, os.path.join(HERE, worker), pp, sp], env=env,
                               capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                bad.append(f"{fx}: worker exit {r.returncode}: {r.stdout[-2000:]} {r.stderr[-2000:]}")
                continue
            st = {json.loads(x)["variant"]: json.loads(x) for x in open(sp) if x.strip()}
            for row in rows:
                s = st.get(row["variant"])
                name = f"{fx}/{row['variant']}"
                if not s or not s.get("ok"):
                    bad.append(f"{name}: not written: {(s or {}).get('error')}")
                    continue
                if row["role"] == "bug":
                    fd = s.get("hf_first_difference")
                    got = fd.get("tensor") if isinstance(fd, dict) else None
                    if got is not None and row["expected"] != VH.OBSERVE and got != row["expected"]:
                        bad.append(f"{name}: HF first difference {got}, expected {row['expected']}")
                    if got is None and row["bug"] not in OPTIONAL_BUGS:
                        bad.append(f"{name}: the bug changed nothing")
                    if worker == "hf_worker.py" and not s.get("patch_calls"):
                        bad.append(f"{name}: patch never ran")
                if "rerun_first_difference" in s and s["rerun_first_difference"] is not None:
                    bad.append(f"{name}: second honest run differs: {s['rerun_first_difference']}")
                names = set(read_safetensors(os.path.join(d, row["variant"], "activations.safetensors")))
                if row["kind"] == "modules":
                    for n in names:
                        base = n.split(".", 2)[2] if n.startswith("steps.") else n
                        if base.startswith("generate.") or base in MODULE_BASE:
                            continue
                        suffix = base.split(".", 2)[2] if base.startswith("layers.") else base
                        if suffix not in V_MODULE_SUFFIXES:
                            bad.append(f"{name}: module-only dump holds {n}")
                            break
                elif "layers.0.attn.q_rope" not in names or "steps.4.layers.0.attn.context" not in names:
                    bad.append(f"{name}: full dump lacks q_rope/context")
            print(f"{fx}: {len(st)} dumps checked")
    for b in bad:
        print("FAIL", b)
    print(f"{0 if bad else 1} passed, {1 if bad else 0} failed")
    return 1 if bad else 0


V_MODULE_SUFFIXES = {"input_norm", "attn.q_norm", "attn.k_norm", "attn.out", "post_norm", "moe.router_logits",
                     "moe.topk_ids", "moe.topk_weights", "moe.routed_out", "moe.shared_out", "mlp.out", "out"}

if __name__ == "__main__":
    sys.exit(main())
