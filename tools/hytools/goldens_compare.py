"""Comparing the goldens' dumps: HF float64 against the reference, router and logit margins,
routing flips and the first tensor where two dumps differ."""

from __future__ import annotations

from collections import OrderedDict

from dump_io import dump_order
from hytools.goldens_fixtures import MIN_MARGIN
from hytools.hf_recorder import topk_with_tiebreak
from hytools.hf_run import logit_margin
from lazy_import import torch  # imported on first use


def compare_with_ref(dump, full, steps, n_steps):
    """max |HF f64 - reference| per tensor, relative to max |reference|."""
    worst = (0.0, None)
    rows = {}
    id_mismatch = []
    for name, t in dump.items():
        if name.startswith("steps."):
            s = int(name.split(".")[1])
            base = name.split(".", 2)[2]
            ref = steps.get(s, {}).get(base)
        else:
            base = name
            ref = full.get(name)
        if ref is None or base in ("input_ids",):
            continue
        if base.endswith("topk_ids"):
            if not torch.equal(t.long(), ref.long()):
                id_mismatch.append(name)
            continue
        if tuple(t.shape) != tuple(ref.shape):
            rows[name] = f"shape {tuple(t.shape)} vs {tuple(ref.shape)}"
            worst = (float("inf"), name)
            continue
        err = float((t.double() - ref.double()).abs().max()) / max(float(ref.abs().max()), 1e-300)
        rows[name] = err
        if err > worst[0]:
            worst = (err, name)
    return {"max_rel_err": worst[0], "at": worst[1], "topk_id_mismatches": id_mismatch,
            "per_tensor": rows}


def margins_from_dump(dump, ckpt_W, cfg):
    """Router margins (k-th minus (k+1)-th corrected score) and greedy logit margins from the
    HF float64 dump (scores from HF, bias from the checkpoint's F32 expert_bias)."""
    k = cfg["num_experts_per_tok"]
    out = OrderedDict(min_router_margin=None, min_logit_margin=None, per_layer=OrderedDict(),
                      logit_margins=[])
    allm = []
    for L in range(1, cfg["num_hidden_layers"]):
        bias = ckpt_W[f"model.layers.{L}.mlp.expert_bias"].double()
        per_tok = []
        srcs = [("prefill", dump[f"layers.{L}.moe.scores"])]
        s = 1
        while f"steps.{s}.layers.{L}.moe.scores" in dump:
            srcs.append((f"steps.{s}", dump[f"steps.{s}.layers.{L}.moe.scores"]))
            s += 1
        for src, sc in srcs:
            corr = sc.double() + bias
            _, sorted_c = topk_with_tiebreak(corr, k)
            m = (sorted_c[:, k - 1] - sorted_c[:, k]).tolist()
            for t, v in enumerate(m):
                per_tok.append({"where": src, "token": t, "margin": v})
        mn = min(per_tok, key=lambda r: r["margin"])
        out["per_layer"][f"layers.{L}"] = {"min": mn["margin"], "at": {"where": mn["where"], "token": mn["token"]},
                                           "tokens": len(per_tok)}
        allm += [r["margin"] for r in per_tok]
    gl = dump["generate.logits"].double()
    for r in gl:
        out["logit_margins"].append(logit_margin(r))
    out["min_router_margin"] = min(allm)
    out["min_logit_margin"] = min(out["logit_margins"])
    out["threshold"] = MIN_MARGIN
    out["ok"] = out["min_router_margin"] >= MIN_MARGIN and out["min_logit_margin"] >= MIN_MARGIN
    out["source"] = ("hf-f64 dump: moe.scores (+ the checkpoint's F32 expert_bias) of the prefill and of "
                     "every decode step (steps.S), generate.logits rows")
    return out


def routing_flips(a, b, cfg):
    """Per layer: tokens whose expert set differs between dumps a and b (prefill and steps)."""
    res = OrderedDict()
    for L in range(1, cfg["num_hidden_layers"]):
        flips = []
        names = [f"layers.{L}.moe.topk_ids"]
        s = 1
        while f"steps.{s}.layers.{L}.moe.topk_ids" in a:
            names.append(f"steps.{s}.layers.{L}.moe.topk_ids")
            s += 1
        for n in names:
            if n not in b:
                continue
            for t, (x, y) in enumerate(zip(a[n], b[n])):
                if set(x.tolist()) != set(y.tolist()):
                    flips.append({"tensor": n, "token": t, "a": x.tolist(), "b": y.tolist()})
        res[f"layers.{L}"] = flips
    return res


def first_divergence(base, other):
    """First tensor (execution order) of `base` that is not bitwise identical in `other`."""
    for n in dump_order(base.keys()):
        t = base[n]
        if n not in other:
            return {"tensor": n, "reason": "missing"}
        o = other[n]
        if o.dtype != t.dtype or tuple(o.shape) != tuple(t.shape):
            return {"tensor": n, "reason": "dtype/shape"}
        if not torch.equal(o, t):
            diff = (o.double() - t.double()).abs()
            return {"tensor": n, "reason": "values", "max_abs": float(diff.max()),
                    "elements_differing": int((diff > 0).sum()), "elements": diff.numel()}
    return None


