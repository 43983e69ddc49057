// The Hunyuan v1 family (docs/hunyuan_v1.md) on the CUDA path against the CPU exact reference, on
// the committed fixtures (fixture_check.h: prefill and decode tensors, expert selections, greedy
// tokens):
//   gen-tiny-hunyuan-large  Tencent's code: cross-layer attention (factor 2), top-1 weighted by
//                           p_max, q/k norms after RoPE, NTK-alpha RoPE, tied embeddings
//   gen-tiny-hunyuan-a13b   transformers' hunyuan_v1_moe: top-3 renormalised, two shards
//   gen-tiny-hunyuan-dense  transformers' hunyuan_v1_dense, plain RoPE
// and the same Hunyuan-Large shape written in Tencent's fused layout (qkv_proj per KV group,
// gate_and_up_proj [up; gate]). The fp64 path on the committed fixtures is in fp64_test.cpp.
//
// Bounds: fp32 rel-L2 <= 1e-5 on every tensor, as the hy_v3 whole-model test (model_test.cpp);
// the router's margin (a difference of two probabilities) within 1e-5 absolute; fp64 1e-13.
#include <gtest/gtest.h>

#include "cuda/model.h"
#include "io/random_checkpoint.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/fixture_check.h"

namespace hyoracle::test {
namespace {

constexpr double kF32Bound = 1e-5;

class CudaHunyuanModel : public CudaTest {};

TEST_F(CudaHunyuanModel, TinyLargeFp32MatchesTheExactReference) {
  check_fixture<float>("gen-tiny-hunyuan-large", 5, kF32Bound, kF32Bound);
}
TEST_F(CudaHunyuanModel, TinyA13bFp32MatchesTheExactReference) {
  check_fixture<float>("gen-tiny-hunyuan-a13b", 5, kF32Bound, kF32Bound);
}
TEST_F(CudaHunyuanModel, TinyDenseFp32MatchesTheExactReference) {
  check_fixture<float>("gen-tiny-hunyuan-dense", 5, kF32Bound, kF32Bound);
}

// The tiny Hunyuan-Large shape (tools/fixture_presets.cpp tiny-hunyuan-large: H 80, 4/2 heads × 20,
// E 4 top-1, 4 layers, CLA factor 2, alpha 1000, tied) in Tencent's fused layout.
CheckpointSpec fused_large_spec() {
  CheckpointSpec s;
  s.model_type = "hunyuan";
  s.fused = true;
  s.cla_share_factor = 2;
  s.rope_alpha = 1000.0;
  s.rope_theta = 10000.0;
  s.tie_word_embeddings = true;
  s.vocab_size = 288;
  s.hidden_size = 80;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 20;
  s.intermediate_size = s.moe_intermediate_size = 48;
  s.num_experts = 4;
  s.num_experts_per_tok = 1;
  s.num_shared_experts = 1;
  s.num_hidden_layers = 4;
  s.first_k_dense_replace = 0;
  s.linear_gain = 2.0;
  s.seed = 29;
  return s;
}

TEST_F(CudaHunyuanModel, FusedLayoutLargeMatchesTheExactReference) {
  TempDir dir{"hyoracle-cuda-hunyuan-fused"};
  write_random_checkpoint(fused_large_spec(), dir.path());
  {
    Checkpoint ck(dir.path());
    ASSERT_TRUE(ck.has("model.layers.0.self_attn.qkv_proj.weight")) << "the spec did not write the fused layout";
    ASSERT_TRUE(ck.has("model.layers.0.mlp.experts.0.gate_and_up_proj.weight") ||
                ck.has("model.layers.0.mlp.shared_mlp.gate_and_up_proj.weight"));
    ASSERT_FALSE(ck.has("model.layers.1.self_attn.qkv_proj.weight")) << "layer 1 is a cross layer";
    ASSERT_FALSE(ck.has("lm_head.weight")) << "tied";
  }
  check_fixture_dir<float>(dir.path(), "fused tiny-hunyuan-large", 5, kF32Bound, kF32Bound);
  check_fixture_dir<double>(dir.path(), "fused tiny-hunyuan-large", 5, 1e-13, 1e-14);
}

// The captured decode step with cross layers (each reads its source layer's raw k/v of the same
// step, allocated inside the graph) against the eager step: identical tokens and logits.
TEST_F(CudaHunyuanModel, CapturedDecodeWithCrossLayersEqualsEagerStep) {
  Checkpoint ck(std::string(HYORACLE_SOURCE_DIR) + "/fixtures/gen-tiny-hunyuan-large");
  const std::vector<int64_t> ids = {7, 150, 33, 281, 12, 99, 200, 64};
  const int64_t n = 6, cap = int64_t(ids.size()) + n + 3;
  const cuda::ModelWeights<float> m = cuda::load_model<float>(ck);
  cuda::KVCache<float> eager_cache = cuda::make_cache<float>(ck.config(), cap);
  const cuda::Generation eager =
      cuda::generate_greedy(m, cuda::forward(m, ids, eager_cache, Recorder{}), eager_cache, n, nullptr);
  cuda::KVCache<float> graph_cache = cuda::make_cache<float>(ck.config(), cap);
  const cuda::DeviceTensor<float> prefill = cuda::forward(m, ids, graph_cache, Recorder{});
  const cuda::Generation graph = cuda::generate_greedy_graph(m, prefill, graph_cache, n);
  EXPECT_EQ(graph.tokens, eager.tokens);
  EXPECT_EQ(graph.logits.data, eager.logits.data);
  // The cross layer's cache rows (its own k norm over the source's raw k) agree too.
  EXPECT_EQ(cuda::download(graph_cache.layers[1].k).data, cuda::download(eager_cache.layers[1].k).data);
}

// random_model builds a Hunyuan v1 model (cross layers without k/v, zero router bias) that runs.
TEST_F(CudaHunyuanModel, RandomModelWithCrossLayersRuns) {
  const ModelConfig c = Checkpoint(std::string(HYORACLE_SOURCE_DIR) + "/fixtures/gen-tiny-hunyuan-large").config();
  const cuda::ModelWeights<float> m = cuda::random_model<float>(c, 3);
  EXPECT_TRUE(m.layers[1].wk.empty());
  cuda::KVCache<float> cache = cuda::make_cache<float>(c, 8);
  const Tensor<float> l = cuda::download(cuda::forward(m, {1, 2, 3, 4, 5}, cache, Recorder{}));
  for (float x : l.data) ASSERT_TRUE(std::isfinite(x));
  expect_nonzero(l, "random Hunyuan-Large logits");
}

}  // namespace
}  // namespace hyoracle::test
