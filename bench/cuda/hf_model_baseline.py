# Same-run baseline for model_bench: HF transformers' HYV3ForCausalLM at full Hy-MT2 sizes
# (48 layers, 128 experts, bf16, random weights made on the GPU), batch 1, greedy decode with its
# KV cache: tokens per second for each experts implementation transformers offers (eager,
# grouped_mm, batched_mm, where present) with SDPA attention. CUDA events around the decode steps
# only (the prefill is timed apart). Usage: python3 hf_model_baseline.py [layers] [steps]
import sys, time

import torch
from transformers import HYV3Config, HYV3ForCausalLM

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 48
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 32
cfg = dict(vocab_size=120832, hidden_size=2048, intermediate_size=6912, moe_intermediate_size=768, expert_hidden_dim=768,
           num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=4, head_dim=128, hidden_act="silu",
           max_position_embeddings=262144, rms_norm_eps=1e-5,
           rope_parameters={"rope_theta": 11158840.0, "rope_type": "default"}, qk_norm=True, attention_bias=False,
           num_experts=128, num_experts_per_tok=8, num_shared_experts=1, first_k_dense_replace=1,
           route_norm=True, router_scaling_factor=2.826, enable_moe_fp32_combine=False, enable_lm_head_fp32=True,
           tie_word_embeddings=False, use_cache=True, initializer_range=0.006)
config = HYV3Config(**cfg)
config._attn_implementation = "sdpa"
t0 = time.time()
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    model = HYV3ForCausalLM(config)
model.eval()
for mod in model.modules():  # keep the fp32 buffers transformers declares fp32 (correction bias)
    if hasattr(mod, "e_score_correction_bias"):
        mod.e_score_correction_bias.data = mod.e_score_correction_bias.data.float()
torch.cuda.synchronize()
print(f"HF HYV3ForCausalLM {layers} layers built on the GPU in {time.time() - t0:.1f} s, "
      f"{torch.cuda.memory_allocated() / 1e9:.1f} GB; torch {torch.__version__}", flush=True)

g = torch.Generator(device="cpu").manual_seed(1)


def run(prompt):
    ids = torch.randint(0, 120832, (1, prompt), generator=g).cuda()
    with torch.no_grad():
        out = model(ids, use_cache=True)
        past = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        for _ in range(3):  # warm-up steps
            out = model(tok, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(steps):
            out = model(tok, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        b.record()
        torch.cuda.synchronize()
    return a.elapsed_time(b) * 1e-3 / steps


impls = ["eager", "grouped_mm", "batched_mm"]
for impl in impls:
    try:
        model.set_experts_implementation(impl)
    except Exception as e:  # older transformers: only one implementation
        print(f"| HF {impl:31s} | not available: {type(e).__name__}: {str(e)[:80]}")
        continue
    for prompt in (32,):
        try:
            s = run(prompt)
        except Exception as e:
            print(f"| HF {impl:31s} | failed: {type(e).__name__}: {str(e)[:120]}")
            continue
        print(f"| HF decode {impl + ', KV ' + str(prompt) + '+':25s} | {1 / s:8.1f} tok/s | {s * 1e3:7.3f} ms/token | "
              f"sdpa attention, {steps} steps, batch 1", flush=True)
