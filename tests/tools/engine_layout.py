"""Lay a canonical hyoracle dump out again as SGLang's dumper or tools/vllm_hooks.py would have
written it for the same run (test data for tests/tools/test_engine_convert.py).

Written from the engines' model code (docs/engine-dumps.md lists the sources), independently of
tools/engine_convert.py, which must undo it:
- `qkv_proj.output` of TP rank r = [q heads of r | k heads of r | v heads of r], flattened;
  with nkv < tp rank r holds KV head r // (tp / nkv);
- SGLang's q_norm/k_norm run on `reshape(-1, head_dim)` ([T·n_r, d]), vLLM's on [T, n_r, d];
- the rotary embedding module is shared by all layers, so its outputs carry layer 0's module
  name and the layer in the `layer_id` tag;
- a decoder layer returns (mlp out, resid_mid); input_layernorm of layer L > 0 returns
  (input_norm, out of layer L-1); post_attention_layernorm returns (post_norm, resid_mid);
  SGLang's final norm returns (final_norm, out of the last layer), vLLM's gets that sum as input;
- shared experts (both engines) and SGLang's routed experts are row-parallel partial sums: split
  here into parts that add up exactly (high bits on rank 0, the rest on rank 1, zeros beyond);
- gate_up_proj of rank r = [gate_r | up_r]; down_proj's input = silu(gate)·up, computed here
  from the checkpoint's weights (the goldens hold neither);
- SGLang's TopK returns (weights, ids, router_logits) in its own order (shuffled here);
- logits: the last token's row only (SGLang next_token_logits; vLLM compute_logits, rank 0).
"""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from dump_io import read_safetensors  # noqa: E402


def split_exact(x, tp):
    """tp parts whose float64 sum is exactly x: x with its low mantissa bits cleared, the rest,
    then zeros."""
    if tp == 1:
        return [x]
    bits = {torch.bfloat16: (torch.int16, 0xF), torch.float16: (torch.int16, 0xF),
            torch.float32: (torch.int32, 0xFFF), torch.float64: (torch.int64, 0xFFFFFF)}
    it, mask = bits[x.dtype]
    hi = (x.contiguous().view(it) & ~mask).view(x.dtype)
    lo = (x.double() - hi.double()).to(x.dtype)
    assert torch.equal((hi.double() + lo.double()).to(x.dtype), x)
    return [hi, lo] + [torch.zeros_like(x) for _ in range(tp - 2)]


def load_weights(ckpt):
    W = {}
    for fn in sorted(os.listdir(ckpt)):
        if fn.endswith(".safetensors"):
            W.update(read_safetensors(os.path.join(ckpt, fn)))
    return W


class Writer:
    """Writes one engine dump directory: files named and filled like the engine's."""

    def __init__(self, out_dir, engine, tp, fmt):
        self.out, self.engine, self.tp, self.fmt = out_dir, engine, tp, fmt
        self.dump_index = 0
        os.makedirs(out_dir, exist_ok=True)

    def put(self, step, rank, name, value, layer=None, core=False):
        full = name if core else "non_intrusive__" + name
        self.dump_index += 1
        if self.fmt == "old":  # SGLang's older dumper: forward_pass_id, bare tensor
            tags = {"forward_pass_id": step + 1, "rank": rank, "name": full, "dump_index": self.dump_index}
            if layer is not None:
                tags["layer_id"] = layer
            obj = value.clone()
        else:
            tags = {"step": step, "rank": rank, "dump_index": self.dump_index, "name": full}
            if self.engine == "sglang":
                tags["recompute_status"] = "disabled"
            if layer is not None:
                tags["layer_id"] = layer
            meta = dict(tags, world_rank=rank, world_size=self.tp)
            if self.engine == "sglang":
                meta["sglang_parallel_info"] = {"tp_rank": rank, "tp_size": self.tp, "pp_rank": 0, "pp_size": 1}
            else:
                meta.update(tp_rank=rank, tp_size=self.tp)
            obj = {"value": value.clone(), "meta": meta}
        fn = "___".join(f"{k}={v}" for k, v in tags.items()) + ".pt"
        torch.save(obj, os.path.join(self.out, fn))

    def all_ranks(self, step, name, value, layer=None, core=False):
        for r in range(self.tp):
            self.put(step, r, name, value, layer, core)


def write_engine_dump(golden, cfg, ckpt, engine, tp, out_dir, fmt="dict", first_step=0, seed=1):
    """Write the forwards of `golden` (prefill, then steps.S.*) as engine files; step numbers start
    at first_step. Returns the number of forwards written."""
    w = Writer(out_dir, engine, tp, fmt)
    W = load_weights(ckpt)
    nq, nkv, H = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    d = cfg.get("head_dim") or H // nq
    nq_r, nkv_r = nq // tp, max(1, nkv // tp)
    nL = cfg["num_hidden_layers"]
    gen = torch.Generator().manual_seed(seed)
    steps = sorted({int(n.split(".")[1]) for n in golden if n.startswith("steps.")})
    prefixes = [""] + [f"steps.{s}." for s in steps]
    T0 = golden["input_ids"].numel()

    def kv_block(t, r):  # [T, nkv, d] -> this rank's KV heads
        if nkv >= tp:
            return t[:, r * nkv_r:(r + 1) * nkv_r]
        return t[:, r // (tp // nkv):r // (tp // nkv) + 1]

    def q_block(t, r):
        return t[:, r * nq_r:(r + 1) * nq_r]

    for i, p in enumerate(prefixes):
        step = first_step + i
        g = lambda n: golden[p + n]  # noqa: E731
        T = g("input_ids").numel()
        pos = torch.arange(T0) if i == 0 else torch.tensor([T0 + i - 1])
        w.all_ranks(step, "input_ids", g("input_ids").clone(), core=True)
        w.all_ranks(step, "positions", pos, core=True)
        w.all_ranks(step, "seq_lens", torch.tensor([T0 + i]), core=True)
        w.all_ranks(step, "model.embed_tokens.output", g("embed"))
        for L in range(nL):
            m = f"model.layers.{L}."
            lay = lambda n: g(f"layers.{L}.{n}")  # noqa: E731
            if L == 0:
                w.all_ranks(step, m + "input_layernorm.output", lay("input_norm"), L)
            else:
                w.all_ranks(step, m + "input_layernorm.output.0", lay("input_norm"), L)
                w.all_ranks(step, m + "input_layernorm.output.1", g(f"layers.{L - 1}.out"), L)
            for r in range(tp):
                qkv = torch.cat([q_block(lay("attn.q"), r).reshape(T, -1), kv_block(lay("attn.k"), r).reshape(T, -1),
                                 kv_block(lay("attn.v"), r).reshape(T, -1)], dim=1)
                w.put(step, r, m + "self_attn.qkv_proj.output", qkv, L)
                qn, kn = q_block(lay("attn.q_norm"), r), kv_block(lay("attn.k_norm"), r)
                if engine == "sglang":
                    qn, kn = qn.reshape(-1, d), kn.reshape(-1, d)
                w.put(step, r, m + "self_attn.q_norm.output", qn.contiguous(), L)
                w.put(step, r, m + "self_attn.k_norm.output", kn.contiguous(), L)
                rot = "model.layers.0.self_attn.rotary_emb."  # one shared module
                w.put(step, r, rot + "output.0", q_block(lay("attn.q_rope"), r).reshape(T, -1), L)
                w.put(step, r, rot + "output.1", kv_block(lay("attn.k_rope"), r).reshape(T, -1), L)
                ctx = lay("attn.context")[:, r * nq_r * d:(r + 1) * nq_r * d].contiguous()
                w.put(step, r, m + "self_attn.attn.output", ctx, L)
                w.put(step, r, m + "self_attn.o_proj.inputs.0", ctx, L)  # known, not used
            w.all_ranks(step, m + "self_attn.o_proj.output", lay("attn.out"), L)
            w.all_ranks(step, m + "self_attn.output", lay("attn.out"), L)
            w.all_ranks(step, m + "post_attention_layernorm.output.0", lay("post_norm"), L)
            w.all_ranks(step, m + "post_attention_layernorm.output.1", lay("resid_mid"), L)
            moe = f"{p}layers.{L}.moe.router_logits" in golden
            x = lay("post_norm")
            blocks = [("mlp.", "mlp", cfg["intermediate_size"])] if not moe else \
                [("mlp.shared_mlp.", "mlp.shared_mlp", cfg["moe_intermediate_size"] * cfg["num_shared_experts"])]
            for sub, wname, I in blocks:
                Wg = W[f"model.layers.{L}.{wname}.gate_proj.weight"].double()
                Wu = W[f"model.layers.{L}.{wname}.up_proj.weight"].double()
                gate, up = (x.double() @ Wg.T).to(x.dtype), (x.double() @ Wu.T).to(x.dtype)
                act = (torch.nn.functional.silu(gate.double()) * up.double()).to(x.dtype)
                wr = I // tp
                for r in range(tp):
                    sl = slice(r * wr, (r + 1) * wr)
                    w.put(step, r, m + sub + "gate_up_proj.output", torch.cat([gate[:, sl], up[:, sl]], 1), L)
                    w.put(step, r, m + sub + "down_proj.inputs.0", act[:, sl].contiguous(), L)
            if moe:
                w.all_ranks(step, m + "mlp.gate.output", lay("moe.router_logits"), L)
                for r, part in enumerate(split_exact(lay("moe.shared_out"), tp)):
                    w.put(step, r, m + "mlp.shared_mlp.output", part, L)
                if engine == "sglang":
                    ids, wts = lay("moe.topk_ids"), lay("moe.topk_weights")
                    perm = torch.stack([torch.randperm(ids.shape[1], generator=gen) for _ in range(T)])
                    w.all_ranks(step, m + "mlp.topk.output.0", wts.gather(1, perm), L)
                    w.all_ranks(step, m + "mlp.topk.output.1", ids.long().gather(1, perm).to(torch.int32), L)
                    w.all_ranks(step, m + "mlp.topk.output.2", lay("moe.router_logits"), L)
                    # known, not used: FusedMoE's keyword inputs, a tensor and a TopKOutput tuple
                    w.all_ranks(step, m + "mlp.experts.inputs.hidden_states", x, L)
                    w.all_ranks(step, m + "mlp.experts.inputs.topk_output.1", ids, L)
                    for r, part in enumerate(split_exact(lay("moe.routed_out"), tp)):
                        w.put(step, r, m + "mlp.experts.output", part, L)
                else:
                    w.all_ranks(step, m + "mlp.experts.output", lay("mlp.out"), L)
            w.all_ranks(step, m + "mlp.output", lay("mlp.out"), L)
            w.all_ranks(step, m + "output.0", lay("mlp.out"), L)
            w.all_ranks(step, m + "output.1", lay("resid_mid"), L)
        last = g(f"layers.{nL - 1}.out")
        if engine == "sglang":
            w.all_ranks(step, "model.norm.output.0", g("final_norm"))
            w.all_ranks(step, "model.norm.output.1", last)
            w.all_ranks(step, "logits_processor.output.next_token_logits", g("logits")[-1:].clone())
        else:
            w.all_ranks(step, "model.norm.inputs.0", last)
            w.all_ranks(step, "model.norm.output", g("final_norm"))
            w.put(step, 0, "logits_processor.output", g("logits")[-1:].clone())
    return len(prefixes)


def write_warmup_step(out_dir, engine, tp, step, H, dtype):
    """A server warm-up forward of a batch of two 1-token sequences (what a dumper enabled at
    start-up records before the real request)."""
    w = Writer(out_dir, engine, tp, "dict")
    w.dump_index = 10 ** 6
    w.all_ranks(step, "input_ids", torch.tensor([1, 1]), core=True)
    w.all_ranks(step, "seq_lens", torch.tensor([1, 1]), core=True)
    w.all_ranks(step, "model.embed_tokens.output", torch.zeros(2, H, dtype=dtype))


def main(argv=None):
    """CLI for the docs' runnable example: lay a committed golden out as engine files."""
    import argparse
    import json
    from dump_io import read_dump
    ap = argparse.ArgumentParser(description="Write a committed golden dump as SGLang dumper / vLLM hook files")
    ap.add_argument("engine", choices=["sglang", "vllm"])
    ap.add_argument("fixture", help="fixture directory, e.g. fixtures/tiny-mt2")
    ap.add_argument("run", help="golden run under FIXTURE/golden, e.g. hf-bf16")
    ap.add_argument("out")
    ap.add_argument("--tp", type=int, default=1)
    a = ap.parse_args(argv)
    with open(os.path.join(a.fixture, "config.json")) as f:
        cfg = json.load(f)
    _, g = read_dump(os.path.join(a.fixture, "golden", a.run))
    n = write_engine_dump(g, cfg, a.fixture, a.engine, a.tp, a.out)
    print(f"wrote {len(os.listdir(a.out))} {a.engine} files ({n} forward passes, TP {a.tp}) to {a.out}")


if __name__ == "__main__":
    main()
