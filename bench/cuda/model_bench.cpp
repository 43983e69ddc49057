// model_bench: the whole full-size Hy-MT2 model (48 layers, 128 experts, bf16, random weights built
// in GPU memory: 61 GB) decoding one sequence (batch 1): tokens per second.
//
// Validation before timing: the captured decode step (cuda/model.h DecodeGraph) must give the
// same tokens and bit-identical logits as the eager step on this model (the kernels themselves are
// checked against the CPU reference by cuda_tests). The baseline in the same run is our own eager
// path (the same kernels launched one by one from the host); HF transformers at the same sizes is
// hf_model_baseline.py, run in the same device call.
//
// Bytes a token must move (the roofline): every weight the step reads once (embedding row,
// attention and norm weights of every layer, the router in fp32, the bias, the 8 routed experts
// the router chose at each layer, the shared expert, layer 0's dense MLP, the final norm, lm_head)
// plus the KV cache rows attended; FLOPs are 2 per weight used plus attention. Reported against
// the H100 roofline of bench_util.h (3.35 TB/s) and against this card's copy bandwidth measured now.
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "cuda/elementwise.h"
#include "cuda/matmul.h"
#include "cuda/model.h"
#include "cuda/rms_norm.h"
#include "cuda/rope.h"
#include "bench/cuda/bench_util.h"

using namespace hyoracle;
using namespace hyoracle::bench;

namespace {

struct StepCost {
  double bytes = 0, flops = 0;
};

// Bytes and FLOPs of one decode step at KV length Tc with the given distinct experts per layer.
StepCost decode_cost(const ModelConfig& c, int64_t Tc, int64_t experts_per_layer) {
  const double H = double(c.hidden_size), A = double(c.q_width()), Kv = double(c.kv_width()), V = double(c.vocab_size);
  const double I = double(c.moe_intermediate_size), Is = double(c.shared_width()), E = double(c.num_experts);
  const double d = double(c.head_dim), nq = double(c.num_attention_heads), nkv = double(c.num_key_value_heads);
  StepCost s;
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) {
    const double attn_w = A * H + 2 * Kv * H + H * A;  // q, k, v, o
    s.bytes += 2 * (attn_w + 2 * H + 2 * d);           // + input/post norm, q/k norm
    s.flops += 2 * attn_w + 4 * nq * d * double(Tc);
    s.bytes += 2 * 2 * double(Tc) * nkv * d;           // K and V rows attended
    if (c.is_dense(L)) {
      s.bytes += 2 * 3 * double(c.intermediate_size) * H;
      s.flops += 2 * 3 * double(c.intermediate_size) * H;
    } else {
      const double used = double(experts_per_layer) * 3 * I * H + 3 * Is * H;
      s.bytes += 2 * used + 4 * E * H + 4 * E;         // experts + shared (bf16), router + bias (fp32)
      s.flops += 2 * used + 2 * E * H;
    }
  }
  s.bytes += 2 * (H + H + V * H);  // embedding row, final norm, lm_head
  s.flops += 2 * V * H;
  return s;
}

void bench_decode(const cuda::ModelWeights<bf16>& m, int64_t prompt, int64_t steps, double copy_bw) {
  const ModelConfig& c = m.config;
  Rng r(100 + uint64_t(prompt));
  std::vector<int64_t> ids(static_cast<size_t>(prompt));
  for (auto& t : ids) t = int64_t(r.next() % uint64_t(c.vocab_size));
  const int64_t n_check = 9;
  using clock = std::chrono::steady_clock;
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };

  // Validation: eager vs captured on the same prompt (fresh caches of the same capacity).
  const int64_t cap = prompt + steps + 1;
  cuda::KVCache<bf16> ce = cuda::make_cache<bf16>(c, cap);
  const auto tp0 = clock::now();
  const cuda::DeviceTensor<float> pe = cuda::forward(m, ids, ce, Recorder{});
  cuda::synchronize();
  const auto tp1 = clock::now();
  const cuda::Generation eager = cuda::generate_greedy(m, pe, ce, n_check, nullptr);
  cuda::synchronize();
  const auto tp2 = clock::now();
  cuda::KVCache<bf16> cg = cuda::make_cache<bf16>(c, cap);
  const cuda::DeviceTensor<float> pg = cuda::forward(m, ids, cg, Recorder{});
  const cuda::Generation graph = cuda::generate_greedy_graph(m, pg, cg, n_check);
  size_t differ = 0;
  for (size_t i = 0; i < graph.logits.data.size(); ++i) differ += graph.logits.data[i] != eager.logits.data[i];
  const bool same_tokens = graph.tokens == eager.tokens;
  std::printf("  validate decode graph vs eager, prompt %lld, %lld steps: tokens %s, %zu of %zu logits differ %s\n",
              (long long)prompt, (long long)n_check, same_tokens ? "identical" : "DIFFER", differ, graph.logits.data.size(),
              same_tokens && differ == 0 ? "ok" : "WRONG: not timed");
  if (!same_tokens || differ) return;
  // Logits must be finite and not degenerate (a model whose activations blew up would still agree
  // with itself).
  double sum2 = 0;
  for (float v : graph.logits.data) sum2 += double(v) * v;
  const double rms = std::sqrt(sum2 / double(graph.logits.data.size()));
  std::printf("  logits rms %.3f (finite: %s); tokens", rms, std::isfinite(rms) ? "yes" : "NO");
  for (auto t : graph.tokens) std::printf(" %lld", (long long)t);
  std::printf("\n");
  if (!std::isfinite(rms) || rms == 0) return;

  // The eager baseline's decode time per token (host launches; logits copied back each step).
  const double eager_step = secs(tp1, tp2) / double(n_check - 1);

  // Timed: `steps` replays back to back from the prompt, CUDA events around them.
  cuda::KVCache<bf16> ct = cuda::make_cache<bf16>(c, cap);
  const cuda::DeviceTensor<float> pt = cuda::forward(m, ids, ct, Recorder{});
  const int64_t first = cuda::argmax_rows(
      cuda::DeviceTensor<float>::view(const_cast<float*>(pt.data()) + (pt.rows() - 1) * c.vocab_size, {1, c.vocab_size}))[0];
  std::unique_ptr<cuda::DecodeGraph<bf16>> g = cuda::capture_decode_step(m, ct, first);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a, cuda::gpu().stream);
  for (int64_t s = 0; s < steps; ++s) cuda::replay_decode_step(*g, ct);
  cudaEventRecord(b, cuda::gpu().stream);
  cuda::check(cudaEventSynchronize(b), "decode timing");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  const double step_s = ms * 1e-3 / double(steps);
  const std::vector<int64_t> bad = cuda::download_ints(g->bad_id);
  if (bad[0]) {
    std::printf("  WRONG: a fed token was outside the vocabulary; not reported\n");
    return;
  }

  // Cost at the mean KV length of the timed steps, with 8 distinct experts per layer (top-8 of
  // one token are distinct by construction).
  const StepCost cost = decode_cost(c, prompt + steps / 2, c.num_experts_per_tok);
  const double roof_h100 = std::max(cost.flops / 989e12, cost.bytes / 3.35e12);
  const double roof_here = std::max(cost.flops / 989e12, cost.bytes / copy_bw);
  std::printf("  prompt %lld (prefill %.1f ms eager), %lld decode steps; %.2f GB and %.1f GFLOP per token\n", (long long)prompt,
              secs(tp0, tp1) * 1e3, (long long)steps, cost.bytes / 1e9, cost.flops / 1e9);
  std::printf("| %-34s | %8.1f tok/s | %7.3f ms/token | %5.1f%% of H100 roofline (%.0f tok/s) | %5.1f%% of this card's (%.0f tok/s at %.2f TB/s)\n",
              ("decode graph, KV " + std::to_string(prompt) + "+").c_str(), 1 / step_s, step_s * 1e3, 100 * roof_h100 / step_s,
              1 / roof_h100, 100 * roof_here / step_s, 1 / roof_here, copy_bw / 1e12);
  std::printf("| %-34s | %8.1f tok/s | %7.3f ms/token | %5.1f%% of H100 roofline | eager / graph time %.2fx\n",
              "baseline: eager (same kernels)", 1 / eager_step, eager_step * 1e3, 100 * roof_h100 / eager_step,
              eager_step / step_s);
}

// Where one decode step's time goes: each part of one MoE layer (layer 1) captured and replayed as
// its own graph (median of 200, L2 flushed by a read between replays), at KV length Tc. The parts do not
// sum exactly to the layer (launch gaps between graphs differ from those inside one).
void layer_breakdown(const cuda::ModelWeights<bf16>& m, int64_t Tc) {
  const ModelConfig& c = m.config;
  const cuda::LayerWeights<bf16>& w = m.layers[1];
  const int64_t H = c.hidden_size, nq = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim;
  cuda::KVCache<bf16> cache = cuda::make_cache<bf16>(c, Tc + 1);
  for (auto& l : cache.layers) l.length = Tc;  // rows 0..Tc-1: zeros (attention cost does not depend on values)
  const DeviceTensor<bf16> x = random_activations(1, H, 5);
  const DeviceTensor<int64_t> pos = cuda::upload_ints({Tc});
  DeviceTensor<bf16> a({1, H}), q({1, nq, d}), k({1, nkv, d}), v({1, nkv, d}), ctx({1, nq * d}), o({1, H});
  auto t = [&](const std::function<void()>& fn) { return time_it(fn, 200, true).median_s * 1e6; };
  const double layer = t([&] { cuda::decoder_layer_at(x, 1, w, c, pos, cache.layers[1], Tc + 1, Recorder{}); });
  const double moe = t([&] {
    cuda::moe_block(a, w.router, w.expert_bias, w.experts, w.shared, c.num_experts_per_tok, c.router_scaling_factor, true);
  });
  const double proj = t([&] {
    cuda::linear(a, w.wq, q);
    cuda::linear(a, w.wk, k);
    cuda::linear(a, w.wv, v);
    cuda::linear(ctx, w.wo, o);
  });
  const double attn = t([&] { cuda::attention(q, cache.layers[1].k, cache.layers[1].v, Tc + 1, pos, ctx); });
  const double norms = t([&] {
    cuda::rms_norm(x, w.input_norm, c.rms_norm_eps, a);
    cuda::rms_norm(q, w.q_norm, c.rms_norm_eps, q);
    cuda::rms_norm(k, w.k_norm, c.rms_norm_eps, k);
    cuda::apply_rope(q, pos, c.rope_theta);
    cuda::apply_rope(k, pos, c.rope_theta);
    cuda::add(x, o, a);
    cuda::rms_norm(a, w.post_norm, c.rms_norm_eps, a);
    cuda::add(a, o, a);
  });
  const double lm = t([&] {
    DeviceTensor<float> logits({1, c.vocab_size});
    cuda::linear<bf16, float>(a, m.lm_head, logits);
  });
  std::printf("  one MoE layer at KV %lld: %.1f us = MoE block %.1f + q/k/v/o projections %.1f + attention %.1f + "
              "5 norms, 2 RoPE, 2 adds %.1f + the rest %.1f; lm_head %.1f us per token\n",
              (long long)Tc, layer, moe, proj, attn, norms, layer - moe - proj - attn - norms, lm);
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!cuda::device_available(&why)) {
    std::printf("model_bench: no CUDA device (%s); nothing measured\n", why.c_str());
    return 0;
  }
  const int64_t layers = argc > 1 ? std::atoll(argv[1]) : 48;
  std::printf("model_bench on %s (%d SMs): Hy-MT2-30B-A3B sizes, %lld layers, bf16, random weights, batch 1\n",
              cuda::gpu().name.c_str(), cuda::gpu().sms, (long long)layers);
  DeviceTensor<int32_t> flush({64ll << 20});
  g_flush = &flush;
  // The layer breakdown flushes L2 by reading (bench_util.h): clean, unrelated lines, as a real
  // step leaves after the previous layer's weight reads.
  use_read_flush(true);
  const double copy_bw = measured_copy_bandwidth();
  std::printf("  measured device-to-device copy: %.2f TB/s (read + write)\n", copy_bw / 1e12);
  const ModelConfig c = hy_mt2_config(layers);
  const auto t0 = std::chrono::steady_clock::now();
  const cuda::ModelWeights<bf16> m = cuda::random_model<bf16>(c, 1);
  cuda::synchronize();
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  std::printf("  weights built on the GPU in %.1f s; device memory in use %.1f GB of %.1f GB\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), double(total_b - free_b) / 1e9,
              double(total_b) / 1e9);
  layer_breakdown(m, 32);
  layer_breakdown(m, 2048);
  bench_decode(m, 32, 128, copy_bw);
  bench_decode(m, 2048, 128, copy_bw);
  return 0;
}
