// bench_reference_layer: how fast and how small the CPU reference runs one full-size MoE layer.
//
//   bench_reference_layer [--preset mt2|hy3|hunyuan-large] [--model DIR] [--tokens 512] [--threads N]
//                         [--no-decode] [--write-only]
//
// When DIR (default: a temp dir per preset) holds no checkpoint, it first writes a full-size
// single-MoE-layer checkpoint (mt2, hy3: dense layer 0 + MoE layer 1; hunyuan-large: one MoE
// layer of Tencent's Hunyuan-Large, H 6400, 80/8 heads of 80, 16 experts of 18304 + one shared,
// top-1) with the real hidden size, heads, experts and widths and vocabulary 256 (minutes).
// Hunyuan-Large's layer in double with every expert resident would need 48 GB, so its decode
// figure (which keeps the weights resident) is left out.
// It prints, each next to a baseline measured in the same run:
//   - prefill of layer 1 at T tokens, double and fp32, experts expanded on use: achieved
//     GFLOP/s (FLOPs counted analytically) against OpenBLAS dgemm/sgemm on 2048³ with the same
//     thread count; and the peak resident set;
//   - one decode token through layer 1 with every weight resident (KV cache of T tokens):
//     bytes it must read over the time, against the same-run memory read bandwidth.
#include <cblas.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "io/checkpoint.h"
#include "reference/decoder_layer.h"
#include "reference/matmul.h"
#include "reference/model.h"
#include "io/random_checkpoint.h"

using namespace hyoracle;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double peak_rss_gb() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1e6;  // ru_maxrss is in KiB
}

// Same-run baseline: OpenBLAS GEMM rate on n³ with `threads` threads (best of 3), GFLOP/s.
template <class S>
double gemm_rate(int n, int threads) {
  std::vector<S> a(size_t(n) * n, S(0.5)), b(size_t(n) * n, S(0.25)), c(size_t(n) * n);
  openblas_set_num_threads(threads);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    if constexpr (std::is_same_v<S, double>)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, a.data(), n, b.data(), n, 0.0, c.data(), n);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, seconds_since(t0));
  }
  openblas_set_num_threads(1);
  return 2.0 * n * n * double(n) / best / 1e9;
}

// Same-run baseline: read bandwidth of summing a 1 GiB array with `threads` threads, GB/s.
double read_bandwidth(int threads) {
  const size_t n = (size_t(1) << 30) / sizeof(double);
  std::vector<double> v(n, 1.0);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> part(static_cast<size_t>(threads));
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        // Eight independent sums so the loop is limited by memory, not by add latency.
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        const size_t lo = n * t / threads / 8 * 8, hi = n * (t + 1) / threads / 8 * 8;
        for (size_t i = lo; i < hi; i += 8)
          for (int j = 0; j < 8; ++j) s[j] += v[i + j];
        part[t] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
      });
    for (auto& th : pool) th.join();
    best = std::min(best, seconds_since(t0));
    if (part[0] < 0) std::printf("impossible\n");
  }
  return double(n * sizeof(double)) / best / 1e9;
}

CheckpointSpec preset(const std::string& name) {
  CheckpointSpec s;
  if (name == "hunyuan-large") {
    s.model_type = "hunyuan";
    s.vocab_size = 256, s.num_hidden_layers = 1, s.first_k_dense_replace = 0;
    s.hidden_size = 6400, s.num_attention_heads = 80, s.num_key_value_heads = 8, s.head_dim = 80;
    s.intermediate_size = s.moe_intermediate_size = 18304;
    s.num_experts = 16, s.num_experts_per_tok = 1, s.num_shared_experts = 1;
    s.cla_share_factor = 2, s.rope_theta = 10000.0, s.rope_alpha = 1000.0, s.tie_word_embeddings = true;
    s.seed = 11;
    return s;
  }
  if (name != "hy3" && name != "mt2") fail("--preset: expected mt2, hy3 or hunyuan-large, got \"" + name + "\"");
  s.vocab_size = 256;
  s.num_hidden_layers = 2;
  s.head_dim = 128;
  s.num_experts_per_tok = 8;
  s.num_shared_experts = 1;
  s.seed = 11;
  if (name == "hy3") {
    s.hidden_size = 4096, s.intermediate_size = 13312, s.moe_intermediate_size = 1536;
    s.num_attention_heads = 64, s.num_key_value_heads = 8, s.num_experts = 192;
  } else {
    s.hidden_size = 2048, s.intermediate_size = 6912, s.moe_intermediate_size = 768;
    s.num_attention_heads = 32, s.num_key_value_heads = 4, s.num_experts = 128;
  }
  return s;
}

// FLOPs of one MoE layer over T new tokens with `past` cached ones (multiply-add = 2).
double layer_flops(const ModelConfig& c, int64_t T, int64_t past) {
  const double H = double(c.hidden_size), A = double(c.q_width()), Kv = double(c.kv_width());
  double f = 2.0 * double(T) * H * (A + 2 * Kv) + 2.0 * double(T) * A * H;
  double pairs = 0;  // visible (query, key) pairs under the causal mask
  for (int64_t i = 0; i < T; ++i) pairs += double(past + i + 1);
  f += 2 * 2.0 * pairs * double(c.head_dim) * double(c.num_attention_heads);
  f += 2.0 * double(T) * H * double(c.num_experts);
  f += 2.0 * 3 * H * double(c.moe_intermediate_size) * double(T * c.num_experts_per_tok);
  f += 2.0 * 3 * H * double(c.shared_width()) * double(T);
  return f;
}

template <class S>
Tensor<S> random_input(int64_t T, int64_t H) {
  Rng rng(5);
  Tensor<S> x({T, H});
  for (auto& v : x.data) v = S(rng.normal());
  return x;
}

// The MoE layer a preset's checkpoint holds: the last one.
int64_t moe_layer(const ModelConfig& c) { return c.num_hidden_layers - 1; }

template <class S>
void bench_prefill(const Checkpoint& ck, int64_t T, int threads, double gemm, const char* label) {
  const ModelConfig& c = ck.config();
  const int64_t L = moe_layer(c);
  const auto t0 = Clock::now();
  const LayerWeights<S> w = load_layer<S>(ck, L, /*resident_experts=*/false);
  const double load = seconds_since(t0);
  const Tensor<S> x = random_input<S>(T, c.hidden_size);
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[t] = t;
  const Numerics num{std::is_same_v<S, double> ? Precision::exact : Precision::fp32, threads};
  LayerCache<S> cache;
  const auto t1 = Clock::now();
  const Tensor<S> h = attention_block(x, L, w, c, pos, cache, num, Recorder{});
  const double attn = seconds_since(t1);
  ffn_block(h, L, w, c, num, Recorder{});
  const double sec = seconds_since(t1);
  const double rate = layer_flops(c, T, 0) / sec / 1e9;
  std::printf("prefill  %-6s T=%-5lld %7.2f s  %7.1f GFLOP/s  = %5.1f%% of same-run %s %.1f GFLOP/s   (attention %.2f s, MoE %.2f s; load %.2f s, peak RSS %.2f GB)\n",
              label, (long long)T, sec, rate, 100 * rate / gemm, std::is_same_v<S, double> ? "dgemm" : "sgemm", gemm, attn,
              sec - attn, load, peak_rss_gb());
}

template <class S>
void bench_decode(const Checkpoint& ck, int64_t T, int threads, double bandwidth, const char* label) {
  const ModelConfig& c = ck.config();
  const int64_t L = moe_layer(c);
  const LayerWeights<S> w = load_layer<S>(ck, L, /*resident_experts=*/true);
  const Numerics num{std::is_same_v<S, double> ? Precision::exact : Precision::fp32, threads};
  LayerCache<S> cache;
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[t] = t;
  decoder_layer(random_input<S>(T, c.hidden_size), L, w, c, pos, cache, num, Recorder{});
  std::vector<double> times;
  Rng rng(9);
  for (int rep = 0; rep < 7; ++rep) {
    Tensor<S> x({1, c.hidden_size});
    for (auto& v : x.data) v = S(rng.normal());
    const auto t0 = Clock::now();
    decoder_layer(x, L, w, c, {T + rep}, cache, num, Recorder{});
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  const double sec = times[times.size() / 2];
  const double H = double(c.hidden_size), es = double(sizeof(S));
  const double weights = es * (H * double(c.q_width()) * 2 + H * double(c.kv_width()) * 2 + H * double(c.num_experts) +
                               3 * H * double(c.shared_width()) +
                               3 * H * double(c.moe_intermediate_size) * double(c.num_experts_per_tok));
  const double kv = es * 2 * double(T + 4) * double(c.kv_width());
  const double bytes = weights + kv;
  std::printf("decode   %-6s KV=%-5lld %7.2f ms  %7.2f GB/s  = %5.1f%% of same-run read bandwidth %.2f GB/s  (%.0f MB touched, peak RSS %.2f GB)\n",
              label, (long long)T, sec * 1e3, bytes / sec / 1e9, 100 * bytes / sec / 1e9 / bandwidth, bandwidth, bytes / 1e6,
              peak_rss_gb());
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset_name = "mt2", model;
  int64_t T = 512;
  int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  bool decode = true, write_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--preset") preset_name = next();
    else if (a == "--model") model = next();
    else if (a == "--tokens") T = std::stoll(next());
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--no-decode") decode = false;
    else if (a == "--write-only") write_only = true;
    else {
      std::fprintf(stderr, "usage: bench_reference_layer [--preset mt2|hy3|hunyuan-large] [--model DIR] [--tokens T] [--threads N] [--no-decode] [--write-only]\n");
      return 2;
    }
  }
  init_blas_single_threaded();
  try {
    if (model.empty()) model = (std::filesystem::temp_directory_path() / ("hyoracle-bench-" + preset_name)).string();
    {
      if (!std::filesystem::exists(model + "/config.json")) {
        std::printf("writing a full-size %s single-layer checkpoint to %s ...\n", preset_name.c_str(), model.c_str());
        const auto t0 = Clock::now();
        write_random_checkpoint(preset(preset_name), model);
        std::printf("  written in %.0f s\n", seconds_since(t0));
      }
    }
    if (write_only) return 0;
    const Checkpoint ck(model);
    std::printf("model %s: H=%lld, E=%lld, I_e=%lld, top-%lld; %d threads\n", model.c_str(),
                (long long)ck.config().hidden_size, (long long)ck.config().num_experts,
                (long long)ck.config().moe_intermediate_size, (long long)ck.config().num_experts_per_tok, threads);
    const double dgemm = gemm_rate<double>(2048, threads), sgemm = gemm_rate<float>(2048, threads);
    const double bw = read_bandwidth(threads);
    std::printf("baselines (same run): dgemm %.1f GFLOP/s, sgemm %.1f GFLOP/s, read bandwidth %.2f GB/s\n", dgemm, sgemm, bw);
    bench_prefill<double>(ck, T, threads, dgemm, "double");
    bench_prefill<float>(ck, T, threads, sgemm, "fp32");
    if (decode && ck.config().family == Family::hunyuan_v1) {
      std::printf("decode   left out: Hunyuan-Large's experts resident in double need %.0f GB\n",
                  8.0 * 3 * double(ck.config().hidden_size) * double(ck.config().moe_intermediate_size) *
                      double(ck.config().num_experts + ck.config().num_shared_experts) / 1e9);
    } else if (decode) {
      bench_decode<double>(ck, T, threads, bw, "double");
      bench_decode<float>(ck, T, threads, bw, "fp32");
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_reference_layer: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
