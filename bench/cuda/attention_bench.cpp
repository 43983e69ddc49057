// attention_bench: GQA attention (bf16) at Hy-MT2 sizes, prefill T=4096 and decode over a >= 64 MB
// KV cache; the same-run baseline is torch SDPA (sdpa_baseline.py). Conventions: bench_util.h.
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

int main() {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("%s: no CUDA device (%s); nothing measured\n", "attention_bench", why.c_str());
    return 0;
  }
  std::printf("%s on %s (%d SMs); roofline = max(FLOPs/989 TF/s, bytes/3.35 TB/s); median of N\n", "attention_bench",
              cuda::gpu().name.c_str(), cuda::gpu().sms);
  DeviceTensor<int32_t> flush({64ll << 20});  // 256 MB
  g_flush = &flush;
  const ModelConfig c = hy_mt2_config(2);
  std::printf("| %-44s | %13s | %12s | %6s | %13s | %12s | %6s | baseline\n", "case", "ours", "ours", "%roof", "baseline",
              "baseline", "%roof");
  bench_attention(4096, 0, c);
  bench_attention(1, 32767, c);
  return 0;
}
