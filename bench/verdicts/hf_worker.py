#!/usr/bin/env python3
"""The GPU part of the verdicts harness: HF transformers dumps, honest and with planted bugs.

    python3 bench/verdicts/hf_worker.py PLAN.json STATUS.jsonl

PLAN (written by harness.py): {"ckpt", "checkpoint_label", "tokens", "generate", "device",
"models": [{"name", "dtype", "attn", "experts", "dumps": [{"variant", "kind", "out", "bug",
"params", "expected", "diff_against"}]}]}. Each model configuration is loaded once and writes
all its dumps (tools/hf_dump.py; module-only or full). After each dump one JSON line goes to
STATUS: {"variant", "ok", "seconds", "tokens", "experts_implementation", ...}; for a planted bug
also the HF ground truth: the first tensor (execution order, generate.* last) where the bug's dump
differs from the honest dump of the same configuration and kind, and the rel-L2 of that
difference at the bug's expected tensor ("inert": bitwise equal everywhere). A failing dump is
reported and the next one runs. The transformers class is the one the config's model_type names
(hytools/families.py: HYV3ForCausalLM, HunYuanMoEV1ForCausalLM). Needs torch + transformers."""

from __future__ import annotations

import gc
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

import hf_bugs  # noqa: E402
import hf_dump  # noqa: E402
from dump_io import order_key  # noqa: E402
from hytools.families import family_of  # noqa: E402

PRECISION = {"bfloat16": "bf16", "float32": "fp32", "float64": "exact"}


def status(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec, default=str) + "\n")
        f.flush()
    print(json.dumps({k: rec.get(k) for k in ("variant", "ok", "seconds", "hf_first_difference", "error")},
                     default=str)[:600], flush=True)


def true_order_key(name, family="hy_v3"):
    """Execution order with generate.* and the caches (layers.L.kv.*) last: generate.logits rows
    1.. come from the decode steps, and a cache holds every step's rows."""
    if name.startswith("generate.") or (name.startswith("layers.") and ".kv." in name):
        return (10 ** 6, 0, 0, 0, name)
    return order_key(name, family)


def first_difference(base, other, family="hy_v3"):
    """The first tensor (the family's execution order) where two dumps differ, or None."""
    for n in sorted(base, key=lambda x: true_order_key(x, family)):
        if n not in other:
            return {"tensor": n, "reason": "missing"}
        a, b = base[n], other[n]
        if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
            return {"tensor": n, "reason": "dtype/shape"}
        if not torch.equal(a, b):
            d = (a.double() - b.double()).abs()
            return {"tensor": n, "reason": "values", "max_abs": float(d.max()),
                    "elements_differing": int((d > 0).sum()), "elements": d.numel()}
    return None


def routing_flips(a, b):
    """Tokens whose selected expert set differs between two [T, k] id tensors."""
    return int(sum(set(x.tolist()) != set(y.tolist()) for x, y in zip(a.long(), b.long())))


def rel_l2(a, b):
    a, b = a.double(), b.double()
    den = float(a.norm())
    return float((b - a).norm()) / den if den > 0 else float("inf")


def probe(model, info, experts):
    """A 4-token forward + one decode step; if the experts implementation fails here (torch's
    grouped_mm wants 16-byte aligned strides: tiny fixtures' I_e = 20 are not), fall back to
    batched_mm, then eager, and say so."""
    dev = next(model.parameters()).device
    chain = [experts] + [x for x in ("batched_mm", "eager") if x != experts]
    last = None
    for i, impl in enumerate(chain):
        if i > 0:
            hf_dump.set_experts_implementation(model, impl)
            info["notes"].append(f"experts implementation {chain[i - 1]!r} failed the probe ({last!r}); "
                                 f"using {impl!r}")
        try:
            with torch.no_grad():
                ids = torch.tensor([[3, 4, 5, 6]], dtype=torch.long, device=dev)
                out = model(input_ids=ids, use_cache=True)
                model(input_ids=ids[:, :1], past_key_values=out.past_key_values, use_cache=True)
            info["experts_implementation"] = hf_dump.experts_implementation_in_effect(model)
            return
        except Exception as e:  # noqa: BLE001
            last = e
    raise RuntimeError(f"every experts implementation failed the probe: {last!r}")


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    plan = json.load(open(argv[0]))
    spath = argv[1]
    hf_dump.set_strict_fp()
    dev = plan.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = plan["ckpt"]
    cfg_path = os.path.join(ckpt, "config.json")
    tokens = plan["tokens"]
    G = int(plan["generate"])
    import transformers
    fam = family_of(json.load(open(cfg_path))["model_type"])
    print(f"hf_worker: torch {torch.__version__}, transformers {transformers.__version__}, device {dev}, "
          f"T={len(tokens)}, G={G}, class {fam.hf_class}", flush=True)
    for mc in plan["models"]:
        t0 = time.time()
        try:
            ei = None if mc["experts"] in (None, "default") else mc["experts"]
            try:
                model, info = hf_dump.load_model(ckpt, mc["dtype"], dev, attn_implementation=mc["attn"],
                                                 experts_implementation=ei, model_class=fam.hf_class)
            except Exception as e:  # noqa: BLE001
                if ei in (None, "eager"):
                    raise
                # from_pretrained may refuse a fast experts implementation while the model sits on
                # the CPU: load with eager experts, then switch on the GPU (the probe checks it)
                print(f"load with experts {ei!r} failed ({e!r}); loading eager, then switching", flush=True)
                model, info = hf_dump.load_model(ckpt, mc["dtype"], dev, attn_implementation=mc["attn"],
                                                 experts_implementation="eager", model_class=fam.hf_class)
                hf_dump.set_experts_implementation(model, ei)
                info["notes"].append(f"from_pretrained refused experts {ei!r} ({e!r}); set after loading")
                info["experts_implementation"] = hf_dump.experts_implementation_in_effect(model)
            if fam.family == "hunyuan_v1":   # as tools/hf_dump.py: the load must be clean
                bad = {k: v for k, v in info["loading_info"].items() if v not in ([], "", "[]", "{}", "set()", "None")}
                if bad:
                    raise RuntimeError(f"{fam.hf_class}.from_pretrained reports {bad}")
                wg = [l.mlp.gate.wg.weight for l in model.model.layers if hasattr(getattr(l.mlp, "gate", None), "wg")]
                info["router_weight_dtype_loaded"] = str(wg[0].dtype).replace("torch.", "") if wg else None
            if mc["experts"] != "eager":
                probe(model, info, info.get("experts_implementation") or mc["experts"])
        except Exception:  # noqa: BLE001
            tb = traceback.format_exc()
            print(tb, flush=True)
            for d in mc["dumps"]:
                status(spath, {"variant": d["variant"], "ok": False, "error": f"model {mc['name']} failed to load: {tb}"})
            continue
        print(f"loaded {mc['name']} in {time.time() - t0:.1f} s: attn {info.get('attn_implementation')}, "
              f"experts {info.get('experts_implementation')}; notes {info.get('notes')}", flush=True)
        honest = {}          # kind -> tensors of the honest dump of this configuration
        ctx = {}             # auto expert
        for d in mc["dumps"]:
            t1 = time.time()
            rec = {"variant": d["variant"], "config": mc["name"], "kind": d["kind"], "bug": d.get("bug")}
            undo = []
            try:
                params = dict(d.get("params") or {})
                if params.get("expert") == "auto":
                    if "expert" not in ctx:
                        raise RuntimeError("expert 'auto' needs an honest dump of this configuration first")
                    params["expert"] = ctx["expert"]
                    rec["expert"] = ctx["expert"]
                    rec["expert_tokens"] = ctx["expert_tokens"]
                state = {"calls": 0}
                before = None
                if d.get("bug"):
                    undo, before = hf_bugs.apply(model, d["bug"], params, state)
                extra = {"loading": info, "harness_variant": d["variant"]}
                if d.get("bug"):
                    extra["planted_bug"] = d["bug"]
                    extra["bug_params"] = params
                s = hf_dump.dump_model(model, tokens, d["out"], G, precision=PRECISION[mc["dtype"]],
                                       config_path=cfg_path, checkpoint=plan.get("checkpoint_label", ckpt),
                                       extra_manifest=extra, dump_kind=d["kind"], before_step=before,
                                       weights_dir=ckpt)
                hf_bugs.undo_all(undo)
                undo = []
                rec.update(ok=True, tokens=s["tokens"], logit_margins=s["logit_margins"],
                           experts_implementation=hf_dump.experts_implementation_in_effect(model),
                           attn_implementation=getattr(model.config, "_attn_implementation", None))
                if d.get("bug"):
                    rec["bug_params"] = params
                    rec["patch_calls"] = state["calls"]
                    if state["calls"] == 0:
                        raise RuntimeError(f"bug patch {d['bug']} never ran")
                if not any(x.get("bug") for x in mc["dumps"]):
                    rec["seconds"] = round(time.time() - t1, 2)
                    status(spath, rec)   # nothing to diff against in this configuration
                    continue
                _, tens = hf_dump.read_dump(d["out"])
                if not d.get("bug"):
                    honest[d["kind"]] = tens
                    if not honest.get("_rerun_checked") and any(x.get("bug") for x in mc["dumps"]):
                        # the ground truth diffs bugged against honest dumps: a second honest run
                        # must be bitwise identical (else every diff starts at run-to-run noise)
                        honest["_rerun_checked"] = True
                        again = d["out"] + ".rerun"
                        hf_dump.dump_model(model, tokens, again, G, precision=PRECISION[mc["dtype"]],
                                           config_path=cfg_path, checkpoint=plan.get("checkpoint_label", ckpt),
                                           dump_kind=d["kind"])
                        _, t2 = hf_dump.read_dump(again)
                        rec["rerun_first_difference"] = first_difference(tens, t2, fam.family)
                        del t2
                        import shutil
                        shutil.rmtree(again, ignore_errors=True)
                    needs_expert = any((x.get("params") or {}).get("expert") == "auto" for x in mc["dumps"])
                    if "expert" not in ctx and needs_expert:
                        L = hf_bugs.moe_layers(model)[0][0]
                        ctx["expert"], ctx["expert_tokens"] = hf_bugs.most_used_expert(tens[f"layers.{L}.moe.topk_ids"])
                        rec["auto_expert"] = {"layer": L, "expert": ctx["expert"], "tokens": ctx["expert_tokens"]}
                elif d["kind"] in honest:
                    base = honest[d["kind"]]
                    fd = first_difference(base, tens, fam.family)
                    rec["hf_first_difference"] = fd
                    rec["inert"] = fd is None
                    exp = d.get("expected")
                    if exp and exp in base and exp in tens and base[exp].is_floating_point():
                        rec["effect_rel_l2"] = rel_l2(base[exp], tens[exp])
                    if exp and exp.endswith("moe.topk_ids") and exp in base and exp in tens:
                        rec["routing_flips"] = routing_flips(base[exp], tens[exp])
                    elif exp is None or not exp.startswith("layers."):   # no tensor expected: every layer's
                        rec["routing_flips_by_layer"] = {n: routing_flips(base[n], tens[n]) for n in base
                                                         if n.startswith("layers.") and n.endswith("moe.topk_ids")
                                                         and n in tens}
                else:
                    rec["hf_first_difference"] = "no honest dump of this kind to diff against"
                del tens
            except Exception:  # noqa: BLE001
                hf_bugs.undo_all(undo)
                rec.update(ok=False, error=traceback.format_exc())
            rec["seconds"] = round(time.time() - t1, 2)
            status(spath, rec)
        del model, honest
        gc.collect()
        if dev == "cuda":
            torch.cuda.empty_cache()
        print(f"{mc['name']}: done in {time.time() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
