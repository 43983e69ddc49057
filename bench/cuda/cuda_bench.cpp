// cuda_bench: dense projections, the full-size Hy-MT2 MoE block (decode T=1, prefill T=4096)
// and attention (prefill T=4096, decode over a >= 64 MB KV cache), bf16, on the GPU.
//
// For each case: validate against the CPU reference (refuse to time on failure), time with CUDA
// events (median of N; decode-sized cases replay a CUDA graph; L2 flushed by a 256 MB memset
// between repetitions), print time, FLOP/s and % of roofline, where
//   roofline = max(FLOPs / 989 TFLOP/s, bytes / 3.35 TB/s)   (H100 SXM, bf16 dense)
// and the same figures for the same-run baseline: bare cuBLAS on the same shapes.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "bench_util.h"
#include "../../cuda/attention.h"
#include "../../cuda/matmul.h"
#include "../../cuda/model.h"
#include "../../cuda/moe.h"
#include "../../reference/attention.h"
#include "../../reference/moe.h"
#include "config.h"
#include "random_checkpoint.h"

using namespace hyoracle;
using namespace hyoracle::bench;

namespace {

// ---- dense projections: our linear() vs bare cublasGemmEx --------------------------------------
void bench_linear(int64_t M, int64_t N, int64_t K, const std::string& name) {
  DeviceTensor<bf16> x = random_activations(M, K, 1), w = random_activations(N, K, 2), y({M, N}), yb({M, N});
  auto bare = [&] {
    const float al = 1, be = 0;
    cuda::check(cublasGemmEx(cuda::gpu().blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &al, w.data(), CUDA_R_16BF,
                             int(K), x.data(), CUDA_R_16BF, int(K), &be, yb.data(), CUDA_R_16BF, int(N), CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT),
                "bare cublasGemmEx");
  };
  cuda::linear(x, w, y);
  bare();
  // Validate the first 2 rows against a double dot product (bf16 output: rel-L2 <= 2^-8).
  const Tensor<double> xh = host(x), wh = host(w);
  const Tensor<float> yh = cuda::download(y);
  std::vector<float> got;
  std::vector<double> ref;
  for (int64_t m = 0; m < std::min<int64_t>(M, 2); ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += xh.data[m * K + k] * wh.data[n * K + k];
      ref.push_back(s);
      got.push_back(yh.data[m * N + n]);
    }
  if (!validated(name, rel_l2(got, ref), std::ldexp(1.0, -8))) return;
  const bool graph = M <= 16;
  const double ours = time_it([&] { cuda::linear(x, w, y); }, 50, graph).median_s;
  const double base = time_it(bare, 50, graph).median_s;
  report(name, 2.0 * M * N * K, 2.0 * (M * K + N * K + M * N), ours, base, "bare cuBLAS GemmEx");
}

// ---- the Hy-MT2 MoE block --------------------------------------------------------------------
void bench_moe(const cuda::LayerWeights<bf16>& w, const ModelConfig& c, int64_t T) {
  const int64_t H = c.hidden_size, I = c.moe_intermediate_size, E = c.num_experts, k = c.num_experts_per_tok;
  const DeviceTensor<bf16> u = random_activations(T, H, 10 + T);
  cuda::MoeOutput<bf16> m = cuda::moe_block(u, w.router, w.expert_bias, w.experts, w.shared, k, c.router_scaling_factor, true);
  // Validate 4 tokens against the reference (hf mode: fp32 router, double experts), only the
  // experts those tokens use being copied to the host.
  const int64_t check_t = std::min<int64_t>(T, 4);
  const Tensor<double> uh = rows_of(host(u), 0, check_t);
  const Tensor<double> wr = cast<double>(cuda::download(w.router)), bias = cast<double>(cuda::download(w.expert_bias));
  const Numerics hf{Precision::hf, 16};
  const RouterOutput<double> r = route(uh, wr, bias, k, c.router_scaling_factor, true, hf);
  ExpertStore<double> store;
  store.resident.resize(static_cast<size_t>(E));
  for (int64_t e : r.ids) {
    if (store.resident[e].gate.numel()) continue;
    auto slice = [&](const DeviceTensor<bf16>& t, int64_t off, std::vector<int64_t> shape) {
      return cast<double>(cuda::download(DeviceTensor<bf16>::view(const_cast<bf16*>(t.data()) + off, shape)));
    };
    store.resident[e] = {slice(w.experts.gate_up, e * 2 * I * H, {I, H}), slice(w.experts.gate_up, e * 2 * I * H + I * H, {I, H}),
                         slice(w.experts.down, e * H * I, {H, I})};
  }
  const DeviceTensor<bf16>& sg = w.shared.gate_up;
  MlpWeights<double> shared{cast<double>(cuda::download(DeviceTensor<bf16>::view(const_cast<bf16*>(sg.data()), {I, H}))),
                            cast<double>(cuda::download(DeviceTensor<bf16>::view(const_cast<bf16*>(sg.data()) + I * H, {I, H}))),
                            host(w.shared.down)};
  const MoeOutput<double> ref = moe_block(uh, wr, bias, store, shared, k, c.router_scaling_factor, true, hf);
  const Tensor<float> outh = cuda::download(m.out);
  std::vector<float> got(outh.data.begin(), outh.data.begin() + check_t * H);
  const std::string name = "MoE block Hy-MT2 T=" + std::to_string(T);
  if (!validated(name + " (4 tokens)", rel_l2(got, ref.out.data), 6 * std::ldexp(1.0, -8))) return;

  // Baseline: bare cuBLAS, one GEMM pair per used expert on the same routing + the shared
  // expert (gathers, SwiGLU, router and combine not counted: favours the baseline).
  const std::vector<int64_t> ids = cuda::download_ints(m.router.ids);
  std::vector<int64_t> count(static_cast<size_t>(E), 0);
  for (int64_t e : ids) ++count[e];
  DeviceTensor<bf16> a({T * k + T, H}), gu({T * k + T, 2 * I}), act({T * k + T, I}), y({T * k + T, H});
  // Baseline operands: non-zero filler (never time on zeros).
  for (DeviceTensor<bf16>* t : {&a, &act})
    cuda::check(cudaMemsetAsync(t->data(), 0x3C, size_t(t->numel()) * 2, cuda::gpu().stream), "baseline fill");
  auto gemm = [](const bf16* A, const bf16* W, bf16* Y, int64_t M, int64_t N, int64_t K) {
    const float al = 1, be = 0;
    cuda::check(cublasGemmEx(cuda::gpu().blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &al, W, CUDA_R_16BF, int(K), A,
                             CUDA_R_16BF, int(K), &be, Y, CUDA_R_16BF, int(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                "baseline gemm");
  };
  auto baseline = [&] {
    int64_t row = 0;
    for (int64_t e = 0; e < E; ++e) {
      if (!count[e]) continue;
      gemm(a.data() + row * H, w.experts.gate_up.data() + e * 2 * I * H, gu.data() + row * 2 * I, count[e], 2 * I, H);
      gemm(act.data() + row * I, w.experts.down.data() + e * H * I, y.data() + row * H, count[e], H, I);
      row += count[e];
    }
    gemm(a.data() + row * H, w.shared.gate_up.data(), gu.data() + row * 2 * I, T, 2 * I, H);
    gemm(act.data() + row * I, w.shared.down.data(), y.data() + row * H, T, H, I);
  };
  int64_t used = 0;
  for (auto n : count) used += n > 0;
  const double flops = 2.0 * T * (k + 1) * 3 * I * H + 2.0 * T * E * H;
  const double bytes = 2.0 * (used + 1) * 3 * I * H + 4.0 * E * H + 2.0 * 2 * T * H;
  const bool graph = T <= 64;
  const double ours = time_it([&] {
    cuda::MoeOutput<bf16> mm = cuda::moe_block(u, w.router, w.expert_bias, w.experts, w.shared, k, c.router_scaling_factor, true);
  }, graph ? 200 : 30, graph).median_s;
  const double base = time_it(baseline, graph ? 200 : 30, graph).median_s;
  std::printf("  (%lld experts used; roofline bytes %.1f MB, FLOPs %.1f GFLOP)\n", (long long)used, bytes / 1e6, flops / 1e9);
  report(name, flops, bytes, ours, base, "bare cuBLAS per-expert loop");
}

// ---- attention --------------------------------------------------------------------------------
void bench_attention(int64_t T, int64_t past, const ModelConfig& c) {
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim, Tc = past + T;
  DeviceTensor<bf16> q = random_activations(T * nq, d, 20).reshaped({T, nq, d});
  DeviceTensor<bf16> kc = random_activations(Tc * nkv, d, 21).reshaped({Tc, nkv, d});
  DeviceTensor<bf16> vc = random_activations(Tc * nkv, d, 22).reshaped({Tc, nkv, d});
  std::vector<int64_t> qp(static_cast<size_t>(T));
  std::iota(qp.begin(), qp.end(), past);
  const DeviceTensor<int64_t> pos = cuda::upload_ints(qp);
  DeviceTensor<bf16> ctx({T, nq * d});
  cuda::attention(q, kc, vc, Tc, pos, ctx);
  // Validate the last 2 queries against the exact reference (bf16 output: rel-L2 <= 2^-8 + 1e-5).
  const int64_t nchk = std::min<int64_t>(T, 2);
  const Tensor<double> qh_all = host(q);
  Tensor<double> qh({nchk, nq, d});
  std::copy(qh_all.data.end() - nchk * nq * d, qh_all.data.end(), qh.data.begin());
  std::vector<int64_t> qp_chk(qp.end() - nchk, qp.end()), kp(static_cast<size_t>(Tc));
  std::iota(kp.begin(), kp.end(), 0);
  const Tensor<double> ref = attention(qh, host(kc), host(vc), qp_chk, kp, Numerics{Precision::exact, 16});
  const Tensor<float> ch = cuda::download(ctx);
  std::vector<float> got(ch.data.end() - nchk * nq * d, ch.data.end());
  const std::string name = T > 1 ? "attention prefill T=" + std::to_string(T) : "attention decode KV=" + std::to_string(Tc);
  if (!validated(name, rel_l2(got, ref.data), std::ldexp(1.0, -8) + 1e-5)) return;
  double pairs = 0;
  for (int64_t i = 0; i < T; ++i) pairs += double(past + i + 1);
  const double flops = 4.0 * nq * d * pairs;
  const double bytes = 2.0 * (2 * Tc * nkv * d + 2 * T * nq * d);
  const bool graph = T <= 16;
  const double ours = time_it([&] { cuda::attention(q, kc, vc, Tc, pos, ctx); }, graph ? 100 : 20, graph).median_s;
  std::printf("  (KV cache %.1f MB)\n", 2.0 * 2 * Tc * nkv * d / 1e6);
  report(name, flops, bytes, ours, NAN, "torch SDPA: see sdpa_baseline.py output of the same run");
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("cuda_bench: no CUDA device (%s); nothing measured\n", why.c_str());
    return 0;
  }
  const std::string only = argc > 1 ? argv[1] : "all";
  std::printf("cuda_bench on %s (%d SMs); roofline = max(FLOPs/989 TF/s, bytes/3.35 TB/s); median of N\n",
              cuda::gpu().name.c_str(), cuda::gpu().sms);
  DeviceTensor<int32_t> flush({64ll << 20});  // 256 MB
  g_flush = &flush;
  const ModelConfig c = hy_mt2_config(2);
  std::printf("| %-44s | %13s | %12s | %6s | %13s | %12s | %6s | baseline\n", "case", "ours", "ours", "%roof", "baseline",
              "baseline", "%roof");
  if (only == "all" || only == "linear") {
    bench_linear(1, 4096, 2048, "q_proj bf16 M=1 (2048->4096)");
    bench_linear(4096, 4096, 2048, "q_proj bf16 M=4096 (2048->4096)");
    bench_linear(4096, 2048, 4096, "o_proj bf16 M=4096 (4096->2048)");
    bench_linear(1, 120832, 2048, "lm_head bf16 M=1 (2048->120832)");
  }
  if (only == "all" || only == "moe") {
    const cuda::ModelWeights<bf16> m = cuda::random_model<bf16>(c, 1);
    bench_moe(m.layers[1], c, 1);
    bench_moe(m.layers[1], c, 4096);
  }
  if (only == "all" || only == "attention") {
    bench_attention(4096, 0, c);
    bench_attention(1, 32767, c);
  }
  return 0;
}
