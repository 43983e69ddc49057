// fixture_check.h: the whole model on a checkpoint, the CUDA path (T = float or double) against
// the CPU reference's exact mode: prefill tensor by tensor, every decode step's tensors, expert
// selections, greedy tokens and the generated logits.
//
//   ids       = 13 tokens, (i·37 + 5) mod V
//   tensors   rel-L2(cuda, exact) <= `bound` on every recorded float tensor (prefill and the
//             n_generate − 1 decode steps), except the router's top-k margin: a difference of two
//             near-equal scores, held to `margin_bound` absolute
//   ints      moe.topk_ids identical, token by token
//   tokens    greedy tokens identical; generate logits rel-L2 <= `bound`
// The measured worst values are printed.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>

#include "cuda/model.h"
#include "reference/model.h"
#include "tests/common/map_sink.h"
#include "tests/cuda/cuda_test_util.h"

namespace hyoracle::test {

template <class T>
void check_fixture_dir(const std::string& dir, const std::string& label, int64_t n_generate, double bound,
                       double margin_bound) {
  Checkpoint ck(dir);
  const ModelConfig& c = ck.config();
  const Numerics exact{Precision::exact, 1};
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 13; ++i) ids.push_back((i * 37 + 5) % c.vocab_size);

  const ModelWeights<double> ref_m = load_model<double>(ck);
  KVCache<double> ref_cache = make_cache<double>(c);
  MapSink ref, ref_steps;
  const Tensor<double> ref_logits = forward(ref_m, ids, ref_cache, exact, Recorder{&ref, ""});
  const Generation<double> ref_gen = generate_greedy(ref_m, ref_logits, ref_cache, n_generate, exact, &ref_steps);

  const cuda::ModelWeights<T> m = cuda::load_model<T>(ck);
  cuda::KVCache<T> cache = cuda::make_cache<T>(c, int64_t(ids.size()) + n_generate);
  MapSink got, got_steps;
  const auto logits = cuda::forward(m, ids, cache, Recorder{&got, ""});
  const auto gen = cuda::generate_greedy(m, logits, cache, n_generate, &got_steps);

  double worst = 0, min_margin = INFINITY, max_margin_abs = 0;
  std::string worst_name;
  int64_t compared = 0, selections = 0;
  for (const MapSink* pair : {&ref, &ref_steps}) {
    const MapSink& g = pair == &ref ? got : got_steps;
    for (const auto& [n, r] : pair->tensors) {
      ASSERT_TRUE(g.tensors.count(n)) << n << " missing from the CUDA recording";
      const Tensor<double>& x = g.tensors.at(n);
      ASSERT_EQ(x.shape, r.shape) << n;
      if (n.find("topk_margin") != std::string::npos) {
        double worst_abs = 0;
        for (size_t i = 0; i < r.data.size(); ++i) {
          min_margin = std::min(min_margin, r.data[i]);
          if (std::isfinite(r.data[i])) worst_abs = std::max(worst_abs, std::fabs(x.data[i] - r.data[i]));
        }
        EXPECT_LE(worst_abs, margin_bound) << n << " (absolute; rel-L2 " << rel_l2(x.data, r.data) << ")";
        max_margin_abs = std::max(max_margin_abs, worst_abs);
        ++compared;
        continue;
      }
      const double e = rel_l2(x.data, r.data);
      if (e > worst) worst = e, worst_name = n;
      EXPECT_LE(e, bound) << n;
      ++compared;
    }
    for (const auto& [n, r] : pair->ints) {
      ASSERT_TRUE(g.ints.count(n)) << n;
      EXPECT_EQ(g.ints.at(n), r) << n << ": selections differ";
      if (n.find("topk_ids") != std::string::npos) ++selections;
    }
  }
  EXPECT_EQ(gen.tokens, ref_gen.tokens);
  const double le = rel_l2(gen.logits.data, ref_gen.logits.data);
  EXPECT_LE(le, bound) << "generate logits";
  std::printf("  %s %s: %lld tensors, %lld expert selections (prefill + %lld decode steps), worst rel-L2 %.3e (%s); "
              "generate.logits %.3e; smallest router margin %.3g, worst margin error %.2e absolute; tokens",
              cuda::dtype_label<T>(), label.c_str(), (long long)compared, (long long)selections,
              (long long)(n_generate - 1), worst, worst_name.c_str(), le, min_margin, max_margin_abs);
  for (auto t : gen.tokens) std::printf(" %lld", (long long)t);
  std::printf(" (reference");
  for (auto t : ref_gen.tokens) std::printf(" %lld", (long long)t);
  std::printf(")\n");
  EXPECT_GE(compared, 40);
}

// A committed fixture, fixtures/<name>.
template <class T>
void check_fixture(const std::string& name, int64_t n_generate, double bound, double margin_bound) {
  check_fixture_dir<T>(std::string(HYORACLE_SOURCE_DIR) + "/fixtures/" + name, name, n_generate, bound, margin_bound);
}

}  // namespace hyoracle::test
