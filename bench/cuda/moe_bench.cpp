// moe_bench: the full-size Hy-MT2 MoE block (bf16), decode T=1 and prefill T=4096, against a bare
// cuBLAS per-expert loop on the same routing. Conventions: bench_util.h.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "cuda/grouped_gemm.h"
#include "cuda/matmul.h"
#include "cuda/model.h"
#include "cuda/moe.h"
#include "reference/moe.h"
#include "io/config.h"
#include "io/random_checkpoint.h"

using namespace hyoracle;
using namespace hyoracle::bench;

namespace {

struct Row {
  std::string name;
  double ours, base, flops, bytes;
};
std::vector<Row> summary;

// ---- the Hy-MT2 MoE block --------------------------------------------------------------------
void bench_moe(const cuda::LayerWeights<bf16>& w, const ModelConfig& c, int64_t T, const std::string& tag) {
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
  const std::string name = "MoE block Hy-MT2 T=" + std::to_string(T) + tag;
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
  const double bw = measured_copy_bandwidth();
  std::printf("  vs measured copy bandwidth %.2f TB/s: ours %.1f%%, baseline %.1f%% (bytes / time / bandwidth)\n", bw / 1e12,
              100 * bytes / ours / bw, 100 * bytes / base / bw);

  // Where the time goes: the two grouped GEMMs alone on this routing (shared expert as group E).
  const cuda::ExpertSort srt = cuda::sort_by_expert(m.router, E, T);
  DeviceTensor<bf16> act2({T * k + T, I}), y2({T * k + T, H});
  const cuda::GroupWeights<bf16> wgu{w.experts.gate_up.data(), E, w.shared.gate_up.data(), 2 * I, H};
  const cuda::GroupWeights<bf16> wdn{w.experts.down.data(), E, w.shared.down.data(), H, I};
  const int reps = graph ? 200 : 30;
  const double f_gu = 2.0 * T * (k + 1) * 2 * I * H, f_dn = 2.0 * T * (k + 1) * I * H;
  const double b_gu = 2.0 * (used + 1) * 2 * I * H + 2.0 * T * H + 2.0 * T * (k + 1) * I;
  const double b_dn = 2.0 * (used + 1) * I * H + 2.0 * T * (k + 1) * (I + H);
  double t_gu = 0, t_dn = 0;
  // Prefill: each block tile of the tensor-core kernel (grouped_gemm.cu), same routing; the whole
  // block too. The default (wgmma on compute capability 9.0, else 128x256x64) is what "ours" ran;
  // it comes last, so the parts below the loop are its parts.
  const std::vector<const char*> tiles = {"128x128x32", "128x256x32", "128x256x64", "wgmma-cpasync", "wgmma-direct", "wgmma-staged", "wgmma"};
  for (const char* tile : graph ? std::vector<const char*>{"default"} : tiles) {
    setenv("HYORACLE_GROUPED_TILE", tile, 1);
    t_gu = time_it([&] {
      cuda::grouped_gemm(u.data(), srt.token.data(), wgu, srt.layout, T, cuda::GroupEpilogue::swiglu, act2.data());
    }, reps, graph).median_s;
    t_dn = time_it([&] {
      cuda::grouped_gemm(act2.data(), nullptr, wdn, srt.layout, T, cuda::GroupEpilogue::store, y2.data());
    }, reps, graph).median_s;
    const std::string v = graph ? "GEMV" : std::string("tile ") + tile;
    std::printf("  part gate_up+SwiGLU grouped %-13s %8.1f us  %7.2f TF/s  %6.2f TB/s\n", v.c_str(), t_gu * 1e6,
                f_gu / t_gu / 1e12, b_gu / t_gu / 1e12);
    std::printf("  part down grouped %-23s %8.1f us  %7.2f TF/s  %6.2f TB/s\n", v.c_str(), t_dn * 1e6, f_dn / t_dn / 1e12,
                b_dn / t_dn / 1e12);
    if (!graph) {
      const double tb = time_it([&] {
        cuda::MoeOutput<bf16> mm = cuda::moe_block(u, w.router, w.expert_bias, w.experts, w.shared, k, c.router_scaling_factor, true);
      }, reps, graph).median_s;
      std::printf("  whole block with tile %-18s %8.1f us  %7.2f TF/s\n", tile, tb * 1e6, flops / tb / 1e12);
    }
  }
  unsetenv("HYORACLE_GROUPED_TILE");
  const double t_route = time_it([&] {
    cuda::RouterOutput rr = cuda::route(u, w.router, w.expert_bias, k, c.router_scaling_factor, true);
  }, reps, graph).median_s;
  const double t_topk = time_it([&] {
    cuda::RouterOutput rr = cuda::route_from_logits(m.router.logits, w.expert_bias, k, c.router_scaling_factor, true);
  }, reps, graph).median_s;
  const double t_sort = time_it([&] { cuda::ExpertSort ss = cuda::sort_by_expert(m.router, E, T); }, reps, graph).median_s;
  double whole = ours;
  if (graph) {  // decode: ours runs route_and_sort (one launch); the separate launches for comparison
    setenv("HYORACLE_MOE_UNFUSED_ROUTE", "1", 1);
    whole = time_it([&] {
      cuda::MoeOutput<bf16> mm = cuda::moe_block(u, w.router, w.expert_bias, w.experts, w.shared, k, c.router_scaling_factor, true);
    }, reps, graph).median_s;
    unsetenv("HYORACLE_MOE_UNFUSED_ROUTE");
    std::printf("  block with route, top-k and sort as separate launches: %.1f us (ours, fused: %.1f us)\n", whole * 1e6,
                ours * 1e6);
  }
  std::printf("  part route (logits + top-k): %.1f us (top-k alone %.1f us); sort: %.1f us; rest (combine, launch gaps): "
              "%.1f us\n", t_route * 1e6, t_topk * 1e6, t_sort * 1e6, (whole - t_gu - t_dn - t_route - t_sort) * 1e6);
  summary.push_back({name, ours, base, flops, bytes});
}

}  // namespace

int main() {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("%s: no CUDA device (%s); nothing measured\n", "moe_bench", why.c_str());
    return 0;
  }
  std::printf("%s on %s (%d SMs); roofline = max(FLOPs/989 TF/s, bytes/3.35 TB/s); median of N\n", "moe_bench",
              cuda::gpu().name.c_str(), cuda::gpu().sms);
  DeviceTensor<int32_t> flush({64ll << 20});  // 256 MB
  g_flush = &flush;
  const ModelConfig c = hy_mt2_config(2);
  std::printf("| %-44s | %13s | %12s | %6s | %13s | %12s | %6s | baseline\n", "case", "ours", "ours", "%roof", "baseline",
              "baseline", "%roof");
  const cuda::ModelWeights<bf16> m = cuda::random_model<bf16>(c, 1);
  // L2 flushed by a memset before each repetition (as the previous sessions measured), then by a
  // read-only pass (no dirty lines left for the timed kernel to write back; bench_util.h).
  bench_moe(m.layers[1], c, 1, " (memset flush)");
  use_read_flush(true);
  bench_moe(m.layers[1], c, 1, " (read flush)");
  use_read_flush(false);
  bench_moe(m.layers[1], c, 4096, "");
  std::printf("\nsummary (H200 as found; roofline = max(FLOPs/989 TF/s, bytes/3.35 TB/s); copy bw %.2f TB/s measured)\n",
              measured_copy_bandwidth() / 1e12);
  for (const Row& r : summary) {
    const double roof = std::max(r.flops / kPeakFlops, r.bytes / kPeakBytes);
    std::printf("  %-28s ours %9.1f us %7.1f TF/s %6.1f%% roof | cuBLAS loop %9.1f us %7.1f TF/s %6.1f%% roof\n",
                r.name.c_str(), r.ours * 1e6, r.flops / r.ours / 1e12, 100 * roof / r.ours, r.base * 1e6,
                r.flops / r.base / 1e12, 100 * roof / r.base);
  }
  return 0;
}
