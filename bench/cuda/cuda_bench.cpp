// cuda_bench: the dense projections (bf16): our linear() vs bare cublasGemmEx on the same shapes.
// Common conventions (validation before timing, CUDA-event medians, roofline): bench_util.h.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "cuda/attention.h"
#include "cuda/matmul.h"
#include "cuda/model.h"
#include "cuda/moe.h"
#include "reference/attention.h"
#include "reference/moe.h"
#include "io/config.h"
#include "io/random_checkpoint.h"

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

}  // namespace

int main() {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("%s: no CUDA device (%s); nothing measured\n", "cuda_bench", why.c_str());
    return 0;
  }
  std::printf("%s on %s (%d SMs); roofline = max(FLOPs/989 TF/s, bytes/3.35 TB/s); median of N\n", "cuda_bench",
              cuda::gpu().name.c_str(), cuda::gpu().sms);
  DeviceTensor<int32_t> flush({64ll << 20});  // 256 MB
  g_flush = &flush;
  std::printf("| %-44s | %13s | %12s | %6s | %13s | %12s | %6s | baseline\n", "case", "ours", "ours", "%roof", "baseline",
              "baseline", "%roof");
  bench_linear(1, 4096, 2048, "q_proj bf16 M=1 (2048->4096)");
  bench_linear(4096, 4096, 2048, "q_proj bf16 M=4096 (2048->4096)");
  bench_linear(4096, 2048, 4096, "o_proj bf16 M=4096 (4096->2048)");
  bench_linear(1, 120832, 2048, "lm_head bf16 M=1 (2048->120832)");
  return 0;
}
