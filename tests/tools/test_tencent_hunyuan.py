#!/usr/bin/env python3
"""Tests of hyoracle's independent Hunyuan v1 implementation (tools/hytools/tencent_hunyuan.py,
tools/tencent_hunyuan_dump.py) on tiny random checkpoints written here (CTest label "tools").

    python3 tests/tools/test_tencent_hunyuan.py [unittest args]     # exit 77 without torch

What is checked, each against a computation written out here rather than the module's own:
the separate and the fused (qkv_proj per KV group, gate_and_up_proj = [up; gate]) layouts give
bitwise identical dumps; a cross layer's k_rope is the NeoX rotation (NTK-alpha base) of its
source layer's attn.k and its cache holds the source's v; decode with the cache equals a full
re-prefill's last rows; top-1 weights are p_max (Tencent) or 1 (HF); a stray tensor is refused;
the bfloat16 precision rounds each op's output once (checked on a projection and a residual sum)
and keeps the router fp32; a module-only dump is the full dump's module tensors; a CUDA run (when
a GPU is there) agrees with the CPU's.
"""

import json
import math
import os
import shutil
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))

try:
    import torch
except ImportError:  # the CTest entry reports a skip
    print("torch not available: skipped")
    sys.exit(77)

from dump_io import read_dump, write_safetensors  # noqa: E402
from hytools.module_names import module_name_patterns  # noqa: E402
from hytools.tencent_hunyuan_run import WIDE, dump, run  # noqa: E402

H, NQ, NKV, I, V, LAYERS, E = 32, 4, 2, 24, 64, 5, 4
D = H // NQ
TOKENS = [3, 17, 42, 5, 60, 11, 29]


def tencent_config(**over):
    cfg = {"model_type": "hunyuan", "architectures": ["HunYuanForCausalLM"], "hidden_size": H,
           "num_attention_heads": NQ, "num_key_value_heads": NKV, "num_hidden_layers": LAYERS,
           "intermediate_size": I, "vocab_size": V, "num_experts": E, "moe_topk": 1,
           "use_mixed_mlp_moe": True, "num_shared_expert": 2, "use_cla": True, "cla_share_factor": 3,
           "use_qk_norm": True, "rope_theta": 10000.0,
           "rope_scaling": {"type": "dynamic", "alpha": 1000.0, "factor": 1.0}, "rms_norm_eps": 1e-5,
           "tie_word_embeddings": True, "max_position_embeddings": 64, "hidden_act": "silu"}
    cfg.update(over)
    return cfg


def random_weights(cfg, seed=1):
    """Separate-layout tensors of a config (bf16 like the released checkpoints, router F32)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2, dtype=torch.bfloat16):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    def norm(n):
        return (1.0 + torch.randn(n, generator=g, dtype=torch.float64) * 0.1).to(torch.bfloat16)
    f = cfg["cla_share_factor"] if cfg.get("use_cla") else 1
    shared = I * cfg.get("num_shared_expert", 1) if cfg["model_type"] == "hunyuan" else I
    W = {"model.embed_tokens.weight": rnd(V, H, scale=1.0), "model.norm.weight": norm(H)}
    if not cfg.get("tie_word_embeddings"):
        W["lm_head.weight"] = rnd(V, H)
    for L in range(cfg["num_hidden_layers"]):
        p, a = f"model.layers.{L}.", f"model.layers.{L}.self_attn."
        W[p + "input_layernorm.weight"], W[p + "post_attention_layernorm.weight"] = norm(H), norm(H)
        W[a + "q_proj.weight"], W[a + "o_proj.weight"] = rnd(NQ * D, H), rnd(H, NQ * D)
        if L % f == 0:
            W[a + "k_proj.weight"], W[a + "v_proj.weight"] = rnd(NKV * D, H), rnd(NKV * D, H)
        W[a + "query_layernorm.weight"], W[a + "key_layernorm.weight"] = norm(D), norm(D)
        mlps = [f"{p}mlp.experts.{e}." for e in range(E)]
        W[p + "mlp.gate.wg.weight"] = rnd(E, H, scale=1.0, dtype=torch.float32)
        for m in mlps:
            W[m + "gate_proj.weight"], W[m + "up_proj.weight"], W[m + "down_proj.weight"] = \
                rnd(I, H), rnd(I, H), rnd(H, I)
        m = p + "mlp.shared_mlp."
        W[m + "gate_proj.weight"], W[m + "up_proj.weight"], W[m + "down_proj.weight"] = \
            rnd(shared, H), rnd(shared, H), rnd(H, shared)
    return W


def fuse(W):
    """The fused layout of the same weights: qkv_proj per KV group [g q heads, k, v] and
    gate_and_up_proj = [up; gate]."""
    out, g = {}, NQ // NKV
    for n, t in W.items():
        if n.endswith("self_attn.q_proj.weight") and n.replace("q_proj", "k_proj") in W:
            k, v = W[n.replace("q_proj", "k_proj")], W[n.replace("q_proj", "v_proj")]
            groups = torch.cat([t.reshape(NKV, g, D, H), k.reshape(NKV, 1, D, H), v.reshape(NKV, 1, D, H)], 1)
            out[n.replace("q_proj", "qkv_proj")] = groups.reshape(-1, H)
        elif n.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight", "up_proj.weight")):
            continue
        elif n.endswith("gate_proj.weight"):
            out[n.replace("gate_proj", "gate_and_up_proj")] = torch.cat([W[n.replace("gate_proj", "up_proj")], t])
        else:
            out[n] = t
    return out


def write_checkpoint(d, cfg, W):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(d, "model.safetensors"), W)
    return d


def rel(a, b):
    return float((a.double() - b.double()).norm() / max(b.double().norm(), 1e-300))


class TencentHunyuan(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tencent_hunyuan_test_")
        cls.cfg = tencent_config()
        cls.W = random_weights(cls.cfg)
        cls.sep = write_checkpoint(os.path.join(cls.tmp, "sep"), cls.cfg, cls.W)
        cls.fused = write_checkpoint(os.path.join(cls.tmp, "fused"), cls.cfg, fuse(cls.W))
        dump(cls.sep, TOKENS, os.path.join(cls.tmp, "d-sep"), generate_n=4)
        dump(cls.fused, TOKENS, os.path.join(cls.tmp, "d-fused"), generate_n=4)
        cls.man, cls.t = read_dump(os.path.join(cls.tmp, "d-sep"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_fused_and_separate_layouts_give_identical_dumps(self):
        _, t2 = read_dump(os.path.join(self.tmp, "d-fused"))
        self.assertEqual(sorted(self.t), sorted(t2))
        for n in self.t:
            self.assertTrue(torch.equal(self.t[n], t2[n]), n)
        self.assertEqual(self.man["producer"]["semantics"], "tencent")
        self.assertEqual(self.man["producer"]["precision"], "exact")

    def test_cross_layers_rotate_the_source_layers_raw_keys(self):
        base = 10000.0 * 1000.0 ** (D / (D - 2))
        for c, s in ((1, 0), (2, 0), (4, 3)):
            self.assertNotIn(f"layers.{c}.attn.k", self.t)
            k = self.t[f"layers.{s}.attn.k"]
            want = torch.empty_like(k)
            for p in range(k.shape[0]):
                for j in range(D // 2):
                    a = p * base ** (-2.0 * j / D)
                    x1, x2 = k[p, :, j], k[p, :, j + D // 2]
                    want[p, :, j] = x1 * math.cos(a) - x2 * math.sin(a)
                    want[p, :, j + D // 2] = x2 * math.cos(a) + x1 * math.sin(a)
            self.assertLess(rel(self.t[f"layers.{c}.attn.k_rope"], want), 1e-14, (c, s))
            # its own key norm: same rotated keys as the source, different normed keys
            self.assertTrue(torch.equal(self.t[f"layers.{c}.attn.k_rope"], self.t[f"layers.{s}.attn.k_rope"]))
            self.assertFalse(torch.equal(self.t[f"layers.{c}.attn.k_norm"], self.t[f"layers.{s}.attn.k_norm"]))
            self.assertTrue(torch.equal(self.t[f"layers.{c}.kv.v"], self.t[f"layers.{s}.kv.v"]))
            # decode steps share the current row only
            self.assertTrue(torch.equal(self.t[f"steps.2.layers.{c}.attn.k_rope"],
                                        self.t[f"steps.2.layers.{s}.attn.k_rope"]))

    def test_decode_with_cache_equals_a_full_prefill(self):
        toks = self.t["generate.tokens"].tolist()
        fed = TOKENS + toks[:3]  # decode steps 1..3 fed generated tokens 0..2
        _, full, _, _ = run(self.sep, fed, 0)
        T = len(TOKENS)
        for s in (1, 2, 3):
            r = T + s - 1
            for n in ("logits", "layers.2.attn.context", "layers.4.attn.k_norm", "layers.3.out",
                      "layers.1.moe.routed_out", "layers.4.moe.topk_weights"):
                self.assertLess(rel(self.t[f"steps.{s}.{n}"], full[n][r:r + 1]), 1e-12, (s, n))
            self.assertTrue(torch.equal(self.t[f"steps.{s}.layers.0.moe.topk_ids"], full["layers.0.moe.topk_ids"][r:r + 1]))
            self.assertLess(rel(self.t["generate.logits"][s], full["logits"][r]), 1e-12)
        self.assertEqual(tuple(self.t["layers.2.kv.k"].shape), (T + 3, NKV, D))
        self.assertLess(rel(self.t["layers.2.kv.k"], full["layers.2.attn.k_norm"]), 1e-12)

    def test_top1_weight_is_the_raw_probability(self):
        for L in range(LAYERS):
            p = self.t[f"layers.{L}.moe.scores"]
            self.assertLess(rel(p.sum(-1), torch.ones(len(TOKENS), dtype=torch.float64)), 1e-15)
            self.assertTrue(torch.equal(self.t[f"layers.{L}.moe.topk_weights"][:, 0], p.max(-1).values))
            self.assertTrue(torch.equal(self.t[f"layers.{L}.moe.topk_ids"][:, 0].long(), p.argmax(-1)))

    def test_hf_semantics_renormalise_top1_and_have_no_cross_layers(self):
        cfg = tencent_config(model_type="hunyuan_v1_moe", architectures=["HunYuanMoEV1ForCausalLM"],
                             use_cla=False, head_dim=D, rope_scaling=None,
                             rope_parameters={"rope_type": "dynamic", "alpha": 1000.0, "factor": 1.0,
                                              "rope_theta": 10000.0})
        ck = write_checkpoint(os.path.join(self.tmp, "hf"), cfg, random_weights(cfg, seed=2))
        spec, st, _, _ = run(ck, TOKENS, 0)
        self.assertTrue(all(kind == (True, True) for kind in spec.kinds))
        for L in range(LAYERS):
            self.assertTrue(torch.equal(st[f"layers.{L}.moe.topk_weights"], torch.ones(len(TOKENS), 1, dtype=torch.float64)))

    def test_top2_weights_are_renormalised(self):
        cfg = tencent_config(moe_topk=2)
        ck = write_checkpoint(os.path.join(self.tmp, "top2"), cfg, self.W)
        _, st, _, _ = run(ck, TOKENS, 0)
        p, ids, w = st["layers.1.moe.scores"], st["layers.1.moe.topk_ids"].long(), st["layers.1.moe.topk_weights"]
        top = p.gather(1, ids)
        self.assertTrue(bool((top[:, 0] >= top[:, 1]).all()))
        self.assertLess(rel(w, top / top.sum(-1, keepdim=True)), 1e-15)

    def test_a_tensor_the_model_does_not_use_is_refused(self):
        W = dict(self.W)
        W["model.layers.1.self_attn.k_proj.weight"] = W["model.layers.0.self_attn.k_proj.weight"]
        ck = write_checkpoint(os.path.join(self.tmp, "stray"), self.cfg, W)
        with self.assertRaisesRegex(ValueError, "layers.1.self_attn.k_proj"):
            run(ck, TOKENS, 0)


class Precisions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tencent_hunyuan_prec_")
        cls.W = random_weights(tencent_config(), seed=3)
        cls.ck = write_checkpoint(os.path.join(cls.tmp, "ck"), tencent_config(), cls.W)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_bf16_rounds_each_op_once_and_keeps_the_router_fp32(self):
        _, b, _, _ = run(self.ck, TOKENS, 3, dtype="bfloat16")
        _, x, _, _ = run(self.ck, TOKENS, 3, dtype="float64")
        for n, t in b.items():
            if not t.is_floating_point():
                continue
            want = torch.float32 if n.endswith(WIDE) else torch.bfloat16
            self.assertEqual(t.dtype, want, n)
        # q = bf16(input_norm @ W_q^T), the product in fp32; resid_mid = bf16(embed + attn.out)
        h = b["layers.0.input_norm"].float()
        q = (h @ self.W["model.layers.0.self_attn.q_proj.weight"].float().T).to(torch.bfloat16)
        self.assertTrue(torch.equal(b["layers.0.attn.q"].reshape(len(TOKENS), -1), q))
        r = (b["embed"].float() + b["layers.0.attn.out"].float()).to(torch.bfloat16)
        self.assertTrue(torch.equal(b["layers.0.resid_mid"], r))
        # the router's logits are the fp32 product of the rounded post_norm and the F32 gate
        g = b["layers.0.post_norm"].float() @ self.W["model.layers.0.mlp.gate.wg.weight"].T
        self.assertTrue(torch.equal(b["layers.0.moe.router_logits"], g))
        for n in ("layers.0.attn.q_norm", "layers.2.attn.context", "layers.4.out", "logits", "steps.2.logits"):
            self.assertLess(rel(b[n], x[n]), 0.05, n)

    def test_module_only_dump_is_the_full_dumps_module_tensors(self):
        dump(self.ck, TOKENS, os.path.join(self.tmp, "full"), generate_n=3, dtype="bfloat16")
        dump(self.ck, TOKENS, os.path.join(self.tmp, "mod"), generate_n=3, dtype="bfloat16", kind="modules")
        mf, full = read_dump(os.path.join(self.tmp, "full"))
        mm, mod = read_dump(os.path.join(self.tmp, "mod"))
        import re
        pats = [re.compile("^(" + p + ")$") for p in module_name_patterns()]
        want = {n for n in full if any(p.match(re.sub(r"^steps\.\d+\.", "", n)) for p in pats)}
        self.assertEqual(set(mod), want)
        self.assertIn("layers.1.attn.k_norm", mod)
        self.assertNotIn("layers.0.attn.q_rope", mod)
        self.assertNotIn("layers.0.kv.k", mod)
        for n in mod:
            self.assertTrue(torch.equal(mod[n], full[n]), n)
        self.assertEqual(mm["tencent_run"]["dump_kind"], "modules")
        self.assertEqual(mm["producer"]["precision"], "bf16")
        self.assertNotIn("dump_kind", mf["tencent_run"])

    @unittest.skipUnless(torch.cuda.is_available(), "no CUDA device")
    def test_cuda_agrees_with_the_cpu(self):
        _, c, tc, _ = run(self.ck, TOKENS, 3, dtype="float32")
        _, g, tg, _ = run(self.ck, TOKENS, 3, dtype="float32", device="cuda")
        self.assertEqual(tc, tg)
        for n in ("layers.3.attn.context", "layers.4.moe.routed_out", "logits", "steps.2.logits"):
            self.assertLess(rel(g[n], c[n]), 1e-5, n)


if __name__ == "__main__":
    unittest.main()
