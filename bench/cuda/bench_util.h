// bench_util.h: what every CUDA benchmark shares: timing (CUDA events, median, optional graph
// replay, L2 flush between repetitions), the report line (achieved vs roofline next to a same-run
// baseline), validation before timing, the Hy-MT2 sizes, random bf16 activations.
//   roofline = max(FLOPs / 989 TFLOP/s, bytes / 3.35 TB/s)   (H100 SXM datasheet, bf16 dense),
// the project's roofline formula. On an H200 (4.8 TB/s) memory-bound cases are also reported against the
// copy bandwidth measured in the same run (measured_copy_bandwidth()).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "io/config.h"
#include "io/random_checkpoint.h"

namespace hyoracle::bench {
using cuda::bf16;
using cuda::DeviceTensor;

constexpr double kPeakFlops = 989e12, kPeakBytes = 3.35e12;

struct Timing {
  double median_s = 0;
};

inline DeviceTensor<int32_t>* g_flush = nullptr;  // set by main: a 256 MB buffer
// Optional read-only flush: instead of the memset, which leaves ~50 MB of
// dirty lines in L2 that the timed kernel then pays to write back (about 13 µs at 4 TB/s, a fixed
// cost in every memory-bound timing after it), read a never-written 256 MB buffer (cuBLAS sasum
// into a device scalar: queued like the memset, so the timed work starts right after it, with no
// host launch gap in the timing): L2 ends full of clean, unrelated lines, as after a previous
// layer's weight reads in a real decode step. (The sum stays on the device: bringing it back to
// the host would block, and the timed launch would then start on an idle GPU, its launch latency
// inside the timing.)
// use_read_flush(true) switches it on (its 256 MB buffer is made and filled on first use).
inline DeviceTensor<float>& read_flush_buffer() {
  static DeviceTensor<float> b = [] {
    DeviceTensor<float> t({64ll << 20});  // written once here, only read afterwards
    cuda::check(cudaMemsetAsync(t.data(), 0x3C, size_t(t.numel()) * 4, cuda::gpu().stream), "read flush: fill");
    return t;
  }();
  return b;
}
inline bool g_use_read_flush = false;
inline void use_read_flush(bool on) {
  if (on) read_flush_buffer();
  g_use_read_flush = on;
}
inline void flush_l2(int i) {
  if (g_use_read_flush) {
    static DeviceTensor<float> sink({1});
    const DeviceTensor<float>& buf = read_flush_buffer();
    cublasHandle_t h = cuda::gpu().blas;
    cublasPointerMode_t mode;
    cuda::check(cublasGetPointerMode(h, &mode), "read flush: pointer mode");
    cuda::check(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), "read flush: pointer mode");
    cuda::check(cublasSasum(h, int(buf.numel()), buf.data(), 1, sink.data()), "read flush");
    cuda::check(cublasSetPointerMode(h, mode), "read flush: pointer mode");
  } else {
    cudaMemsetAsync(g_flush->data(), i & 0xff, size_t(g_flush->numel()) * 4, cuda::gpu().stream);
  }
}

// Median time of fn() over n runs, each between two events, with an L2 flush before each.
inline Timing time_it(const std::function<void()>& fn, int n, bool graph) {
  cudaStream_t s = cuda::gpu().stream;
  cudaGraphExec_t exec = nullptr;
  if (graph) {
    cudaGraph_t gr;
    cuda::check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capture");
    fn();
    cuda::check(cudaStreamEndCapture(s, &gr), "end capture");
    cuda::check(cudaGraphInstantiate(&exec, gr, 0), "instantiate");
    cudaGraphDestroy(gr);
  }
  auto run = [&] { graph ? cuda::check(cudaGraphLaunch(exec, s), "graph launch") : fn(); };
  for (int i = 0; i < 3; ++i) run();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> t;
  for (int i = 0; i < n; ++i) {
    flush_l2(i);
    cudaEventRecord(a, s);
    run();
    cudaEventRecord(b, s);
    cuda::check(cudaEventSynchronize(b), "event sync");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms * 1e-3);
  }
  if (exec) cudaGraphExecDestroy(exec);
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2]};
}

inline void report(const std::string& what, double flops, double bytes, double ours, double base, const std::string& base_name) {
  const double roof = std::max(flops / kPeakFlops, bytes / kPeakBytes);
  std::printf("| %-44s | %10.1f us | %7.2f TF/s | %5.1f%% | %10.1f us | %7.2f TF/s | %5.1f%% | %s\n", what.c_str(),
              ours * 1e6, flops / ours / 1e12, 100 * roof / ours, base * 1e6, flops / base / 1e12, 100 * roof / base,
              base_name.c_str());
}

inline bool validated(const std::string& what, double err, double limit) {
  std::printf("  validate %-40s rel-L2 %.3e (limit %.1e) %s\n", what.c_str(), err, limit, err <= limit ? "ok" : "WRONG: not timed");
  return err <= limit;
}

inline double rel_l2(const std::vector<float>& a, const std::vector<double>& b) {
  long double n = 0, d = 0;
  for (size_t i = 0; i < a.size(); ++i) n += (a[i] - b[i]) * (long double)(a[i] - b[i]), d += b[i] * (long double)b[i];
  return double(std::sqrt(n / d));
}

inline ModelConfig hy_mt2_config(int64_t layers) {
  CheckpointSpec s;
  s.vocab_size = 120832;
  s.hidden_size = 2048;
  s.intermediate_size = 6912;
  s.moe_intermediate_size = 768;
  s.num_hidden_layers = layers;
  s.num_attention_heads = 32;
  s.num_key_value_heads = 4;
  s.head_dim = 128;
  s.num_experts = 128;
  s.num_experts_per_tok = 8;
  return parse_config(checkpoint_config_json(s), "Hy-MT2-30B-A3B sizes");
}

inline DeviceTensor<bf16> random_activations(int64_t rows, int64_t cols, uint64_t seed) {
  Rng r(seed);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (auto& x : v) x = float(r.normal());
  return cuda::upload_values<bf16>(v, {rows, cols});
}

inline Tensor<double> host(const DeviceTensor<bf16>& t) { return cast<double>(cuda::download(t)); }
inline Tensor<double> rows_of(const Tensor<double>& t, int64_t r0, int64_t n) {
  Tensor<double> o({n, t.cols()});
  std::copy_n(t.data.begin() + r0 * t.cols(), n * t.cols(), o.data.begin());
  return o;
}

// Device-to-device copy bandwidth measured now (bytes read + written per second, 1 GiB, median
// of 10): the memory ceiling of this card as found, used next to the datasheet figure.
inline double measured_copy_bandwidth() {
  static double bw = 0;
  if (bw > 0) return bw;
  const int64_t n = int64_t(1) << 28;  // 2^28 floats = 1 GiB
  DeviceTensor<float> a({n}), b({n});
  cuda::check(cudaMemsetAsync(a.data(), 0x3f, size_t(n) * 4, cuda::gpu().stream), "bandwidth fill");
  const double t = time_it([&] {
    cuda::check(cudaMemcpyAsync(b.data(), a.data(), size_t(n) * 4, cudaMemcpyDeviceToDevice, cuda::gpu().stream), "copy");
  }, 10, false).median_s;
  bw = 2.0 * double(n) * 4 / t;
  return bw;
}

}  // namespace hyoracle::bench
