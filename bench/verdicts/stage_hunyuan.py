"""The verdicts harness's Hunyuan v1 stages (bench/verdicts/README.md, "Hunyuan v1"):

  hunyuan  hyoracle fixture --preset hunyuan-a13b-layer (transformers' hunyuan_v1_moe), HF's
           HunYuanMoEV1ForCausalLM through hf_worker.py: honest bf16 sdpa + grouped_mm, bf16 eager,
           fp32 eager, and the planted bugs of variants_hunyuan.BUGS on bf16-fast
  cla      hyoracle fixture --preset hunyuan-large-cla-layers (Tencent's code, a self layer and a
           cross layer), hyoracle's independent implementation through tencent_worker.py: honest
           bf16 and fp32, and variants_hunyuan.CLA_BUGS on bf16

Both: a seeded random prompt of --T tokens, --generate greedy tokens, module-only and full dumps,
compares with and without --model against `hyoracle run --precision exact`, under the stage's
deadline (tables are written when it hits). Pure Python (the engines are subprocesses)."""

from __future__ import annotations

import json
import os
import time

import runner
import variants_hunyuan as VH
from pipeline import Pipeline

STAGES = {
    "hunyuan": dict(preset="hunyuan_preset", rows=VH.hunyuan_variants, worker="hf_worker.py",
                    ref="bf16-fast-modules", first=("bf16-fast-modules", "bf16-fast-full"),
                    engine="HF transformers HunYuanMoEV1ForCausalLM (hunyuan_v1_moe semantics)"),
    "cla": dict(preset="cla_preset", rows=VH.cla_variants, worker="tencent_worker.py",
                ref="tencent-bf16-modules", first=("tencent-bf16-modules", "tencent-bf16-full"),
                engine="hyoracle's independent implementation of Tencent's code (tools/hytools/tencent_hunyuan.py), "
                       "bf16 = each op's output rounded to bf16, router fp32; on the GPU when there is one"),
}


def shape_of(cfg):
    """One line describing a Hunyuan v1 config.json's sizes."""
    kinds = VH.layer_kinds(cfg)
    nq, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    d = cfg.get("head_dim") or cfg["hidden_size"] // nq
    cross = [L for L, (_, owns) in enumerate(kinds) if not owns]
    return (f"{cfg['model_type']}: {len(kinds)} layer(s), H {cfg['hidden_size']}, {nq}/{nkv} heads x {d}, "
            f"E {cfg.get('num_experts')} top-{cfg.get('moe_topk')}, I {cfg['intermediate_size']}, "
            f"V {cfg['vocab_size']}, tied {bool(cfg.get('tie_word_embeddings'))}, "
            f"RoPE {cfg.get('rope_parameters') or cfg.get('rope_scaling')}"
            + (f", cross layers {cross} (cla_share_factor {cfg.get('cla_share_factor')})" if cross else ""))


def run(args, dl, stage, h):
    """Run one Hunyuan stage; h is the harness module (fixtures, prompt, tables). Returns
    (exit status, table rows)."""
    st = STAGES[stage]
    preset = getattr(args, st["preset"])
    work = h.fresh(os.path.join(args.work, stage), args.keep)
    ckpt_root = os.path.join(args.work, "ckpt")
    os.makedirs(os.path.join(ckpt_root, "logs"), exist_ok=True)
    t = time.time()
    ckpt, fs = h.make_fixture(args, ckpt_root, dl, preset=preset, moe_layers=None)
    runner.log(f"{stage}: checkpoint {ckpt} ({'reused' if fs == 0 else f'made in {fs:.0f} s'})", dl.t0)
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    rows = st["rows"](cfg)
    if args.variants:
        keep = set(args.variants.split(",")) | set(st["first"])
        rows = [r for r in rows if r["variant"] in keep]
    tokens = h.random_prompt(args.T, cfg["vocab_size"], args.seed)
    p = Pipeline(name=stage, hy=args.hyoracle, ckpt=ckpt, ckpt_label=os.path.basename(ckpt), tokens=tokens,
                 generate=args.generate, rows=rows, dump_dir=os.path.join(work, "dumps"), work=work, args=args,
                 deadline=dl, ref_source=st["ref"], worker=st["worker"])
    p.timings["fixture"] = round(time.time() - t, 1)
    p.run()
    notes = [f"Checkpoint: hyoracle fixture --preset {preset} --seed {args.seed} ({shape_of(cfg)}). "
             f"Prompt: {args.T} random tokens (seed {args.seed}), {args.generate} greedy tokens "
             f"({args.generate - 1} decode steps recorded).",
             f"Engine: {st['engine']}.",
             f"Baseline: hyoracle run --precision exact --tokens-from {st['ref']} --generate {args.generate} "
             "--dump-steps. compare --model: teacher forcing; without: model-free budgets.",
             f"compare --fail-fast for: {args.fail_fast}.",
             f"Timings (s): {json.dumps(p.timings)}"] + p.events
    title = f"Verdicts at realistic scale, Hunyuan v1 ({preset}, T={args.T})"
    return h.finish(args, f"verdicts-{stage}", title, rows, p, notes)
