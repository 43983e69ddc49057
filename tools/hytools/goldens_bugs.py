"""The goldens' planted bugs (bf16): each a monkeypatch of a loaded HF model, and the README that
describes their dumps."""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections import OrderedDict

from hytools.checkpoint import read_config
from hytools.hf_recorder import is_moe, patch_function
from lazy_import import torch  # imported on first use


BUGS = OrderedDict()
BUGS["rope-interleaved"] = ("RoPE pairs dimension 2i with 2i+1 (GPT-J style) instead of rotate-half "
                            "(j with j+d/2): `apply_rotary_pos_emb` of modeling_hy_v3 replaced by an "
                            "interleaved rotation using frequency i for the pair (2i, 2i+1)",
                            "layers.0.attn.q_rope")
BUGS["router-no-bias"] = ("expert selection ignores e_score_correction_bias: each router's forward is "
                          "called with a zero bias (weights still the un-biased sigmoid, renormalised, x2.826)",
                          "layers.1.moe.topk_ids (first MoE layer where a selection changes)")
BUGS["router-no-scaling"] = ("routed weights not multiplied by router_scaling_factor 2.826: each router's "
                             "`router_scaling_factor` attribute set to 1.0",
                             "layers.1.moe.topk_weights")
BUGS["oproj-5pct"] = ("the o_proj output of the LAST layer multiplied by 1.05 (bf16 product): "
                      "that o_proj's forward wrapped",
                      "layers.{last}.attn.out")
BUGS["qknorm-after-rope"] = ("q_norm/k_norm applied after RoPE instead of before: q_norm/k_norm forwards "
                             "made identity, and the original norms applied to the outputs of "
                             "`apply_rotary_pos_emb`",
                             "layers.0.attn.q_norm (holds the un-normalised q)")
BUGS["shared-expert-gated-off"] = ("shared expert output dropped: each MoE block's shared_experts forward "
                                   "returns zeros",
                                   "layers.1.moe.shared_out")


def apply_bug(model, bug):
    """Monkeypatch a loaded HF model. Returns (undo callbacks, state dict with call counters)."""
    layers = model.model.layers
    modeling = sys.modules[type(layers[0].self_attn).__module__]
    undo, state = [], {"calls": 0}
    moes = [l.mlp for l in layers if is_moe(l)]

    def set_fwd(mod, fn):
        mod.forward = fn
        undo.append(lambda m=mod: m.__dict__.pop("forward", None))

    if bug == "rope-interleaved":
        orig = modeling.apply_rotary_pos_emb

        def rot2(x):
            return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)

        def bug_rope(q, k, cos, sin, *rest, **kw):
            state["calls"] += 1
            ud = kw.get("unsqueeze_dim", 1)
            h = cos.shape[-1] // 2
            c = cos[..., :h].repeat_interleave(2, dim=-1).unsqueeze(ud)
            s = sin[..., :h].repeat_interleave(2, dim=-1).unsqueeze(ud)
            return q * c + rot2(q) * s, k * c + rot2(k) * s
        patch_function(modeling, model, "apply_rotary_pos_emb", orig, bug_rope, undo)
    elif bug == "router-no-bias":
        for moe in moes:
            g = moe.gate
            of = g.forward
            params = list(inspect.signature(of).parameters)
            if len(params) < 2:
                raise RuntimeError(f"router forward takes {params}; cannot pass a zero bias")

            def fwd(hidden_states, *a, _of=of, **kw):
                state["calls"] += 1
                if a:
                    a = (torch.zeros_like(a[0]),) + tuple(a[1:])
                else:
                    key = [x for x in kw if "bias" in x][0]
                    kw[key] = torch.zeros_like(kw[key])
                return _of(hidden_states, *a, **kw)
            set_fwd(g, fwd)
    elif bug == "router-no-scaling":
        for moe in moes:
            g = moe.gate
            if not hasattr(g, "router_scaling_factor"):
                raise RuntimeError("router has no router_scaling_factor attribute")
            old = g.router_scaling_factor
            g.router_scaling_factor = 1.0
            undo.append(lambda g=g, old=old: setattr(g, "router_scaling_factor", old))
            state["calls"] += 1
    elif bug == "oproj-5pct":
        op = layers[-1].self_attn.o_proj
        of = op.forward

        def fwd(x, _of=of):
            state["calls"] += 1
            return _of(x) * 1.05
        set_fwd(op, fwd)
    elif bug == "qknorm-after-rope":
        orig = modeling.apply_rotary_pos_emb
        cur = {}
        for at in (l.self_attn for l in layers):
            at._bug_qn, at._bug_kn = at.q_norm.forward, at.k_norm.forward
            set_fwd(at.q_norm, lambda x: x)
            set_fwd(at.k_norm, lambda x: x)
            h = at.register_forward_pre_hook(lambda m, i: cur.__setitem__("at", m))
            undo.append(h.remove)

        def bug_rope(q, k, *a, **kw):
            state["calls"] += 1
            qe, ke = orig(q, k, *a, **kw)
            at = cur["at"]
            return at._bug_qn(qe), at._bug_kn(ke)
        patch_function(modeling, model, "apply_rotary_pos_emb", orig, bug_rope, undo)
    elif bug == "shared-expert-gated-off":
        for moe in moes:
            def fwd(x):
                state["calls"] += 1
                return torch.zeros_like(x)
            set_fwd(moe.shared_experts, fwd)
    else:
        raise KeyError(bug)
    return undo, state


def write_bugs_readme(fixture_dir, name):
    """fixtures/<name>/bugs/README.md from bugs/bugs.json."""
    bdir = os.path.join(fixture_dir, "bugs")
    bsum = json.load(open(os.path.join(bdir, "bugs.json")))
    cfg = read_config(os.path.join(fixture_dir, "config.json"))[0]
    lines = [f"# Planted-bug dumps of {name}", "",
             "Each folder is a hyoracle dump (bf16, eager attention, eager experts; same prompt and N=5 greedy",
             "steps as `../golden/hf-bf16`) of HF transformers' `HYV3ForCausalLM` after one deliberate",
             "monkeypatch (`tools/make_hf_goldens.py`, `apply_bug`). The manifest's `hf_run.planted_bug` names it.",
             "A correct `hyoracle compare` of `../golden/hf-bf16` (or the reference) against one of these must",
             "FAIL and name the first divergence given below.", "",
             "*Expected* is where the bug first acts, in execution order of the canonical names. *Measured* is",
             "the first canonical tensor that is not bitwise identical to the stock `../golden/hf-bf16` dump",
             "(a second stock bf16 run was bitwise identical to it, so any difference is the bug's).", "",
             "| bug | patch | expected first divergence | measured (max abs diff, elements differing) | greedy tokens (stock: %s) |"
             % bsum[next(iter(bsum))].get("stock_bf16_tokens"),
             "|---|---|---|---|---|"]
    for bug, v in bsum.items():
        if "error" in v:
            lines.append(f"| `{bug}` | ERROR | | | |")
            continue
        fd = v["measured_first_divergence_vs_hf_bf16"] or {}
        meas = (f"`{fd.get('tensor')}` ({fd.get('max_abs', 0):.4g}, {fd.get('elements_differing')}/{fd.get('elements')})"
                if fd else "none (bug had no effect!)")
        lines.append(f"| `{bug}` | {v['patch']} | `{v['expected_first_divergence']}` | {meas} | {v['tokens']} |")
    lines += ["", "Notes:", "",
              "- `rope-interleaved`: position 0 has angle 0, so row 0 of `q_rope`/`k_rope` is unchanged; rows >= 1 differ.",
              "- `router-no-bias`: only the selection changes (`moe.scores`, `moe.router_logits` are untouched in the",
              "  first MoE layer); `moe.topk_ids` in the dump is still ordered by the TRUE corrected score",
              "  (score + bias), so the ids differ only where the selected set differs.",
              "- `router-no-scaling`: the selected experts of the first MoE layer are unchanged; the weights sum to 1",
              "  instead of 2.826.",
              "- `oproj-5pct`: only the last layer (layer %d) is touched; every earlier tensor is bitwise equal."
              % (cfg["num_hidden_layers"] - 1),
              "- `qknorm-after-rope`: the canonical `attn.q_norm`/`attn.k_norm` captures hold the un-normalised",
              "  q/k (the norm modules were made identity); `attn.q_rope`/`attn.k_rope` hold norm(rope(q)).",
              "- `shared-expert-gated-off`: `moe.shared_out` is all zeros, `moe.routed_out` of the first MoE layer",
              "  is unchanged.",
              "- Routing flips vs stock (tokens x layers whose expert set changed, prefill + decode steps): " +
              ", ".join(f"{b}: {v.get('routing_flips_vs_stock')}" for b, v in bsum.items()) + ".", ""]
    with open(os.path.join(bdir, "README.md"), "w") as fh:
        fh.write("\n".join(lines))


