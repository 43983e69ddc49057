# Same-run baseline for attention_bench: torch scaled_dot_product_attention (bf16, native GQA,
# causal prefill; decode T=1 unmasked since every key is visible), the same shapes and the same
# timing conventions (median of CUDA-event timings, 256 MB L2 flush before each repetition).
# Which backend the default dispatch takes is read off the kernel names in a profiler trace; each
# explicit backend (cuDNN, flash, efficient) is also timed where it accepts the case.
# Usage: python3 sdpa_baseline.py [--out FILE]  (FILE: "<case key> <median s> <backend>" lines
# for attention_bench FILE).
import sys, warnings
warnings.filterwarnings("ignore")  # SDPA's backend-selection warnings: the chosen backend is printed instead
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

flush = torch.empty(64 << 20, dtype=torch.int32, device="cuda")

def t(fn, n):
    for _ in range(3): fn()
    ts = []
    for _ in range(n):
        flush.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b) * 1e-3)
    return sorted(ts)[len(ts) // 2]

def kernel_names(fn):
    from torch.profiler import profile, ProfilerActivity
    fn(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        fn(); torch.cuda.synchronize()
    return sorted({e.key for e in p.key_averages() if e.device_type is not None and "DeviceType.CUDA" in str(e.device_type)})

def backend_of(names):
    s = " ".join(names).lower()
    if "cudnn" in s or "sm90_flash" in s or "fprop" in s: return "cudnn"
    if "flash" in s: return "flash"
    if "fmha" in s or "efficient" in s or "mem_eff" in s: return "efficient"
    return "math?"

out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
lines = []
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}")
nq, nkv, d = 32, 4, 128
cases = [("prefill4096", 4096, 0), ("prefill1024", 1024, 0), ("decode4096", 1, 4095), ("decode32768", 1, 32767),
         ("decode131072", 1, 131071)]
for key, T, past in cases:
    Tc = T + past
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, nq, T, d, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(1, nkv, Tc, d, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(1, nkv, Tc, d, device="cuda", dtype=torch.bfloat16, generator=g)
    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=True)
    pairs = sum(past + i + 1 for i in range(T))
    flops, bytes_ = 4.0 * nq * d * pairs, 2.0 * (2 * Tc * nkv * d + 2 * T * nq * d)
    roof = max(flops / 989e12, bytes_ / 3.35e12)
    n = 20 if T > 1 else 100
    try:
        names = kernel_names(fn)
    except Exception as e:
        names = [f"profiler failed: {e}"]
    default_backend = backend_of(names)
    s = t(fn, n)
    name = f"attention prefill T={T}" if T > 1 else f"attention decode KV={Tc}"
    print(f"| SDPA default ({default_backend:9s}) {name:30s} | {s*1e6:10.1f} us | {flops/s/1e12:7.2f} TF/s | {100*roof/s:5.1f}% | {bytes_/s/1e12:5.2f} TB/s | kernels: {', '.join(n[:60] for n in names)[:300]}")
    lines.append(f"{key} {s:.9e} {default_backend}")
    for label, be in [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                      ("efficient", SDPBackend.EFFICIENT_ATTENTION)]:
        try:
            with sdpa_kernel([be]):
                se = t(fn, n)
            print(f"|   SDPA {label:9s} {name:38s} | {se*1e6:10.1f} us | {flops/se/1e12:7.2f} TF/s | {100*roof/se:5.1f}%")
        except Exception as e:
            print(f"|   SDPA {label:9s} {name:38s} | not available: {str(e).splitlines()[0][:120]}")
    del q, k, v
    torch.cuda.empty_cache()
if out:
    open(out, "w").write("\n".join(lines) + "\n")
    print(f"wrote {out}")
