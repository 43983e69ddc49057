// attention_variants.h: other tilings of the two tensor-core attention kernels of
// cuda/attention.h, built only for the benchmarks (bench_cuda_attention_variants) and checked by
// tests/cuda/attention_test.cpp against the reference like the library's kernels.
// bf16/fp16, head_dim 128 only; same contract and rounding as attention_prefill / attention_decode.
// By name (attention_variants()):
// "prefill-wW[-m2]-kN-sS": the prefill kernel (cuda/attention_prefill.cuh) with W warps of one
//   (with -m2 two) 16-row tiles, N-key tiles, S shared-memory stages;
// "decode-FORM-bB": the split-KV decode (cuda/attention_decode.cuh), FORM regs (K/V straight
//   from global memory into mma fragments, attention_variants.cu) or ring3/ring4 (per-warp
//   cp.async rings of 3/4 stages), with about B blocks per SM.
// attention_prefill is prefill-w4-m2-k64-s2 at head_dim 128, attention_decode decode-ring3-b1.
#pragma once
#include <string>
#include <vector>

#include "cuda/device.h"

namespace hyoracle::bench {
const std::vector<std::string>& attention_variants();
// Runs `variant` (fail() for an unknown name, T = float, head_dim other than 128, or buffers the
// tensor-core kernels cannot take).
template <class T>
void attention_variant(const std::string& variant, const cuda::DeviceTensor<T>& q, const cuda::DeviceTensor<T>& k_cache,
                       const cuda::DeviceTensor<T>& v_cache, int64_t Tc, const cuda::DeviceTensor<int64_t>& q_pos,
                       cuda::DeviceTensor<T>& context);
}  // namespace hyoracle::bench
