"""An independent PyTorch implementation of the Hunyuan v1 forward pass, written from the facts of
docs/families.md Part A (Tencent's modeling_hunyuan.py for Hunyuan-Large, and transformers'
hunyuan_v1_moe / hunyuan_v1_dense), for golden dumps that do not come from either code base.

Two semantics, chosen by config.json's model_type (hytools/families.py):

    tencent (model_type "hunyuan")   cross-layer attention (use_cla, cla_share_factor), top-1 weight
                                     = the raw softmax probability p_max, top-k > 1 renormalised,
                                     shared MLP width intermediate_size x num_shared_expert and only
                                     with use_mixed_mlp_moe, q/k norm only with use_qk_norm,
                                     head_dim = hidden_size / num_attention_heads
    hf (hunyuan_v1_moe / _dense)     no cross-layer attention, top-k weights always renormalised,
                                     shared MLP width intermediate_size, q/k norm always, head_dim
                                     from the config when given

Both: RMSNorm weight * x / sqrt(mean(x^2) + eps); NeoX rotate-half RoPE with NTK-alpha base
theta * alpha^(d / (d - 2)) for rope type "dynamic" with alpha; q/k norm per head AFTER RoPE;
softmax router over fp32 (or wider) logits, top-k by descending probability, ties to the lower
expert id; SwiGLU experts down(silu(gate x) * up x). Checkpoint layouts: separate q/k/v or a fused
self_attn.qkv_proj laid out per KV group (rows [nkv, g + 2, d]: g query heads, k, v), separate
gate/up or a fused gate_and_up_proj (first half up, second half gate). A cross layer holds only
q_proj and o_proj (plus its own q/k norms) and attends with the raw k = x_s W_k^T, v = x_s W_v^T of
its source layer s for the current rows, rotated and key-normed by itself, in its own cache.

Precisions (`precision_of`): float64 and float32 run every operation in that dtype (float64: the
exact mathematical model). bfloat16 is an engine-like bf16 run: the weights as stored (bf16, the
router F32), every operation computed in float32 and its output rounded to bf16 once: each
RMSNorm, each projection (q, k, v, o, gate, up, down, lm_head), each RoPE output, the attention
context (scores and softmax in fp32), SiLU(gate) * up, each expert's output, routed_out (the
weighted sum of the rounded expert outputs, accumulated in fp32), shared_out, mlp.out and both
residual sums. The router is not rounded: logits from the F32 gate weight, softmax, top-k
weights and margins stay fp32, as in Tencent's code. RoPE's cos/sin are fp32 (from float64
angles). Any precision runs on the CPU or a CUDA device. Importing needs no torch.
"""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

from hytools.checkpoint import checkpoint_files, read_checkpoint, read_header
from hytools.families import family_of, hunyuan_layer_kinds, per_layer
from lazy_import import torch  # imported on first use


# ---- configuration --------------------------------------------------------------------------

def _rope_base(cfg: dict, semantics: str, d: int) -> float:
    """RoPE's base: theta, or theta * alpha^(d / (d - 2)) for rope type "dynamic" with an alpha.
    tencent reads rope_theta + rope_scaling {type, alpha, factor}; hf reads rope_parameters
    {rope_type, rope_theta, alpha} (or the older rope_scaling / rope_theta keys)."""
    if semantics == "tencent":
        rp, theta = cfg.get("rope_scaling"), float(cfg.get("rope_theta", 10000.0))
    else:
        rp = cfg.get("rope_parameters") or cfg.get("rope_scaling")
        theta = float((rp or {}).get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if not rp:
        return theta
    kind = rp.get("rope_type", rp.get("type", "default"))
    if kind == "dynamic" and rp.get("alpha"):
        return theta * float(rp["alpha"]) ** (d / (d - 2))
    if kind == "default":
        return theta
    raise ValueError(f"config.json: rope type {kind!r} (scaling {rp}) is not implemented: only plain RoPE "
                     "and 'dynamic' with alpha (NTK-alpha)")


def read_spec(cfg: dict) -> SimpleNamespace:
    """The sizes and semantic choices of a Hunyuan v1 config.json (a dict)."""
    fam = family_of(cfg["model_type"])
    if fam.family != "hunyuan_v1":
        raise ValueError(f"config.json: model_type {cfg['model_type']!r} is not a Hunyuan v1 model")
    tencent = fam.semantics == "tencent"
    H, nq = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    nkv = int(cfg.get("num_key_value_heads") or nq)
    if tencent:
        if H % nq:
            raise ValueError(f"config.json: hidden_size {H} is not a multiple of num_attention_heads {nq}")
        d = H // nq  # Tencent's code ignores head_dim fields
    else:
        d = int(cfg.get("head_dim") or H // nq)
    if nq % nkv:
        raise ValueError(f"config.json: num_attention_heads {nq} is not a multiple of num_key_value_heads {nkv}")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise ValueError("config.json: attention_bias / mlp_bias are not implemented")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act {cfg['hidden_act']!r} is not implemented (silu only)")
    kinds = hunyuan_layer_kinds(cfg)
    n = len(kinds)
    I = int(cfg["intermediate_size"])
    experts = [int(per_layer(cfg.get("num_experts", 1), i)) if kinds[i][0] else 0 for i in range(n)]
    topk = [int(per_layer(cfg.get("moe_topk", 1), i)) if kinds[i][0] else 0 for i in range(n)]
    if tencent:
        shared = [I * int(per_layer(cfg.get("num_shared_expert", 1), i)) if cfg.get("use_mixed_mlp_moe") else 0
                  for i in range(n)]
    else:
        shared = [I] * n
    for i in range(n):
        if kinds[i][0] and not 1 <= topk[i] <= experts[i]:
            raise ValueError(f"config.json: layer {i}: moe_topk {topk[i]} with {experts[i]} experts")
    if cfg.get("moe_drop_tokens"):
        raise ValueError("config.json: moe_drop_tokens (capacity-based token dropping) is not implemented")
    return SimpleNamespace(
        model_type=cfg["model_type"], semantics=fam.semantics, hidden=H, heads=nq, kv_heads=nkv, head_dim=d,
        vocab=int(cfg["vocab_size"]), layers=n, kinds=kinds, intermediate=I, experts=experts, topk=topk,
        shared=shared, eps=float(cfg.get("rms_norm_eps", 1e-5)), rope_base=_rope_base(cfg, fam.semantics, d),
        qk_norm=bool(cfg.get("use_qk_norm", False)) if tencent else True,
        renorm_top1=not tencent, tie=bool(cfg.get("tie_word_embeddings", False)),
        cla_factor=int(cfg.get("cla_share_factor", 1)) if tencent and cfg.get("use_cla") else 1)


# ---- precision ----------------------------------------------------------------------------------

PRECISIONS = ("float64", "float32", "bfloat16")


def _identity(t):
    return t


def _to_bf16(t):
    """Round a float32 tensor to bf16 (round to nearest even) and keep it as float32."""
    return t.to(torch.bfloat16).to(torch.float32)


def precision_of(dtype: str):
    """(compute dtype, rounding of each op's output) of a precision name (PRECISIONS)."""
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype {dtype!r}: one of {', '.join(PRECISIONS)}")
    if dtype == "bfloat16":
        return torch.float32, _to_bf16
    return getattr(torch, dtype), _identity


# ---- weights ----------------------------------------------------------------------------------

def load_weights(ckpt_dir: str, spec, dtype, device="cpu") -> SimpleNamespace:
    """Every weight of the checkpoint in `dtype` on `device`, fused layouts split. A missing
    tensor, a wrong shape, or a tensor the model does not use (a k_proj in a cross layer, both a
    fused and a separate copy, an lm_head.weight next to tied embeddings) is an error naming it.
    W.rnd is the identity; the caller sets the bf16 rounding (precision_of)."""
    raw = read_checkpoint(ckpt_dir)
    used = set()
    H, d, nq, nkv = spec.hidden, spec.head_dim, spec.heads, spec.kv_heads
    g = nq // nkv

    def take(name, shape):
        if name not in raw:
            raise ValueError(f"{ckpt_dir}: missing tensor {name}")
        t = raw[name]
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{ckpt_dir}: {name} has shape {list(t.shape)}, expected {list(shape)}")
        used.add(name)
        return t.to(device=device, dtype=dtype)

    def swiglu(p, width):
        if p + "gate_and_up_proj.weight" in raw:  # [up; gate]
            gu = take(p + "gate_and_up_proj.weight", (2 * width, H))
            up, gate = gu[:width], gu[width:]
        else:
            gate, up = take(p + "gate_proj.weight", (width, H)), take(p + "up_proj.weight", (width, H))
        return SimpleNamespace(gate=gate, up=up, down=take(p + "down_proj.weight", (H, width)))

    layers = []
    for L, (is_moe, owns_kv) in enumerate(spec.kinds):
        p = f"model.layers.{L}."
        a = p + "self_attn."
        lw = SimpleNamespace(in_norm=take(p + "input_layernorm.weight", (H,)),
                             post_norm=take(p + "post_attention_layernorm.weight", (H,)),
                             o=take(a + "o_proj.weight", (H, nq * d)), k=None, v=None)
        if owns_kv and a + "qkv_proj.weight" in raw:  # per KV group: g query heads, k, v
            w = take(a + "qkv_proj.weight", (nkv * (g + 2) * d, H)).reshape(nkv, g + 2, d, H)
            lw.q = w[:, :g].reshape(nq * d, H)
            lw.k, lw.v = w[:, g].reshape(nkv * d, H), w[:, g + 1].reshape(nkv * d, H)
        else:
            lw.q = take(a + "q_proj.weight", (nq * d, H))
            if owns_kv:
                lw.k, lw.v = take(a + "k_proj.weight", (nkv * d, H)), take(a + "v_proj.weight", (nkv * d, H))
        if spec.qk_norm:
            lw.q_norm, lw.k_norm = take(a + "query_layernorm.weight", (d,)), take(a + "key_layernorm.weight", (d,))
        if is_moe:
            E = spec.experts[L]
            lw.wg = take(p + "mlp.gate.wg.weight", (E, H))
            lw.experts = [swiglu(f"{p}mlp.experts.{e}.", spec.intermediate) for e in range(E)]
            lw.shared = swiglu(p + "mlp.shared_mlp.", spec.shared[L]) if spec.shared[L] else None
        else:
            lw.mlp = swiglu(p + "mlp.", spec.intermediate)
        layers.append(lw)
    W = SimpleNamespace(embed=take("model.embed_tokens.weight", (spec.vocab, H)),
                        norm=take("model.norm.weight", (H,)), layers=layers, rnd=_identity)
    W.lm_head = W.embed if spec.tie else take("lm_head.weight", (spec.vocab, H))
    left = sorted(set(raw) - used)
    if left:
        raise ValueError(f"{ckpt_dir}: tensors the model does not use: {left[:8]}{' ...' if len(left) > 8 else ''}")
    return W


def checkpoint_tensor_names(ckpt_dir: str) -> list:
    """The tensor names of a checkpoint's safetensors files, from their headers alone."""
    names = []
    for fn in checkpoint_files(ckpt_dir):
        with open(os.path.join(ckpt_dir, fn), "rb") as f:
            header, _ = read_header(f)
        names += [n for n in header if n != "__metadata__"]
    return names


def layouts(ckpt_dir: str) -> dict:
    """Which fused layouts a checkpoint uses (for the manifest): counts of fused tensors by kind."""
    names = checkpoint_tensor_names(ckpt_dir)   # headers only: a full-width checkpoint is GBs
    return {"qkv_proj": sum(n.endswith(".qkv_proj.weight") for n in names),
            "gate_and_up_proj": sum(n.endswith(".gate_and_up_proj.weight") for n in names)}


# ---- the math ---------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def swiglu_mlp(x, m, r=_identity):
    """down(silu(gate x) * up x); r rounds each projection and the product (bf16 runs)."""
    return r(r(torch.nn.functional.silu(r(x @ m.gate.T)) * r(x @ m.up.T)) @ m.down.T)


def rope_tables(spec, p0: int, T: int, dtype, device="cpu"):
    """cos, sin [T, d] of positions p0 .. p0 + T - 1: angle p * base^(-2i/d), computed in float64,
    duplicated over the two halves (NeoX rotate-half)."""
    d = spec.head_dim
    inv = torch.tensor(spec.rope_base, dtype=torch.float64) ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(p0, p0 + T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(device=device, dtype=dtype), ang.sin().to(device=device, dtype=dtype)


def rope(x, cos, sin):
    """x [T, n, d] rotated: x cos + rotate_half(x) sin, rotate_half(x) = [-x2, x1]."""
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def attention(q, K, V, p0: int):
    """Causal GQA attention of the T new rows q [T, nq, d] (positions p0 ..) over the cache
    K, V [S, nkv, d] (positions 0 .. S - 1): softmax(q k^T / sqrt(d)) v, heads concatenated."""
    T, nq, d = q.shape
    g = nq // K.shape[1]
    Kx, Vx = K.repeat_interleave(g, dim=1), V.repeat_interleave(g, dim=1)
    s = torch.einsum("thd,shd->hts", q, Kx) / math.sqrt(d)
    S = K.shape[0]
    future = torch.arange(S, device=q.device)[None, :] > (p0 + torch.arange(T, device=q.device))[:, None]
    s = s.masked_fill(future[None], float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("hts,shd->thd", p, Vx).reshape(T, nq * d)


def route(logits, k: int, renorm_top1: bool):
    """Softmax router: (probs [T, E], ids [T, k] by descending probability with ties to the lower
    id, weights [T, k] in ids order, margin [T] = p_k - p_(k+1) (+inf when k == E)). The weights
    are the top-k probabilities renormalised to sum 1, except top-1 without renorm_top1 (Tencent),
    where the weight is the raw probability."""
    probs = torch.softmax(logits, dim=-1)
    vals, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    ids, top = order[:, :k], vals[:, :k]
    if k == 1 and not renorm_top1:
        weights = top
    else:
        weights = top / top.sum(-1, keepdim=True).clamp(min=torch.finfo(top.dtype).eps)
    E = probs.shape[-1]
    margin = vals[:, k - 1] - vals[:, k] if k < E else torch.full_like(vals[:, 0], float("inf"))
    return probs, ids, weights, margin


def cross_layer_kv(k, v, k_rope, k_norm):
    """What a layer that owns K/V hands the cross layers after it: its raw projections k, v of the
    current rows (Tencent's code). A module-level function so that a test or a planted bug can
    replace it (bench/verdicts)."""
    return k, v


def forward(spec, W, ids, p0: int, cache: list, put):
    """One forward over the new tokens `ids` at positions p0 .. p0 + T - 1, appending to each
    layer's cache (cache[L] = (K, V) or None) its key-normed, rotated keys and its values. put(name,
    tensor) receives every canonical tensor. Returns the logits [T, V]."""
    dt, dev, r = W.embed.dtype, W.embed.device, W.rnd
    T, nq, nkv, d = len(ids), spec.heads, spec.kv_heads, spec.head_dim
    x = W.embed[torch.tensor(ids, dtype=torch.long, device=dev)]
    put("embed", x)
    cos, sin = rope_tables(spec, p0, T, dt, dev)
    src = None  # raw (k, v) rows of the current step from the most recent layer that owns K/V
    for L, lw in enumerate(W.layers):
        is_moe, owns_kv = spec.kinds[L]

        def rec(name, t, _L=L):
            put(f"layers.{_L}.{name}", t)
        h = r(rms_norm(x, lw.in_norm, spec.eps))
        rec("input_norm", h)
        q = r(h @ lw.q.T).reshape(T, nq, d)
        rec("attn.q", q)
        if owns_kv:
            raw = (r(h @ lw.k.T).reshape(T, nkv, d), r(h @ lw.v.T).reshape(T, nkv, d))
            rec("attn.k", raw[0])
            rec("attn.v", raw[1])
            src = raw
        k, v = src
        q_rope, k_rope = r(rope(q, cos, sin)), r(rope(k, cos, sin))
        rec("attn.q_rope", q_rope)
        rec("attn.k_rope", k_rope)
        q_n = r(rms_norm(q_rope, lw.q_norm, spec.eps)) if spec.qk_norm else q_rope
        k_n = r(rms_norm(k_rope, lw.k_norm, spec.eps)) if spec.qk_norm else k_rope
        rec("attn.q_norm", q_n)
        rec("attn.k_norm", k_n)
        if owns_kv:
            src = cross_layer_kv(raw[0], raw[1], k_rope, k_n)
        if cache[L] is not None:
            k_n, v = torch.cat([cache[L][0], k_n]), torch.cat([cache[L][1], v])
        cache[L] = (k_n, v)
        ctx = r(attention(q_n, k_n, v, p0))
        rec("attn.context", ctx)
        a = r(ctx @ lw.o.T)
        rec("attn.out", a)
        res = r(x + a)
        rec("resid_mid", res)
        hn = r(rms_norm(res, lw.post_norm, spec.eps))
        rec("post_norm", hn)
        if is_moe:
            m = moe(spec, lw, hn, L, rec, r)
        else:
            m = swiglu_mlp(hn, lw.mlp, r)
        rec("mlp.out", m)
        x = r(res + m)
        rec("out", x)
    f = r(rms_norm(x, W.norm, spec.eps))
    put("final_norm", f)
    logits = r(f @ W.lm_head.T)
    put("logits", logits)
    return logits


def moe(spec, lw, x, L: int, rec, r=_identity):
    """Routed experts + the shared MLP of one MoE layer; records the router and both parts. r
    rounds each expert's output, the routed sum, the shared MLP and their sum (not the router)."""
    logits = x @ lw.wg.T
    probs, ids, weights, margin = route(logits, spec.topk[L], spec.renorm_top1)
    rec("moe.router_logits", logits)
    rec("moe.scores", probs)
    rec("moe.topk_ids", ids.to(torch.int32))
    rec("moe.topk_weights", weights)
    rec("moe.topk_margin", margin)
    routed = torch.zeros_like(x)
    for j in range(ids.shape[1]):
        for e in torch.unique(ids[:, j]).tolist():
            rows = (ids[:, j] == e).nonzero(as_tuple=True)[0]
            routed[rows] += weights[rows, j, None] * swiglu_mlp(x[rows], lw.experts[e], r)
    routed = r(routed)
    rec("moe.routed_out", routed)
    shared = swiglu_mlp(x, lw.shared, r) if lw.shared is not None else torch.zeros_like(x)
    rec("moe.shared_out", shared)
    return r(routed + shared)
