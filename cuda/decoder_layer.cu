#include "cuda/decoder_layer.h"

#include "cuda/attention.h"
#include "cuda/elementwise.h"
#include "cuda/gemv.h"
#include "reference/names.h"
#include "cuda/record.h"
#include "cuda/rms_norm.cuh"
#include "cuda/rms_norm.h"
#include "cuda/rope.cuh"

namespace hyoracle::cuda {

namespace {
constexpr int kInputWarps = 8;

// One head's norm step, by one warp: row[0, d) (A) <- T(RMSNorm_d(row; w)), also stored to `out`
// and `cache` when given. ss = Σ row² in A (acc_t<T>: fp32, or double on the fp64 path; fma per
// lane over i = lane, lane + 32, ..., lanes added by a butterfly); rounding as rms_norm.h.
template <class T, class A>
__device__ void norm_head(A* row, const T* __restrict__ w, int d, A eps, T* out, T* cache) {
  const int lane = threadIdx.x % 32;
  __syncwarp();  // row was written by other lanes
  A ss = 0;
  for (int i = lane; i < d; i += 32) ss = fma(row[i], row[i], ss);
  for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const A inv = rms_inverse(ss, d, eps);
  for (int i = lane; i < d; i += 32) {
    const T y = rms_scaled(row[i], inv, w[i]);
    if (out) out[i] = y;
    if (cache) cache[i] = y;
    row[i] = widen(y);
  }
}

// One head's RoPE step, by one warp: (row[i], row[i + d/2]) rotated by the token's (cs[i], sn[i]),
// rounded to T (rope.h), back into row and to `out` and `cache` when given.
template <class T, class A>
__device__ void rope_head(A* row, const A* cs, const A* sn, int half, T* out, T* cache) {
  const int lane = threadIdx.x % 32;
  __syncwarp();
  for (int i = lane; i < half; i += 32) {
    T ya, yb;
    rope_rotate<T>(row[i], row[i + half], cs[i], sn[i], ya, yb);
    if (out) out[i] = ya, out[i + half] = yb;
    if (cache) cache[i] = ya, cache[i + half] = yb;
    row[i] = widen(ya);
    row[i + half] = widen(yb);
  }
}

// The attention inputs of one token t (docs/model.md §4.4 steps 2-4; docs/hunyuan_v1.md) in one
// block, per head n < nq of q and m < nkv of k, in the family's order:
//   norm first (hy_v3):      q1 = RMSNorm_d(q; q_norm),  q2 = RoPE(q1; pos[t])
//   RoPE first (hunyuan_v1): q1 = RoPE(q; pos[t]),       q2 = RMSNorm_d(q1; q_norm)
//   (k likewise with k_norm);  cache_k[pos[t], m] = k2[t, m],  cache_v[pos[t], m] = v[t, m]
// (row j of the cache is position j). q2, k2 are what attention reads; q1, k1 may be null
// (nothing records them). Each step rounds to T as its own layer (rms_norm.h, rope.h; the shared
// functions of rms_norm.cuh and rope.cuh). One warp per head; the token's cos/sin are computed
// once per block. A position outside [0, capacity) writes no cache row (the host checks the
// capacity before a step).
template <class T, class A = acc_t<T>>
__global__ void __launch_bounds__(kInputWarps * 32)
    attention_inputs_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ wqn,
                            const T* __restrict__ wkn, const int64_t* __restrict__ pos, int nq, int nkv, int d, A eps,
                            A theta, bool rope_first, T* q1, T* q2, T* k1, T* k2, T* cache_k, T* cache_v, int64_t capacity) {
  extern __shared__ __align__(16) unsigned char inputs_smem[];
  A* smem = reinterpret_cast<A*>(inputs_smem);
  const int64_t t = blockIdx.x, p = pos[t];
  const int half = d / 2, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  A* cs = smem;                  // [half] T(cos φ_i)
  A* sn = cs + half;             // [half] T(sin φ_i)
  A* row = sn + half + warp * d; // [d] this warp's head, between the steps
  for (int i = threadIdx.x; i < half; i += blockDim.x) rope_cos_sin<T>(p, rope_inv_freq(i, d, theta), cs[i], sn[i]);
  __syncthreads();
  const bool cached = p >= 0 && p < capacity;
  for (int h = warp; h < nq + nkv; h += kInputWarps) {
    const bool is_q = h < nq;
    const int head = is_q ? h : h - nq;
    const int64_t at = (t * (is_q ? nq : nkv) + head) * d;
    const T* x = (is_q ? q : k) + at;
    T* first = is_q ? q1 : k1;
    if (first) first += at;
    T* out = (is_q ? q2 : k2) + at;
    T* cache = cached && !is_q ? cache_k + (p * nkv + head) * d : nullptr;
    const T* w = is_q ? wqn : wkn;
    __syncwarp();  // the previous head's last step read row
    for (int i = lane; i < d; i += 32) row[i] = widen(x[i]);
    if (rope_first) {
      rope_head<T>(row, cs, sn, half, first, static_cast<T*>(nullptr));
      norm_head<T>(row, w, d, eps, out, cache);
    } else {
      norm_head<T>(row, w, d, eps, first, static_cast<T*>(nullptr));
      rope_head<T>(row, cs, sn, half, out, cache);
    }
  }
  if (cached)
    for (int64_t i = threadIdx.x; i < int64_t(nkv) * d; i += blockDim.x) cache_v[p * nkv * d + i] = v[t * nkv * d + i];
}

// q2, k2 (what attention reads) and q1, k1 (the first step's outputs; may be null) of
// attention_inputs_kernel, with the cache rows; RoPE at base c.rope_base().
template <class T>
void attention_inputs(const DeviceTensor<T>& q, const DeviceTensor<T>& k, const DeviceTensor<T>& v, const LayerWeights<T>& w,
                      const ModelConfig& c, const DeviceTensor<int64_t>& positions, T* q1, DeviceTensor<T>& q2, T* k1,
                      DeviceTensor<T>& k2, LayerCache<T>& cache) {
  const int64_t T_ = q.dim(0), nq = q.dim(1), nkv = k.dim(1), d = q.dim(2);
  if (d % 2 || d > 1024 || k.dim(0) != T_ || k.dim(2) != d || v.shape != k.shape || cache.v.shape != cache.k.shape ||
      cache.k.dim(1) != nkv || cache.k.dim(2) != d || positions.numel() != T_ || w.q_norm.numel() != d ||
      w.k_norm.numel() != d)
    fail("cuda attention inputs: q " + shape_str(q.shape) + ", k " + shape_str(k.shape) + ", cache " +
         shape_str(cache.k.shape) + " do not match");
  if (!T_) return;
  const size_t smem = size_t(d + kInputWarps * d) * sizeof(acc_t<T>);
  attention_inputs_kernel<T><<<unsigned(T_), kInputWarps * 32, smem, gpu().stream>>>(
      q.data(), k.data(), v.data(), w.q_norm.data(), w.k_norm.data(), positions.data(), int(nq), int(nkv), int(d),
      acc_t<T>(c.rms_norm_eps), acc_t<T>(c.rope_base()), c.qk_norm_after_rope, q1, q2.data(), k1, k2.data(), cache.k.data(),
      cache.v.data(), cache.k.dim(0));
  check_launch("attention inputs");
}

// q, k, v = a·W_qᵀ, a·W_kᵀ, a·W_vᵀ: one gemv launch for decode-sized a (16-bit T), else three
// products.
template <class T>
void project_qkv(const DeviceTensor<T>& a, const LayerWeights<T>& w, DeviceTensor<T>& q, DeviceTensor<T>& k, DeviceTensor<T>& v) {
  if constexpr (sizeof(T) == 2) {
    if (gemv_applies(a, w.wq) && gemv_applies(a, w.wk) && gemv_applies(a, w.wv)) {
      gemv<T, T>(a, {&w.wq, &w.wk, &w.wv}, {&q, &k, &v});
      return;
    }
  }
  linear(a, w.wq, q);
  linear(a, w.wk, k);
  linear(a, w.wv, v);
}
}  // namespace

template <class T>
DeviceTensor<T> decoder_layer_at(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                                 const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, int64_t key_bound,
                                 const Recorder& rec, const LayerCache<T>* kv_source) {
  using names::layer;
  const int64_t T_ = x.rows(), H = c.hidden_size, nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  const double eps = c.rms_norm_eps;

  DeviceTensor<T> a({T_, H});
  rms_norm(x, w.input_norm, eps, a);
  record(rec, layer(L, "input_norm"), a);
  DeviceTensor<T> q({T_, nq, d}), k, v;
  if (c.owns_kv(L)) {
    k = DeviceTensor<T>({T_, nkv, d});
    v = DeviceTensor<T>({T_, nkv, d});
    project_qkv(a, w, q, k, v);
    record(rec, layer(L, "attn.q"), q);
    record(rec, layer(L, "attn.k"), k);
    record(rec, layer(L, "attn.v"), v);
    if (c.cla_share_factor > 1) cache.step_k = k, cache.step_v = v;  // read by the cross layers after L
  } else {
    if (!kv_source || kv_source->step_k.empty() || kv_source->step_k.dim(0) != T_)
      fail("layer " + std::to_string(L) + " is a cross layer and needs layer " + std::to_string(c.kv_source(L)) +
           "'s K/V of this step, which was not computed");
    linear(a, w.wq, q);
    record(rec, layer(L, "attn.q"), q);
    k = kv_source->step_k;
    v = kv_source->step_v;
  }
  // q/k norms, RoPE (in the family's order) and the cache rows in one launch; the first step's
  // q/k are kept only when recorded.
  const bool rope_first = c.qk_norm_after_rope;
  DeviceTensor<T> q1, k1, q2({T_, nq, d}), k2({T_, nkv, d});
  if (rec.active()) {
    q1 = DeviceTensor<T>({T_, nq, d});
    k1 = DeviceTensor<T>({T_, nkv, d});
  }
  attention_inputs(q, k, v, w, c, positions, q1.data(), q2, k1.data(), k2, cache);
  const char* first_q = rope_first ? "attn.q_rope" : "attn.q_norm";
  const char* first_k = rope_first ? "attn.k_rope" : "attn.k_norm";
  const char* final_q = rope_first ? "attn.q_norm" : "attn.q_rope";
  const char* final_k = rope_first ? "attn.k_norm" : "attn.k_rope";
  record(rec, layer(L, first_q), q1);
  record(rec, layer(L, first_k), k1);
  record(rec, layer(L, final_q), q2);
  record(rec, layer(L, final_k), k2);

  DeviceTensor<T> ctx({T_, nq * d});
  attention(q2, cache.k, cache.v, key_bound, positions, ctx);
  record(rec, layer(L, "attn.context"), ctx);
  DeviceTensor<T> attn_out({T_, H});
  linear(ctx, w.wo, attn_out);
  record(rec, layer(L, "attn.out"), attn_out);

  DeviceTensor<T> h({T_, H}), f({T_, H});
  add_rms_norm(x, attn_out, w.post_norm, eps, h, f);
  record(rec, layer(L, "resid_mid"), h);
  record(rec, layer(L, "post_norm"), f);

  DeviceTensor<T> ffn({T_, H});
  if (w.dense) {
    swiglu_mlp(f, w.mlp, ffn);
  } else {
    MoeOutput<T> m = moe_block(f, w.router, w.expert_bias, w.experts, w.shared, c.num_experts_per_tok,
                               c.router_scaling_factor, c.route_norm, c.router);
    record(rec, layer(L, "moe.router_logits"), m.router.logits);
    record(rec, layer(L, "moe.scores"), m.router.scores);
    record_ints(rec, layer(L, "moe.topk_ids"), m.router.ids);
    record(rec, layer(L, "moe.topk_weights"), m.router.weights);
    record(rec, layer(L, "moe.topk_margin"), m.router.margin);
    record(rec, layer(L, "moe.routed_out"), m.routed);
    record(rec, layer(L, "moe.shared_out"), m.shared);
    ffn = m.out;
  }
  record(rec, layer(L, "mlp.out"), ffn);
  DeviceTensor<T> out({T_, H});
  add(h, ffn, out);
  record(rec, layer(L, "out"), out);
  return out;
}

template <class T>
DeviceTensor<T> decoder_layer(const DeviceTensor<T>& x, int64_t L, const LayerWeights<T>& w, const ModelConfig& c,
                              const DeviceTensor<int64_t>& positions, LayerCache<T>& cache, const Recorder& rec,
                              const LayerCache<T>* kv_source) {
  const int64_t capacity = cache.k.dim(0);
  if (cache.length + x.rows() > capacity)
    fail("cuda KV cache: " + std::to_string(cache.length + x.rows()) + " positions exceed its capacity " +
         std::to_string(capacity));
  // Keys bounded by the capacity, not the length: attention masks by position (key j visible to
  // query t iff j <= positions[t]) and skips keys past the last position, so the result is the
  // same in exact arithmetic, and an eager step runs exactly the launches a captured one (model.h)
  // does, so the two agree bit for bit. The split of the keys over blocks depends on the capacity
  // and the GPU's SM count, so the last bits of a decode step do too (same run, same bits).
  // The fp64 path has no captured step: it bounds the keys by the positions written, so its
  // attention (which multiplies every key below the bound) does no work past them.
  const int64_t key_bound = std::is_same_v<T, double> ? cache.length + x.rows() : capacity;
  DeviceTensor<T> out = decoder_layer_at(x, L, w, c, positions, cache, key_bound, rec, kv_source);
  cache.length += x.rows();
  return out;
}

template DeviceTensor<float> decoder_layer_at<float>(const DeviceTensor<float>&, int64_t, const LayerWeights<float>&,
                                                   const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<float>&, int64_t,
                                                   const Recorder&, const LayerCache<float>*);
template DeviceTensor<float> decoder_layer<float>(const DeviceTensor<float>&, int64_t, const LayerWeights<float>&,
                                                  const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<float>&,
                                                  const Recorder&, const LayerCache<float>*);
template DeviceTensor<bf16> decoder_layer_at<bf16>(const DeviceTensor<bf16>&, int64_t, const LayerWeights<bf16>&,
                                                   const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<bf16>&, int64_t,
                                                   const Recorder&, const LayerCache<bf16>*);
template DeviceTensor<bf16> decoder_layer<bf16>(const DeviceTensor<bf16>&, int64_t, const LayerWeights<bf16>&,
                                                const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<bf16>&,
                                                const Recorder&, const LayerCache<bf16>*);
template DeviceTensor<double> decoder_layer_at<double>(const DeviceTensor<double>&, int64_t, const LayerWeights<double>&,
                                                       const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<double>&,
                                                       int64_t, const Recorder&, const LayerCache<double>*);
template DeviceTensor<double> decoder_layer<double>(const DeviceTensor<double>&, int64_t, const LayerWeights<double>&,
                                                    const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<double>&,
                                                    const Recorder&, const LayerCache<double>*);
template DeviceTensor<fp16> decoder_layer_at<fp16>(const DeviceTensor<fp16>&, int64_t, const LayerWeights<fp16>&,
                                                   const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<fp16>&, int64_t,
                                                   const Recorder&, const LayerCache<fp16>*);
template DeviceTensor<fp16> decoder_layer<fp16>(const DeviceTensor<fp16>&, int64_t, const LayerWeights<fp16>&,
                                                const ModelConfig&, const DeviceTensor<int64_t>&, LayerCache<fp16>&,
                                                const Recorder&, const LayerCache<fp16>*);

}  // namespace hyoracle::cuda
