#!/usr/bin/env python3
"""hf_moe_baseline.py: HF transformers' HYV3 MoE block (HYV3MoE: router, routed experts, shared
expert) at the Hy-MT2 sizes (H 2048, 128 experts, top-8, I 768, 1 shared expert), bf16, random
weights, timed with each experts implementation transformers offers ("eager", "batched_mm",
"grouped_mm"; selected through config._experts_implementation, which HYV3Experts' forward reads on
every call), for decode T = 1 and prefill T = 4096. The same-run baseline for moe_bench.

Timing: CUDA events around each call, median; a 256 MB memset before each repetition flushes the
L2 (as bench_util.h does for ours); T = 1 is also timed as a replayed CUDA graph where capture
works, and with the read-only flush (a sum over a never-written 256 MB buffer, so no dirty lines
are left in L2), as moe_bench's "(read flush)" rows. Each implementation's output is checked against the eager one before timing.
Prints time, TF/s, % of the H100 roofline (max(FLOPs/989 TF/s, bytes/3.35 TB/s), bench_util.h's
formula) and, for decode, % of the copy bandwidth measured in the same run.
Usage: python3 bench/cuda/hf_moe_baseline.py [--reps N]
"""
import argparse
import statistics
import sys

import torch

H, I, E, K_TOP = 2048, 768, 128, 8
PEAK_FLOPS, PEAK_BYTES = 989e12, 3.35e12


def build_moe(impl):
    from transformers.models.hy_v3 import modeling_hy_v3 as m

    cfg = m.HYV3Config(hidden_size=H, intermediate_size=6912, moe_intermediate_size=I, num_experts=E,
                       num_experts_per_tok=K_TOP, num_shared_experts=1, num_hidden_layers=2, num_attention_heads=32,
                       num_key_value_heads=4, head_dim=128, enable_moe_fp32_combine=False)
    cfg._experts_implementation = impl
    torch.manual_seed(0)
    moe = m.HYV3MoE(cfg)
    with torch.no_grad():
        for name, p in moe.named_parameters():
            fan_in = p.shape[-1]
            p.copy_(torch.randn_like(p) * (3.0 if "gate.weight" in name else 1.0) / fan_in ** 0.5)
    moe = moe.to("cuda", torch.bfloat16).eval()
    moe.e_score_correction_bias = (torch.randn(E) * 0.05).float().cuda()  # kept fp32, as in HF loading
    return moe, cfg


def counts(T, ids):
    used = torch.unique(ids).numel()
    flops = 2.0 * T * (K_TOP + 1) * 3 * I * H + 2.0 * T * E * H
    bytes_ = 2.0 * (used + 1) * 3 * I * H + 2.0 * E * H + 2.0 * 2 * T * H
    return used, flops, bytes_


def time_fn(fn, reps, flush):
    """flush: a callable run before each repetition (outside the events)."""
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        fn()
    ts = []
    for i in range(reps):
        flush(i)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3)
    return statistics.median(ts)


def graphed(fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("hf_moe_baseline: no CUDA device; nothing measured")
        return 0
    import transformers
    from transformers.integrations import moe as hf_moe

    print(f"hf_moe_baseline on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    known = list(getattr(hf_moe.ALL_EXPERTS_FUNCTIONS, "_global_mapping", {}).keys())
    print(f"  registered experts implementations: {known} (+ eager)")
    flush_buf = torch.empty(64 << 20, dtype=torch.int32, device="cuda")
    read_buf = torch.full((64 << 20,), 1.0, dtype=torch.float32, device="cuda")
    memset_flush = lambda i: flush_buf.fill_(i & 0xFF)
    read_flush = lambda i: read_buf.sum()
    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 4 / time_fn(lambda: dst.copy_(src), 10, memset_flush)
    print(f"  measured device copy bandwidth {bw / 1e12:.2f} TB/s (read + write)")
    moe, cfg = build_moe("eager")
    rows = []
    with torch.no_grad():
        for T in (1, 4096):
            x = torch.randn(1, T, H, device="cuda").to(torch.bfloat16)
            _, _, ids = moe.gate(x.view(-1, H), moe.e_score_correction_bias)
            used, flops, bytes_ = counts(T, ids)
            roof = max(flops / PEAK_FLOPS, bytes_ / PEAK_BYTES)
            cfg._experts_implementation = "eager"
            ref = moe(x).float()
            for impl in ("eager", "batched_mm", "grouped_mm"):
                if impl == "batched_mm" and T > 1024:
                    # batched_mm gathers one [2I, H] weight copy per (token, slot): 32768 x 6 MB at T = 4096.
                    rows.append((T, impl, None, "skipped: would gather T*k expert weight copies"))
                    continue
                cfg._experts_implementation = impl
                try:
                    out = moe(x).float()
                    err = ((out - ref).norm() / ref.norm()).item()
                    if not err < 2e-2:
                        rows.append((T, impl, None, f"WRONG vs eager (rel-L2 {err:.2e}): not timed"))
                        continue
                    fn = lambda: moe(x)
                    reps = args.reps if T == 1 else max(5, args.reps // 5)
                    t = time_fn(fn, reps, memset_flush)
                    note = f"eager-mode launches, rel-L2 vs eager {err:.1e}"
                    best = fn
                    if T == 1:
                        try:
                            g = graphed(fn)
                            tg = time_fn(g, reps, memset_flush)
                            if tg < t:
                                t, best, note = tg, g, f"CUDA graph replay, rel-L2 vs eager {err:.1e}"
                        except Exception as e:  # noqa: BLE001 - report and keep the eager timing
                            note += f"; graph capture failed ({type(e).__name__})"
                            torch.cuda.synchronize()
                    rows.append((T, impl, t, note + "; memset flush", flops, bytes_, roof, used))
                    if T == 1:
                        tr = time_fn(best, reps, read_flush)
                        rows.append((T, impl, tr, note + "; read flush", flops, bytes_, roof, used))
                except Exception as e:  # noqa: BLE001
                    rows.append((T, impl, None, f"failed: {type(e).__name__}: {str(e)[:120]}"))
    print("\n| HF HYV3MoE (bf16) | time | TF/s | %roof | %copy-bw | note")
    for r in rows:
        if r[2] is None:
            print(f"| T={r[0]:<5} {r[1]:<11} | - | - | - | - | {r[3]}")
            continue
        T, impl, t, note, flops, bytes_, roof, used = r
        print(f"| T={T:<5} {impl:<11} | {t * 1e6:9.1f} us | {flops / t / 1e12:7.2f} | {100 * roof / t:5.1f}% | "
              f"{100 * bytes_ / t / bw:5.1f}% | {note}; {used} experts used")
    return 0


if __name__ == "__main__":
    sys.exit(main())
