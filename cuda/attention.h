// attention.h: GQA causal attention over a KV cache on the GPU (docs/model.md §4.4, steps 5-9).
//
//   S[n, i, j] = (q[i, n, :] · k[j, m, :]) · d^(-1/2),   m = n / g,  g = nq / nkv   (fp32)
//   P[n, i, :] = softmax_j(S[n, i, j]) over keys j < Tc with j <= q_pos[i]
//   context[i, n·d + c] = T( Σ_j P[n, i, j] · v[j, m, c] )
// q [T, nq, d] (after q_norm and RoPE), k and v: the first Tc rows of the cache [cap, nkv, d]
// (row j holds position j), q_pos [T] -> context [T, nq·d], heads concatenated. Any T >= 0 and
// Tc >= 0 (past > 0 / chunked prefill: the queries sit at q_pos, the keys at 0..Tc-1); a row that
// sees no key gets 0. Online (flash-style) softmax with fp32 running max and sum.
//
// Three kernels, all of this contract, one file each:
// - attention_simt (attention_simt.cu), fp32 T, and head dims other than 16/32/48/64/128: exact
//   fp32 arithmetic (scores, probabilities and sums in fp32, expf; the oracle path: no TF32, no
//   rounded P). 1 <= d <= 256, nq / nkv <= 32.
// - attention_prefill (attention_prefill.cu, kernel in attention_prefill.cuh; bf16/fp16):
//   FA2-style tensor-core kernel, mma.sync m16n8k16 with fp32 accumulators. S = Q·Kᵀ in fp32 from
//   the T operands; the unnormalised probabilities p = 2^((s − m)·d^-½·log2 e) (ex2.approx, fp32, m the
//   running row max) are rounded to T to be the A operand of P·V (fp32 accumulation); the row sum
//   l is summed from the fp32 p (not the rounded ones), and the output is normalised at the end in
//   fp32 (acc / l) before its one rounding to T. The rounding of P is the one HF's eager path also
//   does (docs/model.md §8.2, R6: "P -> bf16"), though HF rounds the normalised P and also rounds
//   S (R5), which we keep fp32.
//   A block takes 128 (query, head) rows of one KV head (the g heads of a query are adjacent
//   rows, so they share every K/V tile), walks 64-key tiles up to its last visible key (causal
//   tile skipping; masks only tiles that cross a row's last visible key), with K/V tiles in a
//   cp.async ring in padded shared memory and ldmatrix fragments; at head_dim 128 4 warps of
//   32 rows (each K/V fragment feeds two mmas), 2 stages, 2 blocks per SM; at other head dims
//   8 warps of 16 rows, 3 stages.
// - attention_decode (attention_decode.cu, kernels in attention_decode.cuh; bf16/fp16): split-KV
//   (flash-decoding) for few rows and long caches: blocks of (key range, KV head, 16 rows), all
//   rows of a KV head in one block (K/V read once), 4 warps each streaming a quarter of the
//   block's keys through its own 3-stage cp.async ring (16-byte copies, two 16-key steps in
//   flight per warp), about one block per SM; fp32 partials (acc, max, sum) merged by a second
//   kernel. No host synchronisation: the call can be captured in a CUDA graph (its scratch is
//   reused across calls and grows only outside capture). Same rounding as attention_prefill.
// - attention_fp64 (attention_fp64.cu), T = double (the fp64 path): the reference's exact mode
//   operation for operation (reference/attention.cpp): per KV head m, S = Q_n·K_mᵀ for its g query
//   heads by one cublasDgemmStridedBatched; then per (head, query) row, in double: s·d^(-1/2)
//   (the scale applied after the product, as the reference), keys past the query's position
//   masked, max, e^(s − max), Σ (block tree), e / Σ (a two-pass softmax, not an online one); then
//   context_n = P·V_m by a second batched DGEMM. S is materialised ([nq, rows, Tc] doubles), the
//   queries taken in chunks so that it stays under 2 GiB. All keys j < Tc are multiplied (masked
//   ones give P = 0): simple rather than fast. A row that sees no key gets 0.
// attention() (attention.cu) picks attention_fp64 for T = double; otherwise: SIMT when the tensor-core kernels do not apply, decode when a
// KV head has at most 64 (query, head) rows, prefill otherwise. Other tilings of the two
// tensor-core kernels, measured by the benchmarks only, are in bench/cuda/attention_variants.h.
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {
template <class T>
void attention(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
               const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context);

// True when the tensor-core kernels apply: T bf16 or fp16, head_dim 16, 32, 48, 64 or 128,
// q/k/v 16-byte aligned, context 4-byte aligned.
template <class T>
bool attention_mma_supported(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache,
                             const DeviceTensor<T>& context);
// The three kernels by name (tests run them on the same inputs). attention_prefill and
// attention_decode fail() when attention_mma_supported is false; attention_simt takes every T.
template <class T>
void attention_simt(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                    const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context);
template <class T>
void attention_prefill(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                       const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context);
void attention_fp64(const DeviceTensor<double>& q, const DeviceTensor<double>& k_cache, const DeviceTensor<double>& v_cache,
                    int64_t Tc, const DeviceTensor<int64_t>& q_pos, DeviceTensor<double>& context);
template <class T>
void attention_decode(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                      const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context);
}  // namespace hyoracle::cuda
