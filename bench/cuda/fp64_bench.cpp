// fp64_bench: the fp64 CUDA path (cuda/*.h "T = double", the reference's exact mode on the GPU) at
// full Hy-MT2-30B-A3B width: a random model built in GPU memory (bf16 weights: 61 GB at 48 layers),
// a prefill of T tokens (default 4096) in double, next to the same-run cublasDgemm rate.
//
// Validation before timing: one full-width MoE layer (layer 1: 128 experts, top-8, shared expert,
// H 2048, 32/4 heads of 128) on 67 tokens against the CPU reference's exact mode
// (reference/decoder_layer.h, weights downloaded from the GPU as their exact bf16 values), every
// recorded tensor at rel-L2 <= 1e-13 and the expert selections identical; a wrong path is not
// timed.
//
// Figures:
//   baseline: cublasDgemm on 8192^3 (median of 5): the DGEMM rate of this card now;
//   products: one MoE layer's products at T (q/k/v/o projections by linear(), the MoE block:
//             router DGEMM, sort, per-expert expansion + DGEMM, combine), as FLOP/s and as a
//             fraction of that DGEMM rate (the goal: >= 40%);
//   attention: one layer's attention at T (two batched DGEMMs over all keys + softmax);
//   prefill: the whole model, T tokens, wall time (forward() to the logits on the device), with
//             the model's product FLOPs over that time as a fraction of the DGEMM rate.
// Usage: fp64_bench [layers=48] [tokens=4096]
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "cuda/attention.h"
#include "cuda/matmul.h"
#include "cuda/model.h"
#include "reference/decoder_layer.h"
#include "reference/matmul.h"
#include "tests/common/map_sink.h"

using namespace hyoracle;
using namespace hyoracle::bench;

namespace {

using clock_type = std::chrono::steady_clock;
double secs(clock_type::time_point a, clock_type::time_point b) { return std::chrono::duration<double>(b - a).count(); }

Tensor<double> host64(const DeviceTensor<double>& t) { return cuda::download(t); }
double rel_l2_64(const std::vector<double>& a, const std::vector<double>& b) {
  long double n = 0, dd = 0;
  for (size_t i = 0; i < a.size(); ++i) n += (a[i] - b[i]) * (long double)(a[i] - b[i]), dd += b[i] * (long double)b[i];
  return double(std::sqrt(n / dd));
}
Tensor<double> host_w(const DeviceTensor<bf16>& t) { return cast<double>(cuda::download(t)); }
// Rows [lo, lo + n) of a [count, rows, cols] bf16 tensor's slice e, as double.
Tensor<double> slice(const Tensor<double>& all, int64_t e, int64_t r0, int64_t n) {
  const int64_t rows = all.dim(1), cols = all.dim(2);
  Tensor<double> o({n, cols});
  std::copy_n(all.data.begin() + (e * rows + r0) * cols, n * cols, o.data.begin());
  return o;
}

// The CPU reference's layer weights from the GPU's (exact values: bf16 widened, norms double).
LayerWeights<double> reference_layer(const cuda::LayerWeights<double>& w, const ModelConfig& c) {
  LayerWeights<double> r;
  r.input_norm = host64(w.input_norm), r.q_norm = host64(w.q_norm), r.k_norm = host64(w.k_norm);
  r.post_norm = host64(w.post_norm);
  r.wq = host_w(w.wq), r.wk = host_w(w.wk), r.wv = host_w(w.wv), r.wo = host_w(w.wo);
  r.dense = w.dense;
  r.router = cast<double>(cuda::download(w.router));
  r.expert_bias = cast<double>(cuda::download(w.expert_bias));
  const int64_t I = c.moe_intermediate_size, Is = c.shared_width();
  Tensor<double> sgu = host_w(w.shared.gate_up);
  sgu.shape = {1, 2 * Is, c.hidden_size};
  r.shared.gate = slice(sgu, 0, 0, Is), r.shared.up = slice(sgu, 0, Is, Is), r.shared.down = host_w(w.shared.down);
  const Tensor<double> gu = host_w(w.experts.gate_up), dn = host_w(w.experts.down);
  for (int64_t e = 0; e < c.num_experts; ++e) {
    MlpWeights<double> m;
    m.gate = slice(gu, e, 0, I), m.up = slice(gu, e, I, I), m.down = slice(dn, e, 0, c.hidden_size);
    r.experts.resident.push_back(std::move(m));
  }
  return r;
}

bool validate_layer(const cuda::ModelWeights<double>& m, int64_t T) {
  const ModelConfig& c = m.config;
  const int64_t L = 1, H = c.hidden_size;
  Rng rng(77);
  Tensor<double> x({T, H});
  for (auto& v : x.data) v = rng.normal();
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t;
  test::MapSink got, ref;
  cuda::KVCache<double> cache = cuda::make_cache<double>(c, T);
  cuda::decoder_layer(cuda::upload<double>(x), L, m.layers[L], c, cuda::upload_ints(pos), cache.layers[L],
                      Recorder{&got, ""});
  const auto t0 = clock_type::now();
  const LayerWeights<double> rw = reference_layer(m.layers[L], c);
  LayerCache<double> rc;
  decoder_layer(x, L, rw, c, pos, rc, Numerics{Precision::exact, 16}, Recorder{&ref, ""});
  double worst = 0;
  std::string worst_name;
  bool ok = true;
  for (const auto& [n, r] : ref.tensors) {
    if (!got.tensors.count(n)) {
      std::printf("  validate: %s missing\n", n.c_str());
      ok = false;
      continue;
    }
    const double e = rel_l2_64(got.tensors.at(n).data, r.data);
    if (e > worst) worst = e, worst_name = n;
    std::printf("    %-32s rel-L2 %.3e\n", n.c_str(), e);
  }
  for (const auto& [n, r] : ref.ints) ok = ok && got.ints.count(n) && got.ints.at(n) == r;
  std::printf("  validate full-width MoE layer %lld, %lld tokens, vs the CPU exact reference (%.1f s on the CPU): %zu tensors, "
              "worst rel-L2 %.3e (%s), expert selections %s\n",
              (long long)L, (long long)T, secs(t0, clock_type::now()), ref.tensors.size(), worst, worst_name.c_str(),
              ok ? "identical" : "DIFFER");
  return validated("fp64 layer (worst tensor)", worst, 1e-13) && ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("fp64_bench: no CUDA device (%s); nothing measured\n", why.c_str());
    return 0;
  }
  const int64_t layers = argc > 1 ? std::atoll(argv[1]) : 48, T = argc > 2 ? std::atoll(argv[2]) : 4096;
  std::printf("fp64_bench on %s (%d SMs): Hy-MT2-30B-A3B sizes, %lld layers, fp64 path (bf16 weights), prefill of %lld tokens\n",
              cuda::gpu().name.c_str(), cuda::gpu().sms, (long long)layers, (long long)T);
  DeviceTensor<int32_t> flush({64ll << 20});
  g_flush = &flush;

  // Baseline: the DGEMM rate of this card now.
  double dgemm_rate = 0;
  {
    const int64_t n = 8192;
    DeviceTensor<double> a({n, n}), b({n, n}), y({n, n});
    cuda::check(cudaMemsetAsync(a.data(), 0, size_t(n * n) * 8, cuda::gpu().stream), "fill");
    cuda::check(cudaMemsetAsync(b.data(), 0, size_t(n * n) * 8, cuda::gpu().stream), "fill");
    const double t = time_it([&] { cuda::dgemm_nt(a.data(), n, b.data(), n, y.data(), n, n, n, n); }, 5, false).median_s;
    dgemm_rate = 2.0 * double(n) * n * n / t;
    std::printf("  baseline: cublasDgemm %lld^3: %.2f ms, %.2f TFLOP/s (same run)\n", (long long)n, t * 1e3, dgemm_rate / 1e12);
  }

  const ModelConfig c = hy_mt2_config(layers);
  const auto tb = clock_type::now();
  const cuda::ModelWeights<double> m = cuda::random_model<double>(c, 1);
  cuda::synchronize();
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  std::printf("  weights built on the GPU in %.1f s; device memory in use %.1f GB of %.1f GB\n", secs(tb, clock_type::now()),
              double(total_b - free_b) / 1e9, double(total_b) / 1e9);
  if (!validate_layer(m, 67)) return 1;

  // One MoE layer's parts at T.
  const int64_t H = c.hidden_size, nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  const int64_t A = c.q_width(), Kv = c.kv_width(), E = c.num_experts, k = c.num_experts_per_tok;
  const int64_t I = c.moe_intermediate_size, Is = c.shared_width();
  const cuda::LayerWeights<double>& w = m.layers[1];
  {
    Rng rng(5);
    Tensor<double> xh({T, H});
    for (auto& v : xh.data) v = rng.normal();
    const DeviceTensor<double> a = cuda::upload<double>(xh);
    DeviceTensor<double> q({T, nq, d}), kk({T, nkv, d}), v({T, nkv, d}), ctx({T, nq * d}), o({T, H});
    std::vector<int64_t> pos(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = t;
    const DeviceTensor<int64_t> dpos = cuda::upload_ints(pos);
    const double proj_flops = 2.0 * T * (A * H + 2 * Kv * H + H * A);
    const double proj = time_it([&] {
      cuda::linear(a, w.wq, q);
      cuda::linear(a, w.wk, kk);
      cuda::linear(a, w.wv, v);
      cuda::linear(ctx, w.wo, o);
    }, 5, false).median_s;
    const double moe_flops = 2.0 * T * (E * H + k * 3 * I * H + 3 * Is * H);
    const double moe = time_it([&] {
      cuda::moe_block(a, w.router, w.expert_bias, w.experts, w.shared, k, c.router_scaling_factor, c.route_norm);
    }, 5, false).median_s;
    // Attention over a cache holding this layer's k/v at positions 0..T-1 (values do not change the cost).
    DeviceTensor<double> kc({T, nkv, d}), vc({T, nkv, d});
    cuda::check(cudaMemsetAsync(kc.data(), 0, size_t(kc.numel()) * 8, cuda::gpu().stream), "kc");
    cuda::check(cudaMemsetAsync(vc.data(), 0, size_t(vc.numel()) * 8, cuda::gpu().stream), "vc");
    const double attn = time_it([&] { cuda::attention(q, kc, vc, T, dpos, ctx); }, 3, false).median_s;
    const double attn_flops = 4.0 * double(T) * double(T) * nq * d;  // all keys multiplied (no causal skipping)
    std::printf("| %-44s | %9.2f ms | %7.2f TF/s | %5.1f%% of DGEMM |\n", "q/k/v/o projections (expand + DGEMM)", proj * 1e3,
                proj_flops / proj / 1e12, 100 * proj_flops / proj / dgemm_rate);
    std::printf("| %-44s | %9.2f ms | %7.2f TF/s | %5.1f%% of DGEMM |\n", "MoE block (router, 128+1 expert DGEMMs)", moe * 1e3,
                moe_flops / moe / 1e12, 100 * moe_flops / moe / dgemm_rate);
    std::printf("| %-44s | %9.2f ms | %7.2f TF/s | %5.1f%% of DGEMM |\n", "products of one MoE layer together",
                (proj + moe) * 1e3, (proj_flops + moe_flops) / (proj + moe) / 1e12,
                100 * (proj_flops + moe_flops) / (proj + moe) / dgemm_rate);
    std::printf("| %-44s | %9.2f ms | %7.2f TF/s | %5.1f%% of DGEMM |\n", "attention (2 batched DGEMMs + softmax)", attn * 1e3,
                attn_flops / attn / 1e12, 100 * attn_flops / attn / dgemm_rate);
  }

  // The whole prefill, twice (the first warms the memory pool and cuBLAS); the second is reported.
  Rng rng(9);
  std::vector<int64_t> ids(static_cast<size_t>(T));
  for (auto& t : ids) t = int64_t(rng.next() % uint64_t(c.vocab_size));
  double prefill = 0;
  std::vector<int64_t> first_tokens;
  for (int run = 0; run < 2; ++run) {
    cuda::KVCache<double> cache = cuda::make_cache<double>(c, T);
    cuda::synchronize();
    const auto t0 = clock_type::now();
    const DeviceTensor<double> logits = cuda::forward(m, ids, cache, Recorder{});
    cuda::synchronize();
    prefill = secs(t0, clock_type::now());
    const DeviceTensor<double> last = DeviceTensor<double>::view(const_cast<double*>(logits.data()) + (T - 1) * c.vocab_size,
                                                                 {1, c.vocab_size});
    const Tensor<double> lh = cuda::download(last);
    double s2 = 0;
    for (double x : lh.data) s2 += x * x;
    std::printf("  prefill run %d: %.3f s (last row's logits rms %.3f, argmax %lld)\n", run, prefill,
                std::sqrt(s2 / double(lh.numel())), (long long)cuda::argmax_rows(last)[0]);
  }
  double model_flops = 0;
  for (int64_t L = 0; L < layers; ++L) {
    model_flops += 2.0 * T * (A * H + 2 * Kv * H + H * A);
    model_flops += c.is_dense(L) ? 2.0 * T * 3 * double(c.intermediate_size) * H : 2.0 * T * (E * H + k * 3 * I * H + 3 * Is * H);
  }
  model_flops += 2.0 * T * double(c.vocab_size) * H;
  std::printf("| %-44s | %9.3f s  | goal <= 10 s: %s | products %.1f TFLOP: %.2f TF/s over the whole prefill = %.1f%% of DGEMM "
              "(attention and the rest included) |\n",
              ("fp64 prefill, " + std::to_string(layers) + " layers, T=" + std::to_string(T)).c_str(), prefill,
              prefill <= 10 ? "met" : "NOT met", model_flops / 1e12, model_flops / prefill / 1e12,
              100 * model_flops / prefill / dgemm_rate);
  return 0;
}
