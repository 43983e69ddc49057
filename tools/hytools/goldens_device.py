"""The device command of make_hf_goldens.py: HF transformers dumps of every fixture (float64,
float32, bfloat16 and the planted bugs), checked against the reference, with their summaries."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections import OrderedDict

from dump_io import read_dump, write_safetensors
from hytools.checkpoint import read_checkpoint, read_config
from hytools.goldens_bugs import BUGS, apply_bug, write_bugs_readme
from hytools.goldens_compare import compare_with_ref, first_divergence, margins_from_dump, routing_flips
from hytools.goldens_fixtures import FIXTURES, GENERATE_N
from hytools.goldens_reference import ref_generate
from hytools.hf_load import load_model
from hytools.hf_precision import prepare_exact_f64, set_strict_fp
from hytools.hf_recorder import is_moe
from hytools.hf_run import dump_model
from lazy_import import torch  # imported on first use

# (dump directory under golden/, model dtype, precision recorded in the manifest)
RUNS = [("hf-f64", "float64", "exact"), ("hf-f32", "float32", "fp32"), ("hf-bf16", "bfloat16", "bf16")]


def compact_summary(summ):
    out = OrderedDict()
    for k in ("prompt", "reference_tokens", "margins", "f64_vs_reference", "tokens_hf-f32_vs_f64",
              "tokens_hf-bf16_vs_f64", "bf16_rerun_first_difference", "mtp_layer_removed", "seconds"):
        if k in summ:
            out[k] = summ[k]
    out["runs"] = OrderedDict((r, v.get("tokens", "error")) for r, v in summ.get("runs", {}).items())
    if "bugs" in summ:
        out["bugs_first_divergence"] = OrderedDict(
            (b, (v.get("measured_first_divergence_vs_hf_bf16") or {}).get("tensor") if isinstance(v, dict) else None)
            for b, v in summ["bugs"].items())
    return out



def _env_info():
    import transformers
    info = OrderedDict(python=sys.version.split()[0], torch=torch.__version__,
                       transformers=transformers.__version__,
                       cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    try:
        import safetensors
        info["safetensors"] = safetensors.__version__
    except Exception:
        pass
    return info


def load_with_fallback(d, dtype, device, cfg, summ):
    """load_model; if loading fails and the checkpoint holds layers >= num_hidden_layers
    (the MTP-like extra layer), drop them from the checkpoint, record it, and retry once."""
    try:
        return load_model(d, dtype, device)
    except Exception as e:  # noqa: BLE001
        W = read_checkpoint(d)
        L = cfg["num_hidden_layers"]
        extra = [n for n in W if n.startswith("model.layers.") and int(n.split(".")[2]) >= L]
        if not extra or os.path.exists(os.path.join(d, "index.json")) or len(
                [f for f in os.listdir(d) if f.endswith(".safetensors")]) != 1:
            raise
        print(f"load failed ({e!r}); removing {len(extra)} tensors of layers >= {L} and retrying", flush=True)
        summ["mtp_layer_removed"] = {"reason": repr(e), "tensors": extra}
        write_safetensors(os.path.join(d, "model.safetensors"),
                          OrderedDict((n, t) for n, t in W.items() if n not in extra),
                          metadata={"format": "pt"})
        return load_model(d, dtype, device)


def cmd_device(args):
    set_strict_fp()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    env = _env_info()
    print("env:", json.dumps(env), flush=True)
    overall = OrderedDict(env=env, fixtures=OrderedDict(), errors=[])
    for name, f in FIXTURES.items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        d = os.path.join(args.fixtures, name)
        rel = os.path.relpath(d, os.path.dirname(os.path.abspath(args.fixtures)))
        cfg = read_config(os.path.join(d, "config.json"))[0]
        W = read_checkpoint(d)
        prompt = f["prompt"]
        summ = OrderedDict(fixture=name, prompt=prompt, runs=OrderedDict())
        gdir = os.path.join(d, "golden")
        os.makedirs(gdir, exist_ok=True)
        dumps = {}
        for run, dtype, prec in RUNS:
            try:
                model, linfo = load_with_fallback(d, dtype, device, cfg, summ)
                extra = OrderedDict(loading=linfo)
                # the checkpoint's F32 expert_bias must arrive unrounded
                bias_ok = []
                for L, layer in enumerate(model.model.layers):
                    if is_moe(layer):
                        b = layer.mlp.e_score_correction_bias
                        ref = W[f"model.layers.{L}.mlp.expert_bias"]
                        bias_ok.append({"layer": L, "dtype": str(b.dtype),
                                        "exact": bool(torch.equal(b.detach().cpu().to(torch.float32), ref))})
                        gu = layer.mlp.experts.gate_up_proj.detach().cpu()
                        Ie = cfg["moe_intermediate_size"]
                        e = 1
                        gate_ok = torch.equal(gu[e, :Ie].to(torch.bfloat16), W[f"model.layers.{L}.mlp.experts.{e}.gate_proj.weight"])
                        up_ok = torch.equal(gu[e, Ie:].to(torch.bfloat16), W[f"model.layers.{L}.mlp.experts.{e}.up_proj.weight"])
                        extra.setdefault("gate_up_layout_gate_first", []).append(bool(gate_ok and up_ok))
                extra["bias_loaded"] = bias_ok
                if dtype == "float64":
                    extra["exact_prep"] = prepare_exact_f64(model)
                out = os.path.join(gdir, run)
                s = dump_model(model, prompt, out, GENERATE_N, precision=prec,
                               config_path=os.path.join(d, "config.json"), checkpoint=rel, weights_dir=d,
                               extra_manifest=extra, census=(dtype != "float64"))
                man, tens = read_dump(out)
                dumps[run] = tens
                rs = OrderedDict(tokens=s["tokens"], logit_margins=s["logit_margins"],
                                 loading=linfo, bias_loaded=bias_ok,
                                 gate_up_layout_gate_first=extra.get("gate_up_layout_gate_first"),
                                 eager_calls=s["eager_calls"], rope_calls=s["rope_calls"],
                                 tiebreak_set_mismatch=sum(
                                     1 for L in s["router"].values() for v in L.values()
                                     for ok in v["set_matches_tiebreak_rule"] if not ok))
                if "f64_audit" in s:
                    rs["f64_audit"] = s["f64_audit"]
                    rs["exact_prep"] = extra["exact_prep"]
                if "dtype_census" in s:
                    rs["dtype_census"] = s["dtype_census"]
                # cross-check our greedy loop against HF generate (stock runs only)
                if dtype != "float64":
                    try:
                        ids = torch.tensor([prompt], device=device)
                        g = model.generate(ids, max_new_tokens=GENERATE_N, do_sample=False,
                                           attention_mask=torch.ones_like(ids))
                        rs["hf_generate_tokens"] = g[0, len(prompt):].tolist()
                    except Exception as e:  # noqa: BLE001
                        rs["hf_generate_tokens"] = f"error: {e!r}"
                summ["runs"][run] = rs
                print(f"{name} {run}: tokens {s['tokens']} (HF generate: {rs.get('hf_generate_tokens')}); "
                      f"missing={linfo['loading_info'].get('missing_keys')} "
                      f"unexpected={linfo['loading_info'].get('unexpected_keys')}", flush=True)
                if run == "hf-bf16":
                    # determinism check: a second stock bf16 run must be bitwise identical
                    tmp = os.path.join(args.scratch, f"{name}-bf16-again")
                    dump_model(model, prompt, tmp, GENERATE_N, precision=prec,
                               config_path=os.path.join(d, "config.json"), checkpoint=rel, weights_dir=d)
                    _, again = read_dump(tmp)
                    summ["bf16_rerun_first_difference"] = first_divergence(tens, again)
                del model
                if device == "cuda":
                    torch.cuda.empty_cache()
            except Exception as e:  # noqa: BLE001
                tb = traceback.format_exc()
                print(tb, flush=True)
                overall["errors"].append(f"{name} {run}: {e!r}")
                summ["runs"][run] = {"error": tb}
        # reference comparison and margins
        try:
            full, rtoks, rrows, rsteps = ref_generate(W, cfg, prompt, GENERATE_N)
            summ["reference_tokens"] = rtoks
            if "hf-f64" in dumps:
                cmp = compare_with_ref(dumps["hf-f64"], full, rsteps, GENERATE_N - 1)
                summ["f64_vs_reference"] = {k: v for k, v in cmp.items() if k != "per_tensor"}
                worst = sorted(((v, k) for k, v in cmp["per_tensor"].items() if isinstance(v, float)), reverse=True)[:5]
                summ["f64_vs_reference"]["worst"] = [{"tensor": k, "rel_err": v} for v, k in worst]
                m = margins_from_dump(dumps["hf-f64"], W, cfg)
                m["seed"] = json.load(open(os.path.join(d, "build.json")))["seed"]
                with open(os.path.join(gdir, "margins.json"), "w") as fh:
                    json.dump(m, fh, indent=2)
                    fh.write("\n")
                summ["margins"] = {"min_router_margin": m["min_router_margin"],
                                   "min_logit_margin": m["min_logit_margin"], "ok": m["ok"]}
                for other in ("hf-f32", "hf-bf16"):
                    if other in dumps:
                        summ[f"routing_flips_{other}_vs_f64"] = routing_flips(dumps["hf-f64"], dumps[other], cfg)
                        a = dumps["hf-f64"]["generate.tokens"].tolist()
                        b = dumps[other]["generate.tokens"].tolist()
                        summ[f"tokens_{other}_vs_f64"] = {"f64": a, other: b, "same": a == b,
                                                          "first_diff": next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)}
            print(f"{name}: summary {json.dumps({k: v for k, v in summ.items() if k not in ('runs',) and not k.startswith('routing')}, default=str)}", flush=True)
        except Exception as e:  # noqa: BLE001
            tb = traceback.format_exc()
            print(tb, flush=True)
            overall["errors"].append(f"{name} reference/margins: {e!r}")
        # planted bugs
        if not args.no_bugs and "hf-bf16" in dumps:
            bdir = os.path.join(d, "bugs")
            os.makedirs(bdir, exist_ok=True)
            bsum = OrderedDict()
            for bug, (how, expect) in BUGS.items():
                try:
                    model, linfo = load_model(d, "bfloat16", device)
                    undo, state = apply_bug(model, bug)
                    out = os.path.join(bdir, bug)
                    try:
                        s = dump_model(model, prompt, out, GENERATE_N, precision="bf16",
                                       config_path=os.path.join(d, "config.json"), checkpoint=rel, weights_dir=d,
                                       extra_manifest={"planted_bug": bug, "patch": how})
                    finally:
                        for fn in reversed(undo):
                            fn()
                    if state["calls"] == 0:
                        raise RuntimeError(f"bug patch {bug} never ran")
                    _, tens = read_dump(out)
                    fd = first_divergence(dumps["hf-bf16"], tens)
                    bsum[bug] = OrderedDict(
                        patch=how, expected_first_divergence=expect.replace("{last}", str(cfg["num_hidden_layers"] - 1)),
                        measured_first_divergence_vs_hf_bf16=fd, tokens=s["tokens"],
                        stock_bf16_tokens=dumps["hf-bf16"]["generate.tokens"].tolist(),
                        routing_flips_vs_stock=sum(len(v) for v in routing_flips(dumps["hf-bf16"], tens, cfg).values()),
                        patch_calls=state["calls"])
                    print(f"{name} bug {bug}: first divergence {fd}", flush=True)
                    del model
                except Exception as e:  # noqa: BLE001
                    tb = traceback.format_exc()
                    print(tb, flush=True)
                    overall["errors"].append(f"{name} bug {bug}: {e!r}")
                    bsum[bug] = {"error": tb}
            summ["bugs"] = bsum
            with open(os.path.join(bdir, "bugs.json"), "w") as fh:
                json.dump(bsum, fh, indent=2, default=str)
                fh.write("\n")
            write_bugs_readme(d, name)
        summ["seconds"] = round(time.time() - t0, 1)
        with open(os.path.join(gdir, "summary.json"), "w") as fh:
            json.dump(summ, fh, indent=2, default=str)
            fh.write("\n")
        overall["fixtures"][name] = compact_summary(summ)
    with open(os.path.join(args.fixtures, "device_summary.json"), "w") as fh:
        json.dump(overall, fh, indent=2, default=str)
        fh.write("\n")
    print("errors:", overall["errors"], flush=True)
    return 1 if overall["errors"] else 0


