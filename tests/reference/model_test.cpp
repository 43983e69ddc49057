// Whole-model properties on seeded random checkpoints: decode == prefill, thread count and
// sharding do not change a bit, lazy experts equal resident ones, fp32 tracks exact, MTP
// layers are ignored, and loader errors name the file and tensor.
#include <gtest/gtest.h>

#include <fstream>

#include "io/checkpoint.h"
#include "reference/model.h"
#include "io/random_checkpoint.h"
#include "io/safetensors.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

CheckpointSpec odd_spec() {
  CheckpointSpec s;  // every size different, heads×d ≠ H, GQA group 3, top-k < 8
  s.vocab_size = 97;
  s.hidden_size = 33;
  s.intermediate_size = 41;
  s.moe_intermediate_size = 7;
  s.num_hidden_layers = 3;
  s.num_attention_heads = 6;
  s.num_key_value_heads = 2;
  s.head_dim = 10;
  s.num_experts = 9;
  s.num_experts_per_tok = 3;
  s.num_shared_experts = 2;
  s.seed = 77;
  return s;
}

const std::vector<int64_t> kTokens = {5, 90, 17, 3, 3, 64, 0};

template <class S>
Tensor<S> prefill(const Checkpoint& ck, const std::vector<int64_t>& ids, const Numerics& num, bool resident = true) {
  LoadOptions o;
  o.resident_experts = resident;
  const ModelWeights<S> m = load_model<S>(ck, o);
  KVCache<S> cache = make_cache<S>(m.config);
  return forward(m, ids, cache, num, Recorder{});
}

TEST(Model, DecodeWithKvCacheEqualsPrefillRowByRow) {
  test::TempDir dir;
  write_random_checkpoint(odd_spec(), dir.path());
  Checkpoint ck(dir.path());
  for (Precision p : {Precision::exact, Precision::hf}) {
    const Numerics num{p, 2};
    const ModelWeights<double> m = load_model<double>(ck);
    KVCache<double> full = make_cache<double>(m.config), inc = make_cache<double>(m.config);
    const Tensor<double> all = forward(m, kTokens, full, num, Recorder{});
    for (size_t t = 0; t < kTokens.size(); ++t) {
      const Tensor<double> row = forward(m, {kTokens[t]}, inc, num, Recorder{});
      std::vector<double> a(row.data.begin(), row.data.end()), b(all.row(int64_t(t)), all.row(int64_t(t)) + all.cols());
      EXPECT_LT(test::rel_l2(a, b), 1e-12) << "token " << t << " precision " << precision_name(p);
    }
    // The caches hold the same keys.
    for (size_t L = 0; L < full.layers.size(); ++L)
      EXPECT_LT(test::rel_l2(inc.layers[L].k.data, full.layers[L].k.data), 1e-12);
  }
}

TEST(Model, BitIdenticalForEveryThreadCount) {
  test::TempDir dir;
  CheckpointSpec s = odd_spec();
  s.hidden_size = 200;  // wide enough that matmuls span several column blocks
  s.vocab_size = 300;
  write_random_checkpoint(s, dir.path());
  Checkpoint ck(dir.path());
  const Tensor<double> one = prefill<double>(ck, kTokens, {Precision::exact, 1});
  for (int threads : {2, 3, 5}) EXPECT_EQ(prefill<double>(ck, kTokens, {Precision::exact, threads}).data, one.data);
  const Tensor<float> f1 = prefill<float>(ck, kTokens, {Precision::fp32, 1});
  EXPECT_EQ(prefill<float>(ck, kTokens, {Precision::fp32, 2}).data, f1.data);
}

TEST(Model, ShardedCheckpointAndLazyExpertsGiveTheSameBits) {
  test::TempDir one, three;
  CheckpointSpec s = odd_spec();
  write_random_checkpoint(s, one.path());
  s.shards = 3;
  write_random_checkpoint(s, three.path());
  Checkpoint a(one.path()), b(three.path());
  EXPECT_TRUE(std::filesystem::exists(three / "model.safetensors.index.json"));
  const Tensor<double> la = prefill<double>(a, kTokens, {Precision::exact, 1});
  EXPECT_EQ(prefill<double>(b, kTokens, {Precision::exact, 1}).data, la.data);
  EXPECT_EQ(prefill<double>(a, kTokens, {Precision::exact, 1}, /*resident=*/false).data, la.data);
}

TEST(Model, Fp32ModeTracksExact) {
  test::TempDir dir;
  write_random_checkpoint(odd_spec(), dir.path());
  Checkpoint ck(dir.path());
  const Tensor<double> e = prefill<double>(ck, kTokens, {Precision::exact, 1});
  const Tensor<float> f = prefill<float>(ck, kTokens, {Precision::fp32, 1});
  const double err = test::rel_l2(f.data, e.data);
  EXPECT_LT(err, 1e-5);
  EXPECT_GT(err, 0.0) << "fp32 identical to double would mean fp32 mode is not fp32";
}

TEST(Model, GreedyGenerationUsesLowestIndexOnTiesAndDecodeSteps) {
  test::TempDir dir;
  write_random_checkpoint(odd_spec(), dir.path());
  Checkpoint ck(dir.path());
  const ModelWeights<double> m = load_model<double>(ck);
  const Numerics num{Precision::exact, 1};
  KVCache<double> cache = make_cache<double>(m.config);
  const Tensor<double> logits = forward(m, kTokens, cache, num, Recorder{});
  const Generation<double> g = generate_greedy(m, logits, cache, 4, num, nullptr);
  ASSERT_EQ(g.tokens.size(), 4u);
  // Independent check: re-run the whole sequence (prompt + first 3 generated) as one prefill.
  std::vector<int64_t> seq = kTokens;
  seq.insert(seq.end(), g.tokens.begin(), g.tokens.end() - 1);
  KVCache<double> c2 = make_cache<double>(m.config);
  const Tensor<double> all = forward(m, seq, c2, num, Recorder{});
  for (int64_t s = 0; s < 4; ++s) {
    const int64_t row = int64_t(kTokens.size()) - 1 + s;
    EXPECT_EQ(argmax(all.row(row), all.cols()), g.tokens[s]);
    std::vector<double> a(g.logits.row(s), g.logits.row(s) + all.cols()), b(all.row(row), all.row(row) + all.cols());
    EXPECT_LT(test::rel_l2(a, b), 1e-12);
  }
  const std::vector<double> tie = {1.0, 3.0, 3.0, 2.0};
  EXPECT_EQ(argmax(tie.data(), 4), 1);
}

TEST(Checkpoint, IgnoresLayersBeyondNumHiddenLayers) {
  test::TempDir dir;
  CheckpointSpec s = odd_spec();
  s.mtp_layers = 1;
  write_random_checkpoint(s, dir.path());
  Checkpoint ck(dir.path());
  ASSERT_FALSE(ck.ignored().empty());
  for (const auto& n : ck.ignored()) EXPECT_EQ(layer_of(n), 3) << n;
  EXPECT_NO_THROW(prefill<double>(ck, kTokens, {Precision::exact, 1}));
  const auto r = test::run_command(std::string(HYORACLE_BINARY) + " run -v --model " + dir.path() + " --tokens 1,2,3");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("ignoring"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.3.eh_proj.weight"), std::string::npos) << r.out;
}

// Rewrites one tensor of a single-file checkpoint (name, dtype, shape) keeping the others.
void rewrite_tensor(const std::string& dir, const std::string& name, DType dtype, std::vector<int64_t> shape, bool drop) {
  std::vector<RawTensor> ts;
  {
    SafetensorsFile f(dir + "/model.safetensors");
    for (const auto& t : f.tensors()) {
      if (t.name == name) {
        if (drop) continue;
        const Tensor<double> v = decode_tensor<double>(f, t);
        std::vector<double> vals(size_t(numel_of(shape)), 0.5);
        for (size_t i = 0; i < vals.size() && i < v.data.size(); ++i) vals[i] = v.data[i];
        ts.push_back({name, dtype, shape, encode_values(vals.data(), int64_t(vals.size()), dtype)});
        continue;
      }
      ts.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(f.data(t), f.data(t) + (t.end - t.begin))});
    }
  }
  write_safetensors(dir + "/model.safetensors", ts);
}

void expect_run_error(const std::string& dir, const std::vector<std::string>& needles) {
  const auto r = test::run_command(std::string(HYORACLE_BINARY) + " run --model " + dir + " --tokens 1,2,3");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "not one line: " << r.out;
  EXPECT_EQ(r.out.rfind("hyoracle: error: ", 0), 0u) << r.out;
  for (const auto& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "missing \"" << n << "\" in: " << r.out;
}

TEST(Checkpoint, BadTensorsGiveOneLineErrorsNamingFileAndTensor) {
  const CheckpointSpec s = odd_spec();
  {
    test::TempDir d;
    write_random_checkpoint(s, d.path());
    rewrite_tensor(d.path(), "model.layers.1.mlp.expert_bias", DType::BF16, {9}, false);
    expect_run_error(d.path(), {"model.safetensors", "model.layers.1.mlp.expert_bias", "BF16", "expected F32"});
  }
  {
    test::TempDir d;
    write_random_checkpoint(s, d.path());
    rewrite_tensor(d.path(), "model.layers.2.self_attn.k_proj.weight", DType::BF16, {20, 32}, false);
    expect_run_error(d.path(), {"model.layers.2.self_attn.k_proj.weight", "[20, 32]", "expected [20, 33]"});
  }
  {
    test::TempDir d;
    write_random_checkpoint(s, d.path());
    rewrite_tensor(d.path(), "model.layers.1.mlp.experts.4.down_proj.weight", DType::BF16, {}, true);
    expect_run_error(d.path(), {"model.layers.1.mlp.experts.4.down_proj.weight", "missing"});
  }
  {
    test::TempDir d;
    write_random_checkpoint(s, d.path());
    const auto size = std::filesystem::file_size(d / "model.safetensors");
    std::filesystem::resize_file(d / "model.safetensors", size - 100);
    expect_run_error(d.path(), {"model.safetensors", "truncated"});
  }
  {
    test::TempDir d;
    CheckpointSpec sh = s;
    sh.shards = 2;
    write_random_checkpoint(sh, d.path());
    std::filesystem::remove(d / "model-00002-of-00002.safetensors");
    expect_run_error(d.path(), {"model.safetensors.index.json", "model-00002-of-00002.safetensors", "missing"});
  }
  {
    test::TempDir d;
    write_random_checkpoint(s, d.path());
    std::ofstream(d / "config.json") << R"({"model_type": "hy_v3", "vocab_size": 97})";
    expect_run_error(d.path(), {"config.json", "\"hidden_size\"", "missing"});
  }
  {
    test::TempDir d;
    write_random_checkpoint(s, d.path());
    const auto r = test::run_command(std::string(HYORACLE_BINARY) + " run --model " + d.path() + " --tokens 1,97");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.out.find("token id 97"), std::string::npos) << r.out;
  }
}

}  // namespace
}  // namespace hyoracle
