#!/usr/bin/env python3
"""Unit tests of the verdicts harness's pure-Python parts (no torch, no GPU):

    python3 bench/verdicts/test_verdicts.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import pack  # noqa: E402
import table  # noqa: E402
import variants as V  # noqa: E402
import variants_hunyuan as VH  # noqa: E402

MT2_LAYER = {"num_hidden_layers": 3, "first_k_dense_replace": 1, "num_attention_heads": 32, "vocab_size": 4096}


def fixture_cfg(name):
    return json.load(open(os.path.join(ROOT, "fixtures", name, "config.json")))


def report(verdict, first=None, tensors=()):
    return {"format": "hyoracle.report", "version": 1, "verdict": verdict, "exit_code": 0, "error": None,
            "first_divergence": {"tensor": first, "layer": 0, "reason": "r"} if first else None,
            "first_total_divergence": None, "tensors": list(tensors), "stats": {"seconds": 1.5}}


class Expectations(unittest.TestCase):
    def test_first_moe_layer(self):
        self.assertEqual(V.first_moe_layer(MT2_LAYER), 1)
        self.assertEqual(V.first_moe_layer(fixture_cfg("tiny-mt2")), 1)
        self.assertEqual(V.first_moe_layer(fixture_cfg("tiny-hy3")), 1)
        self.assertEqual(V.first_moe_layer({"mlp_layer_types": ["dense", "dense", "sparse"], "num_hidden_layers": 3}), 2)
        with self.assertRaises(ValueError):
            V.first_moe_layer({"num_hidden_layers": 2, "first_k_dense_replace": 2})

    def test_expected_tensors(self):
        want = {
            ("decode-pos-behind", "full"): "steps.1.layers.0.attn.q_rope",
            ("decode-pos-behind", "modules"): "steps.1.layers.0.attn.out",
            ("kv-cache-drop-last", "full"): "steps.2.layers.0.attn.context",
            ("kv-cache-drop-last", "modules"): "steps.2.layers.0.attn.out",
            ("router-bias-bf16", "full"): "layers.1.moe.topk_ids",
            ("router-bias-bf16", "modules"): "layers.1.moe.topk_ids",
            ("expert-weights", "full"): "layers.1.moe.routed_out",
            ("expert-weights", "modules"): "layers.1.moe.routed_out",
            ("combine-weights", "full"): "layers.1.moe.routed_out",
            ("combine-weights", "modules"): "layers.1.moe.routed_out",
            ("head-scale", "full"): "layers.0.attn.out",
            ("head-scale", "modules"): "layers.0.attn.out",
        }
        for cfg in (MT2_LAYER, fixture_cfg("tiny-mt2"), fixture_cfg("tiny-hy3")):
            for (bug, kind), t in want.items():
                self.assertEqual(V.expected_tensor(bug, kind, cfg), t, (bug, kind))
        self.assertEqual(set(V.BUGS), {b for b, _ in want})
        self.assertEqual(V.expected_tensor("expert-scale", "modules", MT2_LAYER), "layers.1.moe.routed_out")

    def test_module_only_names_hold_the_module_expectations(self):
        # every expected tensor of a module-only dump must be a tensor such a dump holds
        mod = {"embed", "final_norm", "logits"} | {f"layers.{L}.{s}" for L in range(3) for s in
                                                   ["input_norm", "attn.q_norm", "attn.k_norm", "attn.out",
                                                    "post_norm", "mlp.out", "out", "moe.router_logits",
                                                    "moe.topk_ids", "moe.topk_weights", "moe.routed_out",
                                                    "moe.shared_out"]}
        for bug in V.BUGS:
            t = V.expected_tensor(bug, "modules", MT2_LAYER)
            base = t.split(".", 2)[2] if t.startswith("steps.") else t
            self.assertIn(base, mod, bug)

    def test_head_index(self):
        self.assertEqual(V.head_index(MT2_LAYER), 5)
        self.assertEqual(V.head_index(fixture_cfg("tiny-mt2")), 5)
        self.assertEqual(V.head_index(fixture_cfg("tiny-hy3")), 3)

    def test_grid(self):
        g = V.sweep_grid()
        self.assertEqual(len(g), 8)
        self.assertEqual(g[0], 0.001)
        self.assertEqual(g[-1], 0.3)
        self.assertTrue(all(a < b for a, b in zip(g, g[1:])))
        self.assertEqual(len(set(V.sweep_variant("head-scale", e, "full") for e in g)), 8)

    def test_rows(self):
        rows = V.full_variants(MT2_LAYER, cuda=True)
        self.assertEqual(len(rows), 6 + 2 + 12)
        self.assertEqual(len({r["variant"] for r in rows}), len(rows))
        self.assertEqual(sum(r["expected"] == V.PASS for r in rows), 8)
        self.assertEqual(len(V.full_variants(MT2_LAYER, cuda=False)), 18)
        bugs = [r for r in rows if r["role"] == "bug"]
        self.assertTrue(all(r["config"] == "bf16-fast" for r in bugs))
        self.assertEqual(next(r for r in bugs if r["bug"] == "head-scale")["params"],
                         {"layer": 0, "head": 5, "eps": 0.03})
        self.assertEqual(next(r for r in bugs if r["bug"] == "expert-weights")["params"]["expert"], "auto")
        tiny = V.tiny_variants(fixture_cfg("tiny-hy3"))
        self.assertEqual([r["variant"] for r in tiny[:2]], ["honest-modules", "honest-full"])
        self.assertEqual(len(tiny), 14)
        sw = V.sweep_variants(MT2_LAYER, V.sweep_grid())
        self.assertEqual(len(sw), 2 + 2 * 8 * 2)
        self.assertEqual(sorted({V.priority(r, m) for r in rows for m in ("model", "nomodel")}), [0, 1, 2, 3])
        honest_fast = rows[0]
        self.assertEqual((V.priority(honest_fast, "model"), V.priority(honest_fast, "nomodel")), (0, 0))


class Judging(unittest.TestCase):
    def test_judge(self):
        self.assertEqual(table.judge("pass", "pass", None), "OK")
        self.assertEqual(table.judge("pass", "fail", "x"), "WRONG")
        self.assertEqual(table.judge("pass", "incomplete", None), "WRONG")
        self.assertEqual(table.judge("layers.0.attn.out", "fail", "layers.0.attn.out"), "OK")
        self.assertEqual(table.judge("layers.0.attn.out", "fail", "layers.1.out"), "WRONG")
        self.assertEqual(table.judge("layers.0.attn.out", "pass", None), "WRONG")
        self.assertEqual(table.judge("layers.0.attn.out", None, None), "NOT RUN")

    def test_read_report_and_rows(self):
        with tempfile.TemporaryDirectory() as d:
            p1 = os.path.join(d, "a.json")
            json.dump(report("fail", "layers.0.attn.out", [
                {"name": "layers.0.attn.out", "metrics": {"rel_l2": 0.02, "token_rel_l2": [0.1]},
                 "local_metrics": {"rel_l2": 0.004}},
                {"name": "layers.1.moe.routed_out", "metrics": {"rel_l2": 0.05}, "local_metrics": None}]), open(p1, "w"))
            r = table.read_report(p1)
            self.assertEqual((r["verdict"], r["first"], r["seconds"]), ("fail", "layers.0.attn.out", 1.5))
            self.assertEqual(table.read_report(os.path.join(d, "none.json"))["error"], "no report")
            open(os.path.join(d, "bad.json"), "w").write("{")
            self.assertIn("unreadable", table.read_report(os.path.join(d, "bad.json"))["error"])
            self.assertEqual(table.tensor_rel_l2(p1, "layers.0.attn.out", True), (0.004, "local"))
            self.assertEqual(table.tensor_rel_l2(p1, "layers.0.attn.out", False), (0.02, "total"))
            self.assertEqual(table.tensor_rel_l2(p1, "layers.1.moe.routed_out", True), (0.05, "total"))
            self.assertEqual(table.tensor_rel_l2(p1, "nope", True)[0], None)

            vs = [dict(variant="h", role="honest", kind="full", config="bf16-fast", expected="pass"),
                  dict(variant="b", role="bug", kind="full", config="bf16-fast", expected="layers.0.attn.out"),
                  dict(variant="inert", role="bug", bug="router-bias-bf16", kind="full", config="bf16-fast",
                       expected="layers.1.moe.topk_ids"),
                  dict(variant="broken", role="bug", kind="modules", config="bf16-fast", expected="layers.0.attn.out"),
                  dict(variant="missed", role="bug", bug="head-scale", kind="full", config="bf16-fast",
                       expected="layers.0.attn.out")]
            reps = {("h", "model"): {"verdict": "pass", "first": None},
                    ("h", "nomodel"): {"verdict": "fail", "first": "logits"},
                    ("b", "model"): r, ("b", "nomodel"): {"verdict": "fail", "first": "layers.1.out"},
                    ("inert", "model"): {"verdict": "pass"}, ("inert", "nomodel"): {"verdict": "pass"}}
            notes = {"b": {"ok": True, "hf_first_difference": {"tensor": "layers.0.attn.out"}, "effect_rel_l2": 0.01},
                     "inert": {"ok": True, "hf_first_difference": None, "inert": True},
                     "broken": {"ok": False, "error": "Traceback: boom"},
                     "missed": {"ok": True, "hf_first_difference": None, "inert": True}}
            reps[("missed", "model")] = {"verdict": "pass"}
            # compares cut by time read NOT RUN, not ERROR: still running at the deadline, or killed at their limit
            vs += [dict(variant="late", role="honest", kind="full", config="bf16-fast", expected="pass")]
            reps[("late", "model")] = {"verdict": None, "first": None, "error": table.NOT_FINISHED}
            reps[("late", "nomodel")] = {"verdict": None, "first": None, "exit": "timeout", "error": "compare exit timeout"}
            rows = table.make_rows(vs, reps, notes)
            self.assertEqual((rows[-1]["model"]["result"], rows[-1]["nomodel"]["result"]), ("NOT RUN", "NOT RUN"))
            rows = rows[:-1]
            res = {x["variant"]: (x["model"]["result"], x["nomodel"]["result"]) for x in rows}
            self.assertEqual(res, {"h": ("OK", "WRONG"), "b": ("OK", "WRONG"), "inert": ("OK", "OK"),
                                   "broken": ("ERROR", "ERROR"), "missed": ("ERROR", "ERROR")})
            rows = rows[:4]
            self.assertEqual(table.exit_status(rows), 1)
            self.assertEqual(table.exit_status(rows[:3]), 0)
            self.assertEqual(table.exit_status(rows[:3], "nomodel"), 1)
            md = table.write_tables(d, "t", "title", rows, ["a note"])
            self.assertIn("| b | full | `layers.0.attn.out` | fail `layers.0.attn.out` | **OK** |", md)
            self.assertIn("With --model: 3/4 OK. Without --model: 1/4 OK.", md)
            j = json.load(open(os.path.join(d, "t.json")))
            self.assertEqual((j["ok_with_model"], j["total"]), (3, 4))
            self.assertIn("inert", table.text_table(rows))


class Bisection(unittest.TestCase):
    def run_search(self, n, threshold):
        b = table.Bisect(n)
        calls = 0
        while True:
            i = b.next()
            if i is None:
                break
            calls += 1
            self.assertNotIn(i, b.tried)
            b.record(i, threshold is not None and i >= threshold)
        return b, calls

    def test_every_threshold(self):
        for n in range(1, 10):
            for thr in list(range(n)) + [None]:
                b, calls = self.run_search(n, thr)
                self.assertEqual(b.result, thr, (n, thr))
                self.assertLessEqual(calls, 1 + max(1, n).bit_length(), (n, thr))
                if thr is not None and thr > 0:
                    self.assertEqual(b.lo, thr - 1)

    def test_frontier_rows(self):
        grid = V.sweep_grid()
        b, _ = self.run_search(len(grid), 3)
        rows = table.frontier_rows({("head-scale", "full", "model"): b}, grid,
                                   {("head-scale", "full", "model"): (0.004, "local")},
                                   {("head-scale", grid[3], "full"): 0.008})
        r = rows[0]
        self.assertEqual(r["smallest_detected_eps"], grid[3])
        self.assertEqual(r["largest_undetected_eps"], grid[2])
        self.assertAlmostEqual(r["effect_in_floor_units"], 2.0)
        md = table.frontier_markdown(rows, 256)
        self.assertIn("| head-scale | full | --model |", md)


class HarnessParts(unittest.TestCase):
    def test_args(self):
        a = harness.parse_args(["full", "--out", "/tmp/x"])
        self.assertEqual((a.T, a.generate, a.jobs, a.compare_threads, a.fail_fast), (1024, 5, 4, 4, "bugs"))
        a = harness.parse_args(["tiny", "sweep", "--out", "/tmp/x", "--sweep-n", "6", "--cuda", "off"])
        self.assertEqual((a.stages, a.sweep_n, a.cuda), (["tiny", "sweep"], 6, "off"))
        with self.assertRaises(SystemExit):
            harness.parse_args(["bogus", "--out", "/tmp/x"])

    def test_prompt(self):
        p = harness.random_prompt(1024, 4096, 7)
        self.assertEqual(p, harness.random_prompt(1024, 4096, 7))
        self.assertNotEqual(p, harness.random_prompt(1024, 4096, 8))
        self.assertTrue(all(3 <= x < 4096 for x in p))
        self.assertEqual(len(p), 1024)

    def test_cuda_built(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "tools"))
            hy = os.path.join(d, "tools", "hyoracle")
            self.assertFalse(harness.cuda_built(hy))
            with open(os.path.join(d, "CMakeCache.txt"), "w") as f:
                f.write("HYORACLE_CUDA:BOOL=ON\n")
            self.assertFalse(harness.cuda_built(hy))          # CUDA not enabled (no nvcc found)
            os.makedirs(os.path.join(d, "CMakeFiles", "3.28.3"))
            open(os.path.join(d, "CMakeFiles", "3.28.3", "CMakeCUDACompiler.cmake"), "w").close()
            self.assertTrue(harness.cuda_built(hy))
            with open(os.path.join(d, "CMakeCache.txt"), "w") as f:
                f.write("HYORACLE_CUDA:BOOL=OFF\n")
            self.assertFalse(harness.cuda_built(hy))

    def test_tiny_tokens(self):
        toks, g = harness.tiny_tokens(os.path.join(ROOT, "fixtures", "tiny-mt2"))
        self.assertEqual(toks, [5, 311, 77, 160, 9, 289, 33, 250, 101])
        self.assertEqual(g, 5)

    def test_pack_slim(self):
        self.assertEqual(pack.slim({"a": [{"token_rel_l2": [1], "b": 2}], "token_rel_l2": 3}), {"a": [{"b": 2}]})


# The full-width Hunyuan presets' layer structure (tools/fixture_presets.cpp): one MoE layer under
# transformers' semantics; a self layer and its cross layer under Tencent's.
A13B_LAYER = {"model_type": "hunyuan_v1_moe", "num_hidden_layers": 1, "num_attention_heads": 32, "vocab_size": 4096}
LARGE_CLA = {"model_type": "hunyuan", "num_hidden_layers": 2, "use_cla": True, "cla_share_factor": 2, "num_experts": 4,
             "num_attention_heads": 80, "vocab_size": 4096}


class HunyuanExpectations(unittest.TestCase):
    def test_layer_structure(self):
        self.assertEqual(VH.first_moe_layer(A13B_LAYER), 0)
        self.assertEqual(VH.first_cross_layer(A13B_LAYER), (None, None))
        self.assertEqual(VH.first_cross_layer(LARGE_CLA), (1, 0))
        self.assertEqual(VH.first_cross_layer(fixture_cfg("gen-tiny-hunyuan-large")), (1, 0))
        self.assertEqual(VH.first_moe_layer(fixture_cfg("gen-tiny-hunyuan-a13b")), 0)

    def test_expected_tensors(self):
        want = {
            ("qk-norm-before-rope", "full"): "layers.0.attn.q_rope",
            ("qk-norm-before-rope", "modules"): "layers.0.attn.q_norm",
            ("rope-no-ntk-alpha", "full"): "layers.0.attn.q_rope",
            ("rope-no-ntk-alpha", "modules"): "layers.0.attn.q_norm",
            ("topk-no-renorm", "full"): "layers.0.moe.topk_weights",
            ("topk-no-renorm", "modules"): "layers.0.moe.topk_weights",
            ("shared-mlp-dropped", "full"): "layers.0.moe.shared_out",
            ("shared-mlp-dropped", "modules"): "layers.0.moe.shared_out",
            ("decode-pos-behind", "full"): "steps.1.layers.0.attn.q_rope",
            ("decode-pos-behind", "modules"): "steps.1.layers.0.attn.q_norm",
            ("router-logits-bf16", "full"): VH.OBSERVE,
            ("router-logits-bf16", "modules"): VH.OBSERVE,
        }
        for cfg in (A13B_LAYER, fixture_cfg("gen-tiny-hunyuan-a13b")):
            for (bug, kind), t in want.items():
                self.assertEqual(VH.expected_tensor(bug, kind, cfg), t, (bug, kind))
        self.assertEqual(set(VH.BUGS), {b for b, _ in want})
        cla = {("cla-k-after-norm", "full"): "layers.1.attn.k_rope",
               ("cla-k-after-norm", "modules"): "layers.1.attn.k_norm",
               ("top1-renorm", "full"): "layers.0.moe.topk_weights",
               ("top1-renorm", "modules"): "layers.0.moe.topk_weights"}
        for cfg in (LARGE_CLA, fixture_cfg("gen-tiny-hunyuan-large")):
            for (bug, kind), t in cla.items():
                self.assertEqual(VH.expected_tensor(bug, kind, cfg), t, (bug, kind))
        self.assertEqual(set(VH.CLA_BUGS), {b for b, _ in cla})
        with self.assertRaises(ValueError):      # no cross layer to hand the wrong keys to
            VH.expected_tensor("cla-k-after-norm", "full", A13B_LAYER)
        with self.assertRaises(ValueError):
            VH.expected_tensor("top1-renorm", "bogus", LARGE_CLA)

    def test_module_expectations_are_module_tensors(self):
        mods = {"input_norm", "attn.q_norm", "attn.k_norm", "attn.out", "post_norm", "mlp.out", "out",
                "moe.router_logits", "moe.topk_ids", "moe.topk_weights", "moe.routed_out", "moe.shared_out"}
        for bugs, cfg in ((VH.BUGS, A13B_LAYER), (VH.CLA_BUGS, LARGE_CLA)):
            for bug in bugs:
                t = VH.expected_tensor(bug, "modules", cfg)
                if t == VH.OBSERVE:
                    continue
                base = t.split(".", 2)[2] if t.startswith("steps.") else t
                self.assertIn(base.split(".", 2)[2], mods, bug)

    def test_rows(self):
        rows = VH.hunyuan_variants(A13B_LAYER)
        self.assertEqual(len(rows), 6 + 2 * len(VH.BUGS))
        self.assertEqual(len({r["variant"] for r in rows}), len(rows))
        self.assertEqual({r["config"] for r in rows if r["role"] == "bug"}, {"bf16-fast"})
        self.assertEqual({r["source"] for r in rows}, {"hf"})
        cla = VH.cla_variants(LARGE_CLA)
        self.assertEqual(len(cla), 4 + 2 * len(VH.CLA_BUGS))
        self.assertEqual({r["source"] for r in cla}, {"tencent"})
        self.assertEqual({r["config"] for r in cla if r["role"] == "bug"}, {"tencent-bf16"})
        self.assertEqual({r["config"] for r in cla}, set(VH.TENCENT_CONFIGS))
        first = [r for r in cla if r["role"] == "honest" and r["config"] == "tencent-bf16"]
        self.assertEqual({V.priority(r, m) for r in first for m in ("model", "nomodel")}, {0})
        self.assertTrue(set(VH.all_configs()) >= set(V.HF_CONFIGS) | set(VH.TENCENT_CONFIGS))

    def test_observe_rows_are_recorded_not_asserted(self):
        self.assertEqual(table.judge(VH.OBSERVE, "fail", "layers.0.moe.topk_ids"), "SEEN")
        self.assertEqual(table.judge(VH.OBSERVE, "pass", None), "SEEN")
        self.assertEqual(table.judge(VH.OBSERVE, None, None), "NOT RUN")
        rows = [{"model": {"result": "SEEN"}, "nomodel": {"result": "WRONG"}},
                {"model": {"result": "OK"}, "nomodel": {"result": "OK"}}]
        self.assertEqual(table.exit_status(rows), 0)
        self.assertEqual(table.exit_status(rows, "nomodel"), 1)

    def test_args(self):
        a = harness.parse_args(["hunyuan", "cla", "--out", "/tmp/x"])
        self.assertEqual((a.stages, a.hunyuan_preset, a.cla_preset),
                         (["hunyuan", "cla"], "hunyuan-a13b-layer", "hunyuan-large-cla-layers"))


if __name__ == "__main__":
    unittest.main(verbosity=1)
