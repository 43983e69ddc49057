// attention_bench: GQA attention (bf16) on every case of tests/cuda/op_cases.h (the table
// cuda_tests checks against the reference): first the Hy-MT2 sizes (32 query heads, 4 KV heads,
// d = 128, causal): prefill T = 4096 (and 1024, and a chunk of 512 after 3584 cached), decode
// T = 1 over KV caches of 4096, 32768 (67 MB) and 131072 positions; then the odd sizes; then the
// benchmark-only kernel variants (bench/cuda/attention_variants.h). Conventions: bench_util.h.
// The same-run baseline is torch SDPA: run bench/cuda/sdpa_baseline.py first in the same device
// call with --out FILE, and pass FILE here (attention_bench FILE); its lines are
// "<case key> <median seconds> <backend>" with the table's keys. Each case prints ours and SDPA
// as % of the H100 roofline, the ratio of throughputs (SDPA time / ours), and for decode the
// bandwidth achieved against the device-to-device copy bandwidth measured in this run.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "bench/cuda/attention_variants.h"
#include "bench/cuda/bench_util.h"
#include "cuda/attention.h"
#include "reference/attention.h"
#include "tests/cuda/op_cases.h"

using namespace hyoracle;
using namespace hyoracle::bench;

namespace {

struct Baseline {
  double seconds = NAN;
  std::string backend = "none";
};
std::map<std::string, Baseline> read_baselines(const char* path) {
  std::map<std::string, Baseline> b;
  if (!path) return b;
  std::ifstream f(path);
  if (!f) {
    std::printf("  (no SDPA file %s: baseline columns are nan)\n", path);
    return b;
  }
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream s(line);
    std::string key;
    Baseline x;
    if (s >> key >> x.seconds >> x.backend) b[key] = x;
  }
  return b;
}

struct Row {
  std::string name;
  double ours_s, base_s, flops, bytes;
  std::string backend;
};
std::vector<Row> g_rows;

using Runner = std::function<void(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t,
                                  const DeviceTensor<int64_t>&, DeviceTensor<bf16>&)>;
void dispatch(const DeviceTensor<bf16>& q, const DeviceTensor<bf16>& k, const DeviceTensor<bf16>& v, int64_t Tc,
              const DeviceTensor<int64_t>& pos, DeviceTensor<bf16>& ctx) {
  cuda::attention(q, k, v, Tc, pos, ctx);
}

// Validates the case's checked rows (cases::AttentionCase::checked_rows, as cuda_tests) against
// the exact reference, then times `run` (by default attention(), the dispatcher: decode kernel for
// T·g <= 64 rows per KV head, prefill otherwise).
void bench_attention(const cases::AttentionCase& c, const std::map<std::string, Baseline>& base, const Runner& run = dispatch,
                     const std::string& variant = "") {
  const int64_t T = c.T, past = c.past, nq = c.nq, nkv = c.nkv, d = c.d, Tc = c.Tc();
  DeviceTensor<bf16> q = random_activations(T * nq, d, 20).reshaped({T, nq, d});
  DeviceTensor<bf16> kc = random_activations(Tc * nkv, d, 21).reshaped({Tc, nkv, d});
  DeviceTensor<bf16> vc = random_activations(Tc * nkv, d, 22).reshaped({Tc, nkv, d});
  std::vector<int64_t> qp(static_cast<size_t>(T));
  std::iota(qp.begin(), qp.end(), past);
  const DeviceTensor<int64_t> pos = cuda::upload_ints(qp);
  DeviceTensor<bf16> ctx({T, nq * d});
  cuda::check(cudaMemsetAsync(ctx.data(), 0xff, size_t(ctx.numel()) * 2, cuda::gpu().stream), "poison");  // NaN
  run(q, kc, vc, Tc, pos, ctx);
  const std::vector<int64_t> chk = c.checked_rows();
  const Tensor<double> q_all = host(q);
  const Tensor<float> c_all = cuda::download(ctx);
  Tensor<double> qh({int64_t(chk.size()), nq, d});
  std::vector<int64_t> qp_chk, kp(static_cast<size_t>(Tc));
  std::vector<float> got;
  for (size_t r = 0; r < chk.size(); ++r) {
    std::copy_n(q_all.data.begin() + chk[r] * nq * d, nq * d, qh.data.begin() + int64_t(r) * nq * d);
    got.insert(got.end(), c_all.data.begin() + chk[r] * nq * d, c_all.data.begin() + (chk[r] + 1) * nq * d);
    qp_chk.push_back(qp[size_t(chk[r])]);
  }
  std::iota(kp.begin(), kp.end(), 0);
  const Tensor<double> ref = attention(qh, host(kc), host(vc), qp_chk, kp, Numerics{Precision::exact, 16});
  const std::string name = !c.model_size() ? "attention " + c.name()
                           : T > 1 ? "attention prefill T=" + std::to_string(T) + (past ? " past=" + std::to_string(past) : "")
                                   : "attention decode KV=" + std::to_string(Tc);
  const std::string label = name + variant;
  // Bound: 2u (bf16 u = 2^-8; the output's rounding and the rounded P, tests/cuda/attention_test.cpp).
  if (!validated(label, rel_l2(got, ref.data), 2 * std::ldexp(1.0, -8) + 1e-5)) return;
  double pairs = 0;
  for (int64_t i = 0; i < T; ++i) pairs += double(past + i + 1);
  const double flops = 4.0 * nq * d * pairs;
  const double bytes = 2.0 * (2 * (past + T) * nkv * d + 2 * T * nq * d);  // the visible keys, q and the context
  const bool graph = T <= 16;  // decode: one graph replay (2 kernels), as the model's decode step runs
  const double ours = time_it([&] { run(q, kc, vc, Tc, pos, ctx); }, graph ? 100 : 20, graph).median_s;
  const auto it = base.find(c.key);
  const Baseline b = it == base.end() ? Baseline{} : it->second;
  std::printf("  (KV cache %.1f MB)\n", 2.0 * 2 * Tc * nkv * d / 1e6);
  report(label, flops, bytes, ours, b.seconds, "torch SDPA (" + b.backend + ")");
  g_rows.push_back({label, ours, b.seconds, flops, bytes, b.backend});
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("%s: no CUDA device (%s); nothing measured\n", "attention_bench", why.c_str());
    return 0;
  }
  std::printf("%s on %s (%d SMs); roofline = max(FLOPs/989 TF/s, bytes/3.35 TB/s); median of N\n", "attention_bench",
              cuda::gpu().name.c_str(), cuda::gpu().sms);
  DeviceTensor<int32_t> flush({64ll << 20});  // 256 MB
  g_flush = &flush;
  const double bw = measured_copy_bandwidth();
  std::printf("measured device-to-device copy bandwidth: %.2f TB/s (read + write)\n", bw / 1e12);
  const auto base = read_baselines(argc > 1 ? argv[1] : nullptr);
  std::printf("| %-58s | %13s | %12s | %6s | %13s | %12s | %6s | baseline\n", "case", "ours", "ours", "%roof", "baseline",
              "baseline", "%roof");
  const std::vector<cases::AttentionCase>& all = cases::attention_cases();
  for (const cases::AttentionCase& c : all)
    if (c.model_size()) bench_attention(c, base);
  // Decode again after a read-only flush (bench_util.h): L2 full of clean lines, as after the
  // previous layer's weight reads, instead of the memset's dirty ones, whose write-back the memset
  // rows above pay (~13 µs). The SDPA baseline of these rows was timed after sdpa_baseline.py's
  // own flush.
  use_read_flush(true);
  bench_attention(*cases::attention_case("decode32768"), base, dispatch, " (read flush)");
  bench_attention(*cases::attention_case("decode131072"), base, dispatch, " (read flush)");
  use_read_flush(false);
  for (const cases::AttentionCase& c : all)
    if (!c.model_size()) bench_attention(c, base);
  // Tuning variants (each validated first, like the cases above); ATTENTION_BENCH_VARIANTS=0 skips them.
  const char* variants_env = std::getenv("ATTENTION_BENCH_VARIANTS");
  const bool variants = !(variants_env && std::string(variants_env) == "0");
  for (const std::string& v : variants ? attention_variants() : std::vector<std::string>{}) {
    const bool pre = v.rfind("prefill", 0) == 0;
    const Runner run = [v](auto& q, auto& k, auto& vv, int64_t Tc, auto& p, auto& o) { attention_variant(v, q, k, vv, Tc, p, o); };
    bench_attention(*cases::attention_case(pre ? "prefill4096" : "decode32768"), base, run, " [" + v + "]");
    if (!pre) bench_attention(*cases::attention_case("decode131072"), base, run, " [" + v + "]");
  }
  std::printf("\nsummary (H100 roofline = max(FLOPs/989e12, bytes/3.35e12); decode also vs the copy bandwidth above)\n");
  std::printf("| %-58s | %10s | %8s | %6s | %10s | %8s | %6s | %12s | %9s | %9s |\n", "case", "ours us", "TF/s", "%roof",
              "SDPA us", "TF/s", "%roof", "ours/SDPA", "ours %bw", "SDPA %bw");
  auto pct = [](bool show, double x) {
    return show && std::isfinite(x) ? std::to_string(int(std::lround(100 * x))) + "%" : std::string("-");
  };
  for (const Row& r : g_rows) {
    const double roof = std::max(r.flops / kPeakFlops, r.bytes / kPeakBytes);
    const bool mem = r.bytes / kPeakBytes > r.flops / kPeakFlops;
    std::printf("| %-58s | %10.1f | %8.1f | %5.1f%% | %10.1f | %8.1f | %5.1f%% | %11.2fx | %8s | %8s | %s\n", r.name.c_str(),
                r.ours_s * 1e6, r.flops / r.ours_s / 1e12, 100 * roof / r.ours_s, r.base_s * 1e6, r.flops / r.base_s / 1e12,
                100 * roof / r.base_s, r.base_s / r.ours_s,
                pct(mem, r.bytes / r.ours_s / bw).c_str(), pct(mem, r.bytes / r.base_s / bw).c_str(),
                r.backend.c_str());
  }
  return 0;
}
