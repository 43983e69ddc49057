"""The tiny random hy_v3 fixtures of make_hf_goldens.py: their sizes and prompts, config.json,
the seeded weights in the original HF on-disk layout (docs/model.md §3.1) and how they are split
into shards."""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict

from dump_io import write_safetensors
from lazy_import import torch  # imported on first use

# A seed is accepted when every router margin (k-th minus (k+1)-th corrected score) and every
# greedy logit margin (top-1 minus top-2) of its float64 forward is at least MIN_MARGIN.
MIN_MARGIN = 1e-3
GENERATE_N = 5  # greedy tokens of every golden: the prefill's and GENERATE_N - 1 decode steps'

# The fixtures; every size differs between the two.
FIXTURES = OrderedDict()
FIXTURES["tiny-hy3"] = dict(
    hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
    num_hidden_layers=3, intermediate_size=96, moe_intermediate_size=24, num_experts=8,
    num_experts_per_tok=3, num_shared_experts=1, vocab_size=256,
    special=dict(bos_token_id=1, eos_token_id=2, pad_token_id=0, eod_token_id=6, sep_token_id=7),
    extra_cfg=dict(num_nextn_predict_layers=1, output_router_logits=True, use_grouped_mm=False,
                   transformers_version="5.6.0"),
    shards=None,            # single model.safetensors
    mtp_layer=True,         # extra model.layers.3.* tensors, to be ignored by loaders
    prompt=[17, 200, 3, 99, 254, 42, 128],
    seeds=list(range(1001, 1100)),
)
FIXTURES["tiny-mt2"] = dict(
    hidden_size=48, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
    num_hidden_layers=4, intermediate_size=80, moe_intermediate_size=20, num_experts=12,
    num_experts_per_tok=4, num_shared_experts=2, vocab_size=320,
    special=dict(bos_token_id=1, eos_token_id=2, pad_token_id=0),
    extra_cfg=dict(),
    shards=3,
    mtp_layer=False,
    prompt=[5, 311, 77, 160, 9, 289, 33, 250, 101],
    seeds=list(range(2001, 2100)),
)


def make_config(name):
    f = FIXTURES[name]
    c = OrderedDict()
    c["architectures"] = ["HYV3ForCausalLM"]
    c["model_type"] = "hy_v3"
    c["dtype"] = "bfloat16"
    c["vocab_size"] = f["vocab_size"]
    c["hidden_size"] = f["hidden_size"]
    c["intermediate_size"] = f["intermediate_size"]
    c["moe_intermediate_size"] = f["moe_intermediate_size"]
    c["expert_hidden_dim"] = f["moe_intermediate_size"]
    c["num_hidden_layers"] = f["num_hidden_layers"]
    c["num_attention_heads"] = f["num_attention_heads"]
    c["num_key_value_heads"] = f["num_key_value_heads"]
    c["head_dim"] = f["head_dim"]
    c["hidden_act"] = "silu"
    c["max_position_embeddings"] = 262144
    c["rms_norm_eps"] = 1e-05
    c["rope_parameters"] = {"rope_theta": 11158840.0, "rope_type": "default"}
    c["qk_norm"] = True
    c["attention_bias"] = False
    c["num_experts"] = f["num_experts"]
    c["num_experts_per_tok"] = f["num_experts_per_tok"]
    c["num_shared_experts"] = f["num_shared_experts"]
    c["first_k_dense_replace"] = 1
    c["moe_router_use_sigmoid"] = True
    c["moe_router_enable_expert_bias"] = True
    c["route_norm"] = True
    c["router_scaling_factor"] = 2.826
    c["enable_moe_fp32_combine"] = False
    c["enable_lm_head_fp32"] = True
    c["enable_attention_fp32_softmax"] = False
    c["initializer_range"] = 0.006
    c["tie_word_embeddings"] = False
    c["use_cache"] = True
    for k, v in f["special"].items():
        c[k] = v
    for k, v in f["extra_cfg"].items():
        c[k] = v
    return c



def _bf16(t):
    return t.to(torch.bfloat16)


def make_weights(name, seed):
    """On-disk tensors (docs/model.md §3.1 names), drawn from torch.Generator(seed) in float64, scaled
    to keep activations O(1), rounded to bf16 (expert_bias: F32, not bf16-representable)."""
    f = FIXTURES[name]
    g = torch.Generator().manual_seed(seed)
    H, nq, nkv, d = f["hidden_size"], f["num_attention_heads"], f["num_key_value_heads"], f["head_dim"]
    Id, Ie, E, V = f["intermediate_size"], f["moe_intermediate_size"], f["num_experts"], f["vocab_size"]
    Is = Ie * f["num_shared_experts"]

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def lin(out_f, in_f, gain=1.0):
        return _bf16(randn(out_f, in_f) * (gain / math.sqrt(in_f)))

    def norm(n):
        return _bf16(1.0 + 0.1 * randn(n))

    W = OrderedDict()
    W["model.embed_tokens.weight"] = _bf16(randn(V, H))

    def layer(L, moe):
        p = f"model.layers.{L}."
        W[p + "input_layernorm.weight"] = norm(H)
        W[p + "self_attn.q_proj.weight"] = lin(nq * d, H)
        W[p + "self_attn.k_proj.weight"] = lin(nkv * d, H)
        W[p + "self_attn.v_proj.weight"] = lin(nkv * d, H)
        W[p + "self_attn.o_proj.weight"] = lin(H, nq * d)
        W[p + "self_attn.q_norm.weight"] = norm(d)
        W[p + "self_attn.k_norm.weight"] = norm(d)
        W[p + "post_attention_layernorm.weight"] = norm(H)
        if not moe:
            W[p + "mlp.gate_proj.weight"] = lin(Id, H, 1.5)
            W[p + "mlp.up_proj.weight"] = lin(Id, H, 1.5)
            W[p + "mlp.down_proj.weight"] = lin(H, Id)
            return
        W[p + "mlp.router.gate.weight"] = lin(E, H, 3.0)
        b = (0.05 * randn(E)).to(torch.float32)
        for i in range(E):  # make every value non-representable in bf16
            while float(b[i].to(torch.bfloat16).float()) == float(b[i]):
                b[i] = torch.nextafter(b[i], torch.tensor(1.0))
        W[p + "mlp.expert_bias"] = b
        for e in range(E):
            W[p + f"mlp.experts.{e}.gate_proj.weight"] = lin(Ie, H, 1.5)
            W[p + f"mlp.experts.{e}.up_proj.weight"] = lin(Ie, H, 1.5)
            W[p + f"mlp.experts.{e}.down_proj.weight"] = lin(H, Ie)
        W[p + "mlp.shared_mlp.gate_proj.weight"] = lin(Is, H, 1.5)
        W[p + "mlp.shared_mlp.up_proj.weight"] = lin(Is, H, 1.5)
        W[p + "mlp.shared_mlp.down_proj.weight"] = lin(H, Is)

    for L in range(f["num_hidden_layers"]):
        layer(L, L >= 1)
    W["model.norm.weight"] = norm(H)
    W["lm_head.weight"] = lin(V, H)
    if f["mtp_layer"]:
        # an MTP-like (NextN) layer at index num_hidden_layers; loaders must ignore it
        p = f"model.layers.{f['num_hidden_layers']}."
        W[p + "eh_proj.weight"] = lin(H, 2 * H)
        W[p + "enorm.weight"] = norm(H)
        W[p + "hnorm.weight"] = norm(H)
        W[p + "input_layernorm.weight"] = norm(H)
        W[p + "final_layernorm.weight"] = norm(H)
    return W


def shard_plan(name, W):
    """filename -> list of tensor names."""
    f = FIXTURES[name]
    if not f["shards"]:
        return OrderedDict([("model.safetensors", list(W))])
    assert f["shards"] == 3 and f["num_hidden_layers"] == 4
    s = [[], [], []]
    for n in W:
        if n == "model.embed_tokens.weight" or n.startswith(("model.layers.0.", "model.layers.1.")):
            s[0].append(n)
        elif n.startswith("model.layers.2."):
            # layer 2: attention in shard 1, its MoE block in shard 2
            s[0 if ".self_attn." in n or "input_layernorm" in n else 1].append(n)
        elif n.startswith("model.layers.3."):
            # layer 3: attention in shard 2, its MoE block in shard 3
            s[1 if ".self_attn." in n or "input_layernorm" in n else 2].append(n)
        else:
            s[2].append(n)
    return OrderedDict((f"model-{i + 1:05d}-of-00003.safetensors", names) for i, names in enumerate(s))


def write_checkpoint(name, W, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for fn in os.listdir(out_dir):
        if fn.endswith(".safetensors") or fn.endswith(".index.json"):
            os.remove(os.path.join(out_dir, fn))
    cfg = make_config(name)
    with open(os.path.join(out_dir, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
        fh.write("\n")
    plan = shard_plan(name, W)
    total = 0
    wmap = OrderedDict()
    for fn, names in plan.items():
        total += write_safetensors(os.path.join(out_dir, fn), OrderedDict((n, W[n]) for n in names),
                                   metadata={"format": "pt"})
        for n in names:
            wmap[n] = fn
    if len(plan) > 1:
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {"total_size": total}, "weight_map": OrderedDict(sorted(wmap.items()))},
                      fh, indent=2)
            fh.write("\n")
    return plan


