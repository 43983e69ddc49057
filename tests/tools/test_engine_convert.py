#!/usr/bin/env python3
"""Tests of tools/engine_convert.py and tools/vllm_hooks.py (CTest label "tools").

    python3 tests/tools/test_engine_convert.py HYORACLE_BINARY [unittest args]

Committed HF goldens (fixtures/tiny-mt2: GQA 6/2 heads, 2 shared experts; fixtures/tiny-hy3)
are laid out again as SGLang's dumper or vLLM hooks would have written them (engine_layout.py,
vllm_replay.py), converted back, and then
  (a) every converted tensor must equal the golden one bit for bit, and the golden tensors the
      engine files cannot carry must be exactly the documented ones;
  (b) `hyoracle compare GOLDEN CONVERTED` must exit 0;
  (c) planted conversion bugs must make compare exit 1 naming the expected first tensor (or,
      for a gate/up swap, which has no canonical tensor, the converter's own check exit 2);
  (d) bad inputs must give exit 2 and one line naming the file / tensor.
Exits 77 (CTest "skipped") when torch is not installed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
except ImportError:
    print("SKIP: python3-torch is not installed (apt-get install python3-torch); engine converter tests not run")
    sys.exit(77)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path[:0] = [os.path.join(ROOT, "tools"), os.path.dirname(os.path.abspath(__file__))]
import dump_io  # noqa: E402
import engine_convert  # noqa: E402
import engine_layout  # noqa: E402
from hytools import convert_tp  # noqa: E402
from hytools.checkpoint import weights_fingerprint  # noqa: E402
import vllm_hooks  # noqa: E402
import vllm_replay  # noqa: E402

HYORACLE = None
CONVERT = os.path.join(ROOT, "tools", "engine_convert.py")


def fixture(name):
    d = os.path.join(ROOT, "fixtures", name)
    with open(os.path.join(d, "config.json")) as f:
        return d, json.load(f)


def golden(name, run):
    return dump_io.read_dump(os.path.join(ROOT, "fixtures", name, "golden", run))[1]


def not_carried(names, engine, generated):
    """Golden names the engine files cannot carry: the sigmoid scores (computed inside the fused
    top-k), the prefill's [T, V] logits (engines return the last row), for vLLM the routed
    experts' output and top-k (inside FusedMoE), and generate.tokens unless --generated."""
    rx = [r"(steps\.\d+\.)?layers\.\d+\.moe\.scores", r"logits"]
    if engine == "vllm":
        rx += [r"(steps\.\d+\.)?layers\.\d+\.moe\.(routed_out|topk_ids|topk_weights)"]
    if not generated:
        rx += [r"generate\.tokens"]
    return {n for n in names if any(re.fullmatch(x, n) for x in rx)}


def compare(base, target, tmp):
    js = os.path.join(tmp, "report.json")
    p = subprocess.run([HYORACLE, "compare", base, target, "--require", r"^generate\.logits$",
                        "--json", js, "-q"], capture_output=True, text=True)
    rep = None
    if os.path.exists(js):
        with open(js) as f:
            rep = json.load(f)
    return p.returncode, rep, p.stderr


def convert_cli(*args):
    p = subprocess.run([sys.executable, CONVERT, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


class Case(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="engine_convert_test_")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def layout(self, fx, run, engine, tp, fmt="dict", first_step=0):
        d, cfg = fixture(fx)
        g = golden(fx, run)
        src = os.path.join(self.tmp, f"{engine}-src")
        engine_layout.write_engine_dump(g, cfg, d, engine, tp, src, fmt=fmt, first_step=first_step)
        return d, cfg, g, src

    def assert_round_trip(self, g, out, engine, generated):
        _, c = dump_io.read_dump(out)
        wrong = [n for n in c if n not in g or c[n].dtype != g[n].dtype or not torch.equal(c[n], g[n])]
        self.assertEqual(wrong, [], "converted tensors that differ from the golden bit for bit")
        self.assertEqual(set(g) - set(c), not_carried(g, engine, generated))
        return c

    def assert_compare_passes(self, base, out):
        rc, rep, err = compare(base, out, self.tmp)
        self.assertEqual(rc, 0, err)
        self.assertEqual(rep["verdict"], "pass")
        self.assertGreater(len(rep["tensors"]), 100)


class DumpWriter(Case):
    def test_write_dump_reproduces_the_committed_goldens_byte_for_byte(self):
        # tools/dump_io.py is the writer the goldens were made with
        for fx in ("tiny-hy3", "tiny-mt2"):
            for run in ("hf-bf16", "hf-f32", "hf-f64"):
                d = os.path.join(ROOT, "fixtures", fx, "golden", run)
                man, t = dump_io.read_dump(d)
                out = os.path.join(self.tmp, fx + run)
                dump_io.write_dump(out, t, man)
                with open(os.path.join(d, "activations.safetensors"), "rb") as a, \
                        open(os.path.join(out, "activations.safetensors"), "rb") as b:
                    self.assertEqual(a.read(), b.read(), f"{fx}/{run}")
                with open(os.path.join(out, "manifest.json")) as f:
                    written = json.load(f)
                # The writer adds each file's size and CRC-32 (file_checks), which the goldens predate.
                self.assertEqual(written.pop("file_checks")["activations.safetensors"],
                                 dump_io.file_check(os.path.join(out, "activations.safetensors")))
                self.assertEqual(written, man)


class RoundTrip(Case):
    def test_sglang_tp2_bf16_gqa_with_warmup_step_cli(self):
        d, cfg, g, src = self.layout("tiny-mt2", "hf-bf16", "sglang", 2, first_step=1)
        engine_layout.write_warmup_step(src, "sglang", 2, 0, cfg["hidden_size"], torch.bfloat16)
        out = os.path.join(self.tmp, "out")
        toks = ",".join(str(t) for t in g["generate.tokens"].tolist())
        # the warm-up forward (a batch of two) is refused until --steps leaves it out
        rc, _, err = convert_cli("--from", "sglang", src, "--config", d + "/config.json", "--out", out, "--tp", "2")
        self.assertEqual(rc, 2)
        self.assertIn("seq_lens has 2 entries", err)
        rc, so, err = convert_cli("--from", "sglang", src, "--config", d + "/config.json", "--out", out, "--tp", "2",
                                  "--steps", "1:", "--checkpoint", d, "--generated", toks)
        self.assertEqual(rc, 0, err)
        c = self.assert_round_trip(g, out, "sglang", True)
        self.assertIn("steps.4.layers.3.moe.topk_ids", c)
        with open(os.path.join(out, "manifest.json")) as f:
            man = json.load(f)
        self.assertEqual(man["converter"]["topk_order"], "corrected score")
        self.assertEqual(man["converter"]["gate_up_checked"], 5 * 4 * 2)  # 5 forwards x 4 layers x 2 ranks
        self.assertEqual(man["input"]["token_ids"], g["input_ids"].tolist())
        self.assertEqual(man["model"]["weights_fingerprint"], weights_fingerprint(d))  # given --checkpoint
        self.assert_compare_passes(os.path.join(d, "golden", "hf-bf16"), out)

    def test_sglang_without_checkpoint_orders_topk_by_weight(self):
        d, cfg, g, src = self.layout("tiny-mt2", "hf-bf16", "sglang", 1)
        out = os.path.join(self.tmp, "out")
        engine_convert.convert(src, "sglang", d + "/config.json", out)
        _, c = dump_io.read_dump(out)
        w = c["layers.1.moe.topk_weights"]
        self.assertTrue(bool((w[:, :-1] >= w[:, 1:]).all()))
        same_sets = [set(a) == set(b) for a, b in zip(c["layers.1.moe.topk_ids"].tolist(), g["layers.1.moe.topk_ids"].tolist())]
        self.assertTrue(all(same_sets))
        self.assert_compare_passes(os.path.join(d, "golden", "hf-bf16"), out)

    def test_vllm_tp2_f32(self):
        d, cfg, g, src = self.layout("tiny-mt2", "hf-f32", "vllm", 2)
        out = os.path.join(self.tmp, "out")
        engine_convert.convert(src, "vllm", d + "/config.json", out, tp=2)
        self.assert_round_trip(g, out, "vllm", False)
        with open(os.path.join(out, "manifest.json")) as f:
            self.assertNotIn("weights_fingerprint", json.load(f)["model"])  # no --checkpoint
        self.assert_compare_passes(os.path.join(d, "golden", "hf-f32"), out)

    def test_sglang_old_dumper_tp4_f64_replicated_kv_heads(self):
        # tiny-hy3: 4 heads, 2 KV heads; TP 4 puts one q head per rank and each KV head on 2 ranks
        d, cfg, g, src = self.layout("tiny-hy3", "hf-f64", "sglang", 4, fmt="old")
        out = os.path.join(self.tmp, "out")
        engine_convert.convert(src, "sglang", d + "/config.json", out, tp=4, checkpoint=d,
                               generated=g["generate.tokens"].tolist())
        self.assert_round_trip(g, out, "sglang", True)
        self.assert_compare_passes(os.path.join(d, "golden", "hf-f64"), out)

    def test_vllm_hooks_on_replayed_model(self):
        d, cfg = fixture("tiny-hy3")
        g = golden("tiny-hy3", "hf-bf16")
        tape = vllm_replay.Tape(g, engine_layout.load_weights(d))
        model = vllm_replay.HYV3ForCausalLM(tape, cfg)
        src = os.path.join(self.tmp, "vllm-hooks")
        hooks = vllm_hooks.attach(model, src, tp_rank=0, tp_size=1)
        steps = sorted({int(n.split(".")[1]) for n in g if n.startswith("steps.")})
        with torch.no_grad():
            vllm_replay.run(model, tape, steps)
        hooks.remove()
        files = os.listdir(src)
        self.assertTrue(any("rotary_emb.output.0___layer_id=2" in f for f in files))
        out = os.path.join(self.tmp, "out")
        s = engine_convert.convert(src, "vllm", d + "/config.json", out)
        self.assertEqual(s["steps"], list(range(len(steps) + 1)))
        self.assertEqual(s["files_skipped_known"], 0)  # the hooks write only what is used
        self.assert_round_trip(g, out, "vllm", False)
        self.assert_compare_passes(os.path.join(d, "golden", "hf-bf16"), out)


class PlantedBugs(Case):
    """Conversion bugs planted in the converter's layout functions (hytools/convert_tp.py) must be
    caught."""

    def convert_with(self, fn_name, bad):
        d, cfg, g, src = self.layout("tiny-mt2", "hf-bf16", "sglang", 2)
        out = os.path.join(self.tmp, "out")
        good = getattr(convert_tp, fn_name)
        setattr(convert_tp, fn_name, bad)
        try:
            engine_convert.convert(src, "sglang", d + "/config.json", out, tp=2, checkpoint=d)
        finally:
            setattr(convert_tp, fn_name, good)
        return compare(os.path.join(d, "golden", "hf-bf16"), out, self.tmp)

    def assert_first(self, res, tensor):
        rc, rep, err = res
        self.assertEqual(rc, 1, err)
        self.assertEqual(rep["first_divergence"]["tensor"], tensor)

    def test_k_and_v_swapped(self):
        good = convert_tp.split_qkv

        def bad(t, nq_r, nkv_r, d):
            q, k, v = good(t, nq_r, nkv_r, d)
            return q, v, k
        self.assert_first(self.convert_with("split_qkv", bad), "layers.0.attn.k")

    def test_q_heads_of_ranks_in_wrong_order(self):
        good = convert_tp.gather_heads
        self.assert_first(self.convert_with("gather_heads", lambda s, n, tp: good(s[::-1], n, tp)),
                          "layers.0.attn.q")

    def test_residual_not_added(self):
        self.assert_first(self.convert_with("layer_out", lambda hidden, residual: hidden), "layers.0.out")

    def test_gate_up_swapped_is_refused_by_the_converter(self):
        good = convert_tp.split_gate_up
        with self.assertRaises(engine_convert.ConvertError) as e:
            self.convert_with("split_gate_up", lambda t, w: good(t, w)[::-1])
        self.assertIn("model.layers.0.mlp.gate_up_proj.output", str(e.exception))
        self.assertIn("not [gate | up]", str(e.exception))


class BadInput(Case):
    def run_bad(self, src, config, *extra):
        out = os.path.join(self.tmp, "out")
        rc, so, err = convert_cli("--from", "sglang", src, "--config", config, "--out", out, *extra)
        self.assertEqual(rc, 2, so + err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertFalse(os.path.exists(os.path.join(out, "manifest.json")))
        return err

    def small(self):
        """tiny-hy3 bf16 prefill only (no decode steps), as SGLang TP 2 files."""
        d, cfg = fixture("tiny-hy3")
        g = {n: v for n, v in golden("tiny-hy3", "hf-bf16").items()
             if not n.startswith("steps.") and not n.startswith("generate.")}
        src = os.path.join(self.tmp, "sglang-src")
        engine_layout.write_engine_dump(g, cfg, d, "sglang", 2, src)
        return d, cfg, g, src

    def test_unknown_module_and_ignore(self):
        d, cfg, g, src = self.small()
        torch.save({"value": torch.zeros(3), "meta": {}},
                   os.path.join(src, "step=0___rank=0___dump_index=9___name=layer_start__hidden_states.pt"))
        err = self.run_bad(src, d + "/config.json", "--tp", "2")
        self.assertIn("layer_start__hidden_states", err)
        self.assertIn("--ignore", err)
        rc, _, err = convert_cli("--from", "sglang", src, "--config", d + "/config.json", "--out",
                                 os.path.join(self.tmp, "ok"), "--tp", "2", "--ignore", "^layer_start__")
        self.assertEqual(rc, 0, err)

    def test_qkv_width_does_not_fit_config(self):
        d, cfg, g, src = self.small()
        f = [f for f in os.listdir(src) if "rank=1___" in f and "layers.2.self_attn.qkv_proj.output" in f][0]
        obj = torch.load(os.path.join(src, f))
        obj["value"] = obj["value"][:, :-cfg["head_dim"]].clone()  # one KV head short
        torch.save(obj, os.path.join(src, f))
        err = self.run_bad(src, d + "/config.json", "--tp", "2")
        self.assertIn(f, err)
        self.assertIn("expected q|k|v = (2 + 2·1)·32 = 128", err)

    def test_heads_do_not_fit_config(self):
        d, cfg, g, src = self.small()
        cpath = os.path.join(self.tmp, "config.json")
        with open(cpath, "w") as fh:
            json.dump(dict(cfg, num_key_value_heads=4), fh)
        err = self.run_bad(src, cpath, "--tp", "2")
        self.assertIn("expected", err)
        self.assertIn("(2 heads per rank, --tp 2)", err)

    def test_missing_rank(self):
        d, cfg, g, src = self.small()
        victim = [f for f in os.listdir(src) if "rank=1___" in f and "layers.1.self_attn.attn.output" in f][0]
        os.remove(os.path.join(src, victim))
        err = self.run_bad(src, d + "/config.json", "--tp", "2")
        self.assertIn("layers.1.self_attn.attn.output", err)
        self.assertIn("TP ranks [0] present", err)

    def test_ranks_disagree_on_a_replicated_tensor(self):
        d, cfg, g, src = self.small()
        f = [f for f in os.listdir(src) if "rank=1___" in f and "layers.1.self_attn.o_proj.output" in f][0]
        obj = torch.load(os.path.join(src, f))
        obj["value"] = obj["value"].clone()
        obj["value"].view(-1)[5] += 0.5  # rank 1's copy of the all-reduced output differs
        torch.save(obj, os.path.join(src, f))
        err = self.run_bad(src, d + "/config.json", "--tp", "2")
        self.assertIn(f, err)
        self.assertIn("rank 1 differs from rank 0", err)

    def test_tp_not_given(self):
        d, cfg, g, src = self.small()
        err = self.run_bad(src, d + "/config.json")
        self.assertIn("tp_size 2", err)

    def test_truncated_file(self):
        d, cfg, g, src = self.small()
        f = [f for f in os.listdir(src) if "qkv_proj" in f][0]
        with open(os.path.join(src, f), "r+b") as fh:
            fh.truncate(40)
        err = self.run_bad(src, d + "/config.json", "--tp", "2")
        self.assertIn(f, err)
        self.assertIn("cannot load", err)

    def test_missing_config_field(self):
        d, cfg, g, src = self.small()
        cpath = os.path.join(self.tmp, "config.json")
        with open(cpath, "w") as fh:
            json.dump({k: v for k, v in cfg.items() if k != "moe_intermediate_size"}, fh)
        err = self.run_bad(src, cpath, "--tp", "2")
        self.assertIn("missing field moe_intermediate_size", err)

    def test_decode_step_with_two_tokens(self):
        d, cfg, g, src = self.small()
        # a second request's prefill right after this one's decode steps
        g2 = {n: v for n, v in g.items() if not n.startswith("steps.") and not n.startswith("generate.")}
        engine_layout.write_engine_dump(g2, cfg, d, "sglang", 2, src, first_step=100)
        err = self.run_bad(src, d + "/config.json", "--tp", "2")
        self.assertIn(f"step 100 has {g['input_ids'].numel()} tokens", err)
        self.assertIn("--steps", err)

    def test_core_mode_dump_has_no_module_tensors(self):
        d, cfg = fixture("tiny-hy3")
        w = engine_layout.Writer(os.path.join(self.tmp, "core"), "sglang", 1, "dict")
        w.put(0, 0, "input_ids", torch.tensor([5, 6]), core=True)
        w.put(0, 0, "positions", torch.tensor([0, 1]), core=True)
        err = self.run_bad(os.path.join(self.tmp, "core"), d + "/config.json")
        self.assertIn("DUMPER_NON_INTRUSIVE_MODE=all", err)

    def test_checkpoint_without_weights(self):
        d, cfg, g, src = self.small()
        err = self.run_bad(src, d + "/config.json", "--tp", "2", "--checkpoint", self.tmp)
        self.assertIn("cannot read model.layers.1.mlp.expert_bias", err)

    def test_not_a_dump_directory(self):
        d, cfg = fixture("tiny-hy3")
        err = self.run_bad(self.tmp, d + "/config.json")
        self.assertIn("no .pt dumper files", err)


if __name__ == "__main__":
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: test_engine_convert.py HYORACLE_BINARY [unittest args]", file=sys.stderr)
        sys.exit(2)
    HYORACLE = sys.argv.pop(1)
    unittest.main(verbosity=2)
