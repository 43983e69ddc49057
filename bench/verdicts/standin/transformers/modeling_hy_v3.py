"""Stand-in of transformers' models/hy_v3/modeling_hy_v3.py (see __init__.py). torch >= 1.13."""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "tools"))


class Config(SimpleNamespace):
    pass


class HYV3RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.variance_epsilon = eps

    def forward(self, x):
        dt = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dt)


class HYV3RotaryEmbedding(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.head_dim
        inv = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float) / d))
        self.register_buffer("inv_freq", inv, persistent=False)
        self.attention_scaling = 1.0

    @torch.no_grad()
    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class HYV3MLP(nn.Module):
    def __init__(self, cfg, inter):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, inter, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, inter, bias=False)
        self.down_proj = nn.Linear(inter, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(x, n):
    b, h, s, d = x.shape
    return x if n == 1 else x[:, :, None].expand(b, h, n, s, d).reshape(b, h * n, s, d)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kw):
    k = repeat_kv(key, module.num_key_value_groups)
    v = repeat_kv(value, module.num_key_value_groups)
    w = torch.matmul(query, k.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask
    w = F.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(w, v).transpose(1, 2).contiguous(), w


def sdpa_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kw):
    """The fast path's stand-in: fp32 math, not eager_attention_forward (so its wrapper never fires)."""
    k = repeat_kv(key, module.num_key_value_groups).float()
    v = repeat_kv(value, module.num_key_value_groups).float()
    w = torch.matmul(query.float(), k.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask.float()
    out = torch.matmul(torch.softmax(w, -1), v).to(query.dtype)
    return out.transpose(1, 2).contiguous(), None


class HYV3Attention(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.config, self.layer_idx, self.head_dim = cfg, layer_idx, cfg.head_dim
        self.num_key_value_groups = cfg.num_attention_heads // cfg.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        H, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(H, cfg.num_attention_heads * d, bias=False)
        self.k_proj = nn.Linear(H, cfg.num_key_value_heads * d, bias=False)
        self.v_proj = nn.Linear(H, cfg.num_key_value_heads * d, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * d, H, bias=False)
        self.q_norm = HYV3RMSNorm(d, cfg.rms_norm_eps)
        self.k_norm = HYV3RMSNorm(d, cfg.rms_norm_eps)
        self.rotary_fn = apply_rotary_pos_emb   # use_kernelized_func keeps a copy on the instance

    def forward(self, hidden_states, position_embeddings, attention_mask, past_key_values=None, **kw):
        shp = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_norm(self.q_proj(hidden_states).view(shp).transpose(1, 2))
        k = self.k_norm(self.k_proj(hidden_states).view(shp).transpose(1, 2))
        v = self.v_proj(hidden_states).view(shp).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        fn = eager_attention_forward if self.config._attn_implementation == "eager" else sdpa_attention_forward
        out, w = fn(self, q, k, v, attention_mask, scaling=self.scaling)
        return self.o_proj(out.reshape(*hidden_states.shape[:-1], -1).contiguous()), w


class HYV3TopKRouter(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.top_k, self.hidden_dim = cfg.num_experts_per_tok, cfg.hidden_size
        self.weight = nn.Parameter(torch.empty(cfg.num_experts, cfg.hidden_size))
        self.router_scaling_factor = cfg.router_scaling_factor

    def forward(self, hidden_states, e_score_correction_bias):
        h = hidden_states.reshape(-1, self.hidden_dim)
        logits = F.linear(h.float(), self.weight.float())
        s = torch.sigmoid(logits)
        _, idx = torch.topk(s + e_score_correction_bias, self.top_k, dim=-1, sorted=False)
        w = s.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20) * self.router_scaling_factor
        return logits, w, idx


class HYV3Experts(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.num_experts = cfg.num_experts
        I, H = cfg.moe_intermediate_size, cfg.hidden_size
        self.gate_up_proj = nn.Parameter(torch.empty(cfg.num_experts, 2 * I, H))
        self.down_proj = nn.Parameter(torch.empty(cfg.num_experts, H, I))
        self.act_fn = F.silu

    def forward(self, hidden_states, top_k_index, top_k_weights):
        if self.config._experts_implementation == "eager":
            return self._eager(hidden_states, top_k_index, top_k_weights)
        if self.config._experts_implementation not in ("grouped_mm", "batched_mm"):
            raise ValueError(self.config._experts_implementation)
        if self.config._experts_implementation == "grouped_mm" and (self.down_proj.shape[-1] * 2) % 16:
            raise RuntimeError("stand-in grouped_mm: strides must be 16-byte aligned")
        T, k = top_k_index.shape
        ids = top_k_index.reshape(-1)
        x = hidden_states[torch.arange(T).repeat_interleave(k)]
        gu = torch.bmm(self.gate_up_proj[ids], x.unsqueeze(-1)).squeeze(-1)
        g, u = gu.chunk(2, dim=-1)
        y = torch.bmm(self.down_proj[ids], (self.act_fn(g) * u).unsqueeze(-1)).squeeze(-1)
        y = y * top_k_weights.reshape(-1, 1)
        out = torch.zeros_like(hidden_states)
        out.index_add_(0, torch.arange(T).repeat_interleave(k), y.to(out.dtype))
        return out

    def _eager(self, hidden_states, top_k_index, top_k_weights):
        out = torch.zeros_like(hidden_states)
        mask = F.one_hot(top_k_index, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            pos, tok = torch.where(mask[e])
            if tok.numel() == 0:
                continue
            g, u = F.linear(hidden_states[tok], self.gate_up_proj[e]).chunk(2, dim=-1)
            y = F.linear(self.act_fn(g) * u, self.down_proj[e]) * top_k_weights[tok, pos, None]
            out.index_add_(0, tok, y.to(out.dtype))
        return out


class HYV3MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate = HYV3TopKRouter(cfg)
        self.experts = HYV3Experts(cfg)
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.num_experts))
        self.shared_experts = HYV3MLP(cfg, cfg.moe_intermediate_size * cfg.num_shared_experts)

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        _, w, idx = self.gate(x, self.e_score_correction_bias)
        return (self.experts(x, idx, w) + self.shared_experts(x)).reshape(b, s, h)


class HYV3DecoderLayer(nn.Module):
    def __init__(self, cfg, L):
        super().__init__()
        self.self_attn = HYV3Attention(cfg, L)
        self.mlp = HYV3MoE(cfg) if L >= cfg.first_k_dense_replace else HYV3MLP(cfg, cfg.intermediate_size)
        self.input_layernorm = HYV3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = HYV3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, h, attention_mask=None, position_ids=None, past_key_values=None, position_embeddings=None, **kw):
        r = h
        a, _ = self.self_attn(hidden_states=self.input_layernorm(h), attention_mask=attention_mask,
                              past_key_values=past_key_values, position_embeddings=position_embeddings)
        h = r + a
        return h + self.mlp(self.post_attention_layernorm(h))


class _Layer:
    def __init__(self):
        self.keys = self.values = None


class DynamicCache:
    def __init__(self, n):
        self.layers = [_Layer() for _ in range(n)]

    def update(self, k, v, i):
        lay = self.layers[i]
        lay.keys = k if lay.keys is None else torch.cat([lay.keys, k], dim=-2)
        lay.values = v if lay.values is None else torch.cat([lay.values, v], dim=-2)
        return lay.keys, lay.values

    def get_seq_length(self, i=0):
        k = self.layers[i].keys
        return 0 if k is None else k.shape[-2]

    def crop(self, n):
        for lay in self.layers:
            if lay.keys is not None and lay.keys.shape[-2] > n:
                lay.keys, lay.values = lay.keys[..., :n, :], lay.values[..., :n, :]


class HYV3Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([HYV3DecoderLayer(cfg, L) for L in range(cfg.num_hidden_layers)])
        self.norm = HYV3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = HYV3RotaryEmbedding(cfg)

    def forward(self, input_ids, past_key_values=None, use_cache=None, position_ids=None, **kw):
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(len(self.layers))
        h = self.embed_tokens(input_ids)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        q = h.shape[1]
        if position_ids is None:
            position_ids = (torch.arange(q) + past).unsqueeze(0)
        qpos = torch.arange(q) + past                   # cache positions (the mask's)
        kv = torch.arange(past + q)
        mask = torch.zeros(q, past + q)
        mask[kv[None, :] > qpos[:, None]] = float("-inf")
        mask = mask.to(h.dtype)[None, None]
        pe = self.rotary_emb(h, position_ids)
        for lay in self.layers:
            h = lay(h, attention_mask=mask, position_ids=position_ids, past_key_values=past_key_values,
                    position_embeddings=pe)
        return self.norm(h), past_key_values


class HYV3ForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.model = HYV3Model(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def forward(self, input_ids=None, past_key_values=None, use_cache=None, position_ids=None, **kw):
        h, past = self.model(input_ids, past_key_values=past_key_values, use_cache=use_cache, position_ids=position_ids)
        return SimpleNamespace(logits=self.lm_head(h), past_key_values=past)

    def set_experts_implementation(self, name):
        self.config._experts_implementation = name

    @classmethod
    def from_pretrained(cls, ckpt, attn_implementation="eager", output_loading_info=False, dtype=None,
                        torch_dtype=None, experts_implementation=None, **kw):
        from dump_io import read_safetensors
        c = json.load(open(os.path.join(ckpt, "config.json")))
        cfg = Config(**c)
        cfg._attn_implementation = attn_implementation or "eager"
        cfg._experts_implementation = experts_implementation or "grouped_mm"
        td = dtype or torch_dtype or torch.float32
        idx = os.path.join(ckpt, "model.safetensors.index.json")
        files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
        W = {}
        for f in files:
            W.update(read_safetensors(os.path.join(ckpt, f)))
        m = cls(cfg)
        sd = {}
        unexpected = []
        for n, t in W.items():
            parts = n.split(".")
            if n.startswith("model.layers.") and int(parts[2]) >= cfg.num_hidden_layers:
                unexpected.append(n)
                continue
            n2 = n.replace("mlp.router.gate.", "mlp.gate.").replace("mlp.expert_bias", "mlp.e_score_correction_bias") \
                  .replace("mlp.shared_mlp.", "mlp.shared_experts.")
            if ".mlp.experts." in n2:
                continue
            sd[n2] = t
        E, I = cfg.num_experts, cfg.moe_intermediate_size
        for L in range(cfg.first_k_dense_replace, cfg.num_hidden_layers):
            p = f"model.layers.{L}.mlp.experts."
            sd[p + "gate_up_proj"] = torch.stack([torch.cat([W[f"{p}{e}.gate_proj.weight"], W[f"{p}{e}.up_proj.weight"]])
                                                  for e in range(E)])
            sd[p + "down_proj"] = torch.stack([W[f"{p}{e}.down_proj.weight"] for e in range(E)])
            assert sd[p + "gate_up_proj"].shape == (E, 2 * I, cfg.hidden_size)
        missing, extra = m.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        m.to(td)
        for L in range(cfg.first_k_dense_replace, cfg.num_hidden_layers):   # _keep_in_fp32_modules_strict
            mlp = m.model.layers[L].mlp
            mlp.e_score_correction_bias = W[f"model.layers.{L}.mlp.expert_bias"].float().clone()
        info = {"missing_keys": list(missing), "unexpected_keys": unexpected + list(extra), "mismatched_keys": [],
                "error_msgs": []}
        return (m, info) if output_loading_info else m
