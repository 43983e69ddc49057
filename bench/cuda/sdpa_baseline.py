# Same-run baseline for cuda_bench's attention cases: torch scaled_dot_product_attention (bf16,
# causal prefill, unmasked decode, native GQA) on the same shapes, median of CUDA-event timings, with % of roofline.
import torch, torch.nn.functional as F

def t(fn, n):
    for _ in range(3): fn()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b) * 1e-3)
    return sorted(ts)[len(ts) // 2]

nq, nkv, d = 32, 4, 128
for T, past in [(4096, 0), (1, 32767)]:
    Tc = T + past
    q = torch.randn(1, nq, T, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, nkv, Tc, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, nkv, Tc, d, device="cuda", dtype=torch.bfloat16)
    # decode (T=1, all keys visible): no mask; prefill: causal. GQA natively (enable_gqa).
    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=True)
    s = t(fn, 20 if T > 1 else 100)
    pairs = sum(past + i + 1 for i in range(T))
    flops, bytes_ = 4.0 * nq * d * pairs, 2.0 * (2 * Tc * nkv * d + 2 * T * nq * d)
    roof = max(flops / 989e12, bytes_ / 3.35e12)
    name = f"attention prefill T={T}" if T > 1 else f"attention decode KV={Tc}"
    print(f"| SDPA {name:39s} | {s*1e6:10.1f} us | {flops/s/1e12:7.2f} TF/s | {100*roof/s:5.1f}% | torch {torch.__version__}")
