"""A stand-in for vLLM's HYV3ForCausalLM (vllm/model_executor/models/hy_v3.py) with the same
module tree and the same forward control flow (fused (hidden, residual) norms, qkv split, the
rotary module shared by all layers, shared experts called inside FusedMoE, logits computed after
the forward), whose leaf modules return the tensors of a committed golden dump instead of
computing them. Used to run tools/vllm_hooks.py for real without vLLM (TP = 1)."""

import torch
from torch import nn


class Tape:
    """The golden tensors and the forward being replayed (prefix '' or 'steps.S.')."""

    def __init__(self, golden, weights):
        self.g, self.W, self.prefix = golden, weights, ""

    def __call__(self, name):
        return self.g[self.prefix + name]


class Leaf(nn.Module):
    """A module whose output is fn(args)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _dense_gate_up(tape, L, wname, x):
    Wg = tape.W[f"model.layers.{L}.{wname}.gate_proj.weight"].double()
    Wu = tape.W[f"model.layers.{L}.{wname}.up_proj.weight"].double()
    return torch.cat([(x.double() @ Wg.T).to(x.dtype), (x.double() @ Wu.T).to(x.dtype)], 1)


class FeedForward(nn.Module):
    def __init__(self, tape, L, wname, out_name):
        super().__init__()
        self.gate_up_proj = Leaf(lambda x: (_dense_gate_up(tape, L, wname, x), None))
        self.act_fn = Leaf(lambda gu: (torch.nn.functional.silu(gu[:, :gu.shape[1] // 2].double())
                                       * gu[:, gu.shape[1] // 2:].double()).to(gu.dtype))
        self.down_proj = Leaf(lambda a: (tape(f"layers.{L}.{out_name}"), None))

    def forward(self, x):
        gu, _ = self.gate_up_proj(x)
        out, _ = self.down_proj(self.act_fn(gu))
        return out


class Experts(nn.Module):
    """FusedMoE with the shared experts inside: returns routed + shared (= mlp.out)."""

    def __init__(self, tape, L, shared):
        super().__init__()
        self.tape, self.L, self.shared = tape, L, [shared]  # list: not a registered child

    def forward(self, hidden_states, router_logits):
        self.shared[0](hidden_states)
        return self.tape(f"layers.{self.L}.mlp.out")


class MoE(nn.Module):
    def __init__(self, tape, L):
        super().__init__()
        self.gate = Leaf(lambda x: (tape(f"layers.{L}.moe.router_logits"), None))
        self.shared_mlp = FeedForward(tape, L, "mlp.shared_mlp", "moe.shared_out")
        self.experts = Experts(tape, L, self.shared_mlp)

    def forward(self, x):
        logits, _ = self.gate(x)
        return self.experts(hidden_states=x, router_logits=logits)


def _norm(tape, name):
    def fn(x, residual=None):
        if residual is None:
            return tape(name)
        return tape(name), x + residual
    return fn


class Attention(nn.Module):
    def __init__(self, tape, L, cfg, rotary):
        super().__init__()
        self.nq, self.nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.d = cfg["head_dim"]
        lay = lambda n: tape(f"layers.{L}.{n}")  # noqa: E731
        self.qkv_proj = Leaf(lambda h: (torch.cat([lay("attn.q").flatten(1), lay("attn.k").flatten(1),
                                                   lay("attn.v").flatten(1)], 1), None))
        self.q_norm = Leaf(lambda q: lay("attn.q_norm"))
        self.k_norm = Leaf(lambda k: lay("attn.k_norm"))
        self.rotary_emb = rotary
        self.attn = Leaf(lambda q, k, v: lay("attn.context"))
        self.o_proj = Leaf(lambda o: (lay("attn.out"), None))

    def forward(self, positions, hidden_states):
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.nq * self.d, self.nkv * self.d, self.nkv * self.d], dim=-1)
        q = self.q_norm(q.view(-1, self.nq, self.d)).reshape(q.shape)
        k = self.k_norm(k.view(-1, self.nkv, self.d)).reshape(k.shape)
        q, k = self.rotary_emb(positions, q, k)
        out, _ = self.o_proj(self.attn(q, k, v))
        return out


class DecoderLayer(nn.Module):
    def __init__(self, tape, L, cfg, rotary):
        super().__init__()
        self.L, self.tape = L, tape
        self.self_attn = Attention(tape, L, cfg, rotary)
        self.input_layernorm = Leaf(_norm(tape, f"layers.{L}.input_norm"))
        self.post_attention_layernorm = Leaf(_norm(tape, f"layers.{L}.post_norm"))
        self.mlp = FeedForward(tape, L, "mlp", "mlp.out") if L < cfg["first_k_dense_replace"] else MoE(tape, L)

    def forward(self, positions, hidden_states, residual):
        self.tape.layer = self.L
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self.self_attn(positions, hidden_states)
        hidden_states, residual = self.post_attention_layernorm(hidden_states, residual)
        return self.mlp(hidden_states), residual


class Model(nn.Module):
    def __init__(self, tape, cfg):
        super().__init__()
        self.embed_tokens = Leaf(lambda ids: tape("embed"))
        # vLLM's get_rope caches one rotary module for all layers
        rotary = Leaf(lambda pos, q, k: (tape(f"layers.{tape.layer}.attn.q_rope").flatten(1),
                                         tape(f"layers.{tape.layer}.attn.k_rope").flatten(1)))
        self.layers = nn.ModuleList([DecoderLayer(tape, L, cfg, rotary) for L in range(cfg["num_hidden_layers"])])
        self.norm = Leaf(_norm(tape, "final_norm"))

    def forward(self, input_ids, positions):
        h, residual = self.embed_tokens(input_ids), None
        for layer in self.layers:
            h, residual = layer(positions, h, residual)
        return self.norm(h + residual)


class HYV3ForCausalLM(nn.Module):
    def __init__(self, tape, cfg):
        super().__init__()
        self.tape = tape
        self.model = Model(tape, cfg)
        self.lm_head = Leaf(lambda h: None)
        self.logits_processor = Leaf(lambda head, h: tape("logits")[-1:].clone())

    def forward(self, input_ids, positions):
        return self.model(input_ids, positions)

    def compute_logits(self, hidden_states):
        return self.logits_processor(self.lm_head, hidden_states)


def run(model, tape, steps):
    """Prefill, then one decode forward per steps.S.* of the golden dump."""
    T0 = tape.g["input_ids"].numel()
    for i, p in enumerate([""] + [f"steps.{s}." for s in steps]):
        tape.prefix = p
        pos = torch.arange(T0) if i == 0 else torch.tensor([T0 + i - 1])
        h = model(tape.g[p + "input_ids"], pos)
        model.compute_logits(h)
