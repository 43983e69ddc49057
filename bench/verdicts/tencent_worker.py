#!/usr/bin/env python3
"""The engine of the verdicts harness's cla stage: hyoracle's independent implementation of
Tencent's Hunyuan code (tools/hytools/tencent_hunyuan.py; transformers has no cross-layer
attention) in bf16 or fp32, on the GPU when there is one, honest and with planted bugs.

    python3 bench/verdicts/tencent_worker.py PLAN.json STATUS.jsonl

The same PLAN / STATUS protocol as hf_worker.py (configurations: variants_hunyuan.TENCENT_CONFIGS).
Each configuration's weights are loaded once; each (configuration, bug) runs once and writes both
dump kinds from that run (a module-only dump is the full run's module outputs, as hooks on an
engine's modules would give them). Bugs (variants_hunyuan.CLA_BUGS) replace one module-level
function of tencent_hunyuan.py for the run:
  cla-k-after-norm  cross_layer_kv hands the cross layers the source layer's k_norm instead of k
  top1-renorm       route renormalises the top-1 weight (to 1.0)
The status records HF-style ground truth: the first tensor where a bug's dump differs from the
honest one of the same configuration and kind, and whether a second honest run is bitwise
identical. Needs torch."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import torch  # noqa: E402

from hf_worker import first_difference, rel_l2, routing_flips, status  # noqa: E402
from hytools import tencent_hunyuan as TH  # noqa: E402
from hytools import tencent_hunyuan_run as THR  # noqa: E402


def plant(bug):
    """Replace the module-level function `bug` needs; returns the undo callback."""
    if bug == "cla-k-after-norm":
        orig = TH.cross_layer_kv
        TH.cross_layer_kv = lambda k, v, k_rope, k_norm: (k_norm, v)
        return lambda: setattr(TH, "cross_layer_kv", orig)
    if bug == "top1-renorm":
        orig = TH.route
        TH.route = lambda logits, k, renorm_top1: orig(logits, k, True)
        return lambda: setattr(TH, "route", orig)
    raise KeyError(bug)


def kind_view(store, kind):
    return store if kind == "full" else THR.module_cut(store)


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    plan = json.load(open(argv[0]))
    spath = argv[1]
    dev = plan.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    ckpt, tokens, G = plan["ckpt"], plan["tokens"], int(plan["generate"])
    label = plan.get("checkpoint_label", ckpt)
    print(f"tencent_worker: torch {torch.__version__}, device {dev}, T={len(tokens)}, G={G}", flush=True)
    for mc in plan["models"]:
        t0 = time.time()
        try:
            loaded = THR.load(ckpt, mc["dtype"], dev)
        except Exception:  # noqa: BLE001
            tb = traceback.format_exc()
            print(tb, flush=True)
            for d in mc["dumps"]:
                status(spath, {"variant": d["variant"], "ok": False, "error": f"{mc['name']} failed to load: {tb}"})
            continue
        print(f"loaded {mc['name']} ({mc['dtype']}) in {time.time() - t0:.1f} s", flush=True)
        fam = "hunyuan_v1"
        runs = {}            # bug (None: honest) -> run result
        rerun_done = False
        has_bugs = any(d.get("bug") for d in mc["dumps"])
        for d in mc["dumps"]:
            t1 = time.time()
            bug = d.get("bug")
            rec = {"variant": d["variant"], "config": mc["name"], "kind": d["kind"], "bug": bug,
                   "attn_implementation": "tencent_hunyuan.py", "experts_implementation": "tencent_hunyuan.py"}
            undo = None
            try:
                if bug not in runs:
                    for old in [b for b in runs if b is not None]:
                        del runs[old]          # keep the honest run and the current bug's
                    undo = plant(bug) if bug else None
                    runs[bug] = THR.run(ckpt, tokens, G, mc["dtype"], True, dev, loaded=loaded)
                    if undo:
                        undo()
                        undo = None
                res = runs[bug]
                extra = {"harness_variant": d["variant"]}
                if bug:
                    extra["planted_bug"] = bug
                s = THR.write(ckpt, res, tokens, d["out"], G, mc["dtype"], True, label, dev, d["kind"], extra)
                rec.update(ok=True, tokens=s["tokens"], logit_margins=s["logit_margins"],
                           min_router_margin=s["min_router_margin"])
                if bug is None and has_bugs and not rerun_done:
                    # the ground truth diffs bugged against honest runs: a second run must be identical
                    rerun_done = True
                    again = THR.run(ckpt, tokens, G, mc["dtype"], True, dev, loaded=loaded)
                    rec["rerun_first_difference"] = first_difference(res[1], again[1], fam)
                    del again
                if bug and None in runs:
                    base, tens = kind_view(runs[None][1], d["kind"]), kind_view(res[1], d["kind"])
                    fd = first_difference(base, tens, fam)
                    rec["hf_first_difference"] = fd
                    rec["inert"] = fd is None
                    exp = d.get("expected")
                    if exp and exp in base and exp in tens and base[exp].is_floating_point():
                        rec["effect_rel_l2"] = rel_l2(base[exp], tens[exp])
                    rec["routing_flips_by_layer"] = {n: routing_flips(base[n], tens[n]) for n in base
                                                     if n.startswith("layers.") and n.endswith("moe.topk_ids")}
                elif bug:
                    rec["hf_first_difference"] = "no honest run of this configuration to diff against"
            except Exception:  # noqa: BLE001
                if undo:
                    undo()
                rec.update(ok=False, error=traceback.format_exc())
            rec["seconds"] = round(time.time() - t1, 2)
            status(spath, rec)
        del loaded, runs
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
        print(f"{mc['name']}: done in {time.time() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
