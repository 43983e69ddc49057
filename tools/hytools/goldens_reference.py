"""The fixtures' own plain float64 reference forward (docs/model.md §4, exact mode), independent of
transformers and of hyoracle's C++ reference: it picks the seeds at build time and checks HF's
float64 dump."""

from __future__ import annotations

from collections import OrderedDict

from hytools.hf_recorder import topk_with_tiebreak
from hytools.hf_run import logit_margin
from lazy_import import torch  # imported on first use


def ref_forward(W, cfg, ids):
    """Exact float64 forward over the whole sequence `ids` (positions 0..T-1). Returns an
    OrderedDict of canonical tensors (DUMP_FORMAT names) plus `_router.L` entries with the
    full sorted corrected scores and `_nobias.L` (selection without the bias)."""
    W = {k: v.double() for k, v in W.items()}
    H, nq, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps = cfg["head_dim"], cfg["rms_norm_eps"]
    E, k, sf = cfg["num_experts"], cfg["num_experts_per_tok"], cfg["router_scaling_factor"]
    theta = cfg["rope_parameters"]["rope_theta"]
    T = len(ids)
    out = OrderedDict()

    def rms(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def mlp(x, p):
        g = x @ W[p + "gate_proj.weight"].T
        u = x @ W[p + "up_proj.weight"].T
        return (g * torch.sigmoid(g) * u) @ W[p + "down_proj.weight"].T

    i2 = torch.arange(0, d, 2, dtype=torch.float64)
    inv = torch.pow(torch.tensor(theta, dtype=torch.float64), -(i2 / d))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]

    def rope(x):  # [T, n, d], rotate-half
        h = d // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    out["embed"] = x
    mask = torch.ones(T, T).tril().bool()
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        c = f"layers.{L}."
        a = rms(x, W[p + "input_layernorm.weight"])
        out[c + "input_norm"] = a
        q = (a @ W[p + "self_attn.q_proj.weight"].T).reshape(T, nq, d)
        kk = (a @ W[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, d)
        v = (a @ W[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, d)
        out[c + "attn.q"], out[c + "attn.k"], out[c + "attn.v"] = q, kk, v
        qn = rms(q, W[p + "self_attn.q_norm.weight"])
        kn = rms(kk, W[p + "self_attn.k_norm.weight"])
        out[c + "attn.q_norm"], out[c + "attn.k_norm"] = qn, kn
        qr, kr = rope(qn), rope(kn)
        out[c + "attn.q_rope"], out[c + "attn.k_rope"] = qr, kr
        g = nq // nkv
        ctx = torch.empty(T, nq, d, dtype=torch.float64)
        for n in range(nq):
            m = n // g
            s = (qr[:, n, :] @ kr[:, m, :].T) * (d ** -0.5)
            s = s.masked_fill(~mask, float("-inf"))
            pr = torch.softmax(s, -1)
            ctx[:, n, :] = pr @ v[:, m, :]
        ctx = ctx.reshape(T, nq * d)
        out[c + "attn.context"] = ctx
        ao = ctx @ W[p + "self_attn.o_proj.weight"].T
        out[c + "attn.out"] = ao
        h = x + ao
        out[c + "resid_mid"] = h
        f = rms(h, W[p + "post_attention_layernorm.weight"])
        out[c + "post_norm"] = f
        if L == 0:
            y = mlp(f, p + "mlp.")
        else:
            logits = f @ W[p + "mlp.router.gate.weight"].T
            sc = torch.sigmoid(logits)
            bias = W[p + "mlp.expert_bias"]
            corr = sc + bias
            ids_k, sorted_c = topk_with_tiebreak(corr, k)
            nob, _ = topk_with_tiebreak(sc, k)
            w = sc.gather(1, ids_k)
            w = w / (w.sum(-1, keepdim=True) + 1e-20) * sf
            routed = torch.zeros(T, H, dtype=torch.float64)
            for t in range(T):
                for j in range(k):
                    e = int(ids_k[t, j])
                    routed[t] += w[t, j] * mlp(f[t:t + 1], p + f"mlp.experts.{e}.")[0]
            shared = mlp(f, p + "mlp.shared_mlp.")
            out[c + "moe.router_logits"] = logits
            out[c + "moe.scores"] = sc
            out[c + "moe.topk_ids"] = ids_k.to(torch.int32)
            out[c + "moe.topk_weights"] = w
            out[c + "moe.routed_out"] = routed
            out[c + "moe.shared_out"] = shared
            out[f"_router.{L}"] = sorted_c
            out[f"_nobias.{L}"] = nob
            y = routed + shared
        out[c + "mlp.out"] = y
        x = h + y
        out[c + "out"] = x
    hf = rms(x, W["model.norm.weight"])
    out["final_norm"] = hf
    out["logits"] = hf @ W["lm_head.weight"].T
    return out


def ref_generate(W, cfg, prompt, n):
    """Greedy generation by full recomputation. Returns (prefill dict, tokens, rows, steps) where
    steps[s] is the last-row slice of the canonical tensors of decode step s (1..n-1)."""
    full = ref_forward(W, cfg, prompt)
    toks, rows, steps = [], [], {}
    seq = list(prompt)
    cur = full
    for s in range(n):
        row = cur["logits"][-1]
        rows.append(row)
        toks.append(int(torch.argmax(row)))
        if s == n - 1:
            break
        seq.append(toks[-1])
        cur = ref_forward(W, cfg, seq)
        steps[s + 1] = OrderedDict((kk, v[-1:]) for kk, v in cur.items())
    return full, toks, rows, steps


def ref_margins(cfg, full, rows, steps):
    k = cfg["num_experts_per_tok"]
    res = {"router": {}, "logit": [], "bias_changes_selection": 0}
    for L in range(1, cfg["num_hidden_layers"]):
        ms = []
        for src in [full] + [steps[s] for s in sorted(steps)]:
            sc = src[f"_router.{L}"]
            ms += (sc[:, k - 1] - sc[:, k]).tolist()
            sel = src[f"layers.{L}.moe.topk_ids"].long()
            nob = src[f"_nobias.{L}"]
            res["bias_changes_selection"] += sum(
                set(a.tolist()) != set(b.tolist()) for a, b in zip(sel, nob))
        res["router"][L] = ms
    for r in rows:
        res["logit"].append(logit_margin(r))
    res["min_router"] = min(min(v) for v in res["router"].values())
    res["min_logit"] = min(res["logit"])
    return res


