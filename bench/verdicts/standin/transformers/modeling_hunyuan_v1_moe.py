"""Stand-in of transformers 5.x models/hunyuan_v1_moe/modeling_hunyuan_v1_moe.py (see __init__.py):
the module tree, call structure and dtypes of HunYuanMoEV1ForCausalLM as read from its source:
q/k/v projections, the module-level apply_rotary_pos_emb (looked up at call time), then
query_layernorm / key_layernorm per head; a gate whose wg is an fp32 Linear returning (logits,
renormalised top-k weights in fp32, ids); the experts module of the hy_v3 stand-in (implementation
chosen per call); an always-added shared_mlp; NTK-alpha RoPE (inv_freq / original_inv_freq
buffers); tied embeddings. torch >= 1.13. Not transformers: says nothing about its numerics."""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from .modeling_hy_v3 import (Config, HYV3DecoderLayer, HYV3Experts, HYV3ForCausalLM, HYV3MLP, HYV3Model,
                             HYV3RMSNorm, eager_attention_forward, sdpa_attention_forward)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


class HunYuanMoEV1RotaryEmbedding(nn.Module):
    """base = theta * alpha^(d / (d - 2)) for rope_type "dynamic" with an alpha (no length-dependent
    update: the stand-in runs far below max_position_embeddings)."""

    def __init__(self, cfg):
        super().__init__()
        rp, d = cfg.rope_parameters, cfg.head_dim
        base = rp["rope_theta"] * rp["alpha"] ** (d / (d - 2)) if rp.get("alpha") else rp["rope_theta"]
        inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float) / d))
        self.register_buffer("inv_freq", inv, persistent=False)
        self.register_buffer("original_inv_freq", inv.clone(), persistent=False)
        self.attention_scaling = 1.0

    @torch.no_grad()
    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class HunYuanMoEV1Attention(nn.Module):
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
        self.query_layernorm = HYV3RMSNorm(d, cfg.rms_norm_eps)
        self.key_layernorm = HYV3RMSNorm(d, cfg.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, attention_mask, past_key_values=None, **kw):
        shp = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_proj(hidden_states).view(shp).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shp).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shp).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        q, k = self.query_layernorm(q), self.key_layernorm(k)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        fn = eager_attention_forward if self.config._attn_implementation == "eager" else sdpa_attention_forward
        out, w = fn(self, q, k, v, attention_mask, scaling=self.scaling)
        return self.o_proj(out.reshape(*hidden_states.shape[:-1], -1).contiguous()), w


class HunYuanMoEV1Gate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.top_k = cfg.moe_topk
        self.wg = nn.Linear(cfg.hidden_size, cfg.num_experts, bias=False, dtype=torch.float32)

    def forward(self, hidden_states):
        h = hidden_states.reshape(-1, hidden_states.shape[-1])
        if self.wg.weight.dtype == torch.float32:
            h = h.float()
        logits = self.wg(h)
        w = F.softmax(logits, dim=1, dtype=torch.float)
        w, sel = torch.topk(w, self.top_k, dim=-1)
        w /= w.sum(dim=-1, keepdim=True)
        return logits, w.to(logits.dtype), sel


class HunYuanMoEV1Experts(HYV3Experts):
    def __init__(self, cfg):
        nn.Module.__init__(self)
        self.config, self.num_experts = cfg, cfg.num_experts
        I, H = cfg.intermediate_size, cfg.hidden_size
        self.gate_up_proj = nn.Parameter(torch.empty(cfg.num_experts, 2 * I, H))
        self.down_proj = nn.Parameter(torch.empty(cfg.num_experts, H, I))
        self.act_fn = F.silu


class HunYuanMoEV1Moe(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate = HunYuanMoEV1Gate(cfg)
        self.experts = HunYuanMoEV1Experts(cfg)
        self.shared_mlp = HYV3MLP(cfg, cfg.intermediate_size)

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        shared = self.shared_mlp(hidden_states)
        x = hidden_states.view(-1, h)
        _, w, sel = self.gate(x)
        return self.experts(x, sel, w).reshape(b, s, h) + shared


class HunYuanMoEV1DecoderLayer(HYV3DecoderLayer):
    def __init__(self, cfg, L):
        nn.Module.__init__(self)
        self.self_attn = HunYuanMoEV1Attention(cfg, L)
        self.mlp = HunYuanMoEV1Moe(cfg)
        self.input_layernorm = HYV3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = HYV3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class HunYuanMoEV1Model(HYV3Model):
    def __init__(self, cfg):
        nn.Module.__init__(self)
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([HunYuanMoEV1DecoderLayer(cfg, L) for L in range(cfg.num_hidden_layers)])
        self.norm = HYV3RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = HunYuanMoEV1RotaryEmbedding(cfg)


class HunYuanMoEV1ForCausalLM(HYV3ForCausalLM):
    def __init__(self, cfg):
        nn.Module.__init__(self)
        self.config = cfg
        self.model = HunYuanMoEV1Model(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    @classmethod
    def from_pretrained(cls, ckpt, attn_implementation="eager", output_loading_info=False, dtype=None,
                        torch_dtype=None, experts_implementation=None, **kw):
        from hytools.checkpoint import read_checkpoint
        cfg = Config(**json.load(open(os.path.join(ckpt, "config.json"))))
        if cfg.model_type != "hunyuan_v1_moe":
            raise ValueError(f"stand-in: model_type {cfg.model_type!r}")
        cfg.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        cfg._attn_implementation = attn_implementation or "eager"
        cfg._experts_implementation = experts_implementation or "grouped_mm"
        td = dtype or torch_dtype or torch.float32
        W = read_checkpoint(ckpt)
        m = cls(cfg)
        sd = {n: t for n, t in W.items() if ".mlp.experts." not in n}
        if getattr(cfg, "tie_word_embeddings", False):
            sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        for L in range(cfg.num_hidden_layers):   # HF's conversion: experts stacked, [gate; up] rows
            p = f"model.layers.{L}.mlp.experts."
            sd[p + "gate_up_proj"] = torch.stack([torch.cat([W[f"{p}{e}.gate_proj.weight"], W[f"{p}{e}.up_proj.weight"]])
                                                  for e in range(cfg.num_experts)])
            sd[p + "down_proj"] = torch.stack([W[f"{p}{e}.down_proj.weight"] for e in range(cfg.num_experts)])
        missing, extra = m.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        m.to(td)
        for L, lay in enumerate(m.model.layers):   # the gate stays fp32 whatever the model dtype
            lay.mlp.gate.wg.weight = nn.Parameter(W[f"model.layers.{L}.mlp.gate.wg.weight"].float().clone())
        info = {"missing_keys": list(missing), "unexpected_keys": list(extra), "mismatched_keys": [],
                "error_msgs": []}
        return (m, info) if output_loading_info else m
