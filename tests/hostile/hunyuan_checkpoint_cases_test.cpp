// Hostile Hunyuan v1 checkpoints for the loader (reference/model.cpp: load_layer, load_qkv,
// mlp_refs). Each case writes a good Tencent checkpoint (model_type "hunyuan", cross-layer
// attention with factor 2, 4 experts, head_dim = hidden / heads) with write_random_checkpoint,
// copies it with one defect planted in model.safetensors, and loads it with load_model<double>:
// the load must throw one hyoracle::Error line naming the file (or checkpoint directory) and the
// tensor, and nothing else.
//
// The positive cases check the fused layouts: Tencent's qkv_proj (per KV group: g query heads,
// the key head, the value head) and gate_and_up_proj ([up; gate]) must load to the same weights
// as the separate q/k/v and gate/up tensors of the same seed, and, independently of the
// generator, rows labelled by value must land in the head and half a hand-written table says.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/random_checkpoint.h"
#include "io/safetensors.h"
#include "reference/model.h"
#include "tests/common/test_util.h"
#include "util/error.h"

namespace hyoracle {
namespace {

using test::TempDir;

// A Tencent CLA checkpoint: 4 layers (0, 2 self; 1, 3 cross), H 32, 4/2 heads x 8, E 4 top-2,
// shared MLP of 2 x I.
CheckpointSpec cla_spec(bool fused, uint64_t seed = 7) {
  CheckpointSpec s;
  s.model_type = "hunyuan";
  s.cla_share_factor = 2;
  s.fused = fused;
  s.vocab_size = 64;
  s.hidden_size = 32;
  s.num_attention_heads = 4;
  s.num_key_value_heads = 2;
  s.head_dim = 8;
  s.intermediate_size = 16;
  s.moe_intermediate_size = 16;
  s.num_experts = 4;
  s.num_experts_per_tok = 2;
  s.num_shared_experts = 2;
  s.first_k_dense_replace = 0;
  s.num_hidden_layers = 4;
  s.rope_theta = 10000.0;
  s.rope_alpha = 1000.0;
  s.seed = seed;
  return s;
}

constexpr int64_t kH = 32, kA = 32, kKv = 16, kD = 8, kI = 16, kIs = 32;

std::string layer(int64_t L, const std::string& what) { return "model.layers." + std::to_string(L) + "." + what; }

// The tensors of dir/model.safetensors, as written.
std::vector<RawTensor> read_tensors(const std::string& dir) {
  const SafetensorsFile f(dir + "/model.safetensors");
  std::vector<RawTensor> out;
  for (const TensorInfo& t : f.tensors())
    out.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(f.data(t), f.data(t) + (t.end - t.begin))});
  return out;
}

// Copies the checkpoint `src` to `dst` with its tensors changed by `edit`.
void copy_with_edit(const std::string& src, const std::string& dst, const std::function<void(std::vector<RawTensor>&)>& edit) {
  std::filesystem::create_directories(dst);
  std::filesystem::copy_file(src + "/config.json", dst + "/config.json", std::filesystem::copy_options::overwrite_existing);
  std::vector<RawTensor> ts = read_tensors(src);
  edit(ts);
  write_safetensors(dst + "/model.safetensors", ts, {{"format", "pt"}});
}

bool has_tensor(const std::vector<RawTensor>& ts, const std::string& name) {
  return std::any_of(ts.begin(), ts.end(), [&](const RawTensor& t) { return t.name == name; });
}

RawTensor& find(std::vector<RawTensor>& ts, const std::string& name) {
  auto it = std::find_if(ts.begin(), ts.end(), [&](const RawTensor& t) { return t.name == name; });
  if (it == ts.end()) throw std::runtime_error("test setup: no tensor " + name);
  return *it;
}

void erase(std::vector<RawTensor>& ts, const std::string& name) {
  if (!has_tensor(ts, name)) throw std::runtime_error("test setup: no tensor " + name);
  ts.erase(std::remove_if(ts.begin(), ts.end(), [&](const RawTensor& t) { return t.name == name; }), ts.end());
}

// A BF16 tensor of small distinct values.
RawTensor bf16(const std::string& name, std::vector<int64_t> shape) {
  const int64_t n = numel_of(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = 0.01 * double(i % 97) - 0.5;
  return {name, DType::BF16, std::move(shape), encode_values(v.data(), n, DType::BF16)};
}

// Drops the last row of a 2-D BF16 tensor.
void drop_last_row(RawTensor& t) {
  const size_t row_bytes = size_t(t.shape.at(1)) * 2;
  t.shape[0] -= 1;
  t.bytes.resize(t.bytes.size() - row_bytes);
}

// What load_model did: "" when it returned, else the message (non-Error exceptions marked).
std::string load_error(const std::string& dir, bool* other = nullptr) {
  try {
    (void)load_model<double>(Checkpoint(dir));
    return "";
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    if (other) *other = true;
    return std::string("non-Error exception: ") + e.what();
  }
}

void expect_load_refused(const std::string& dir, const std::vector<std::string>& needles) {
  bool other = false;
  const std::string msg = load_error(dir, &other);
  ASSERT_FALSE(msg.empty()) << "loaded without an error; expected one naming " << needles.back();
  ASSERT_FALSE(other) << msg;
  for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "missing \"" << n << "\" in: " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
}

std::string q(const std::string& s) { return "\"" + s + "\""; }

// The good checkpoints every case copies (written once per test binary run).
class HunyuanCheckpointHostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir("hunyuan-ck");
    write_random_checkpoint(cla_spec(false), separate());
    write_random_checkpoint(cla_spec(true), fused());
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  static std::string separate() { return *root_ / "separate"; }
  static std::string fused() { return *root_ / "fused"; }
  std::string bad(const std::string& name) const { return *root_ / ("bad-" + name); }
  static TempDir* root_;
};
TempDir* HunyuanCheckpointHostile::root_ = nullptr;

TEST_F(HunyuanCheckpointHostile, GoodCheckpointsLoadAndHaveTheExpectedLayout) {
  EXPECT_EQ(load_error(separate()), "");
  EXPECT_EQ(load_error(fused()), "");
  const std::vector<RawTensor> s = read_tensors(separate()), f = read_tensors(fused());
  for (int64_t L : {0, 2}) {
    EXPECT_TRUE(has_tensor(s, layer(L, "self_attn.k_proj.weight"))) << L;
    EXPECT_TRUE(has_tensor(f, layer(L, "self_attn.qkv_proj.weight"))) << L;
    EXPECT_FALSE(has_tensor(f, layer(L, "self_attn.q_proj.weight"))) << L;
  }
  for (int64_t L : {1, 3}) {
    for (const auto* ts : {&s, &f}) {
      EXPECT_TRUE(has_tensor(*ts, layer(L, "self_attn.q_proj.weight"))) << L;
      EXPECT_FALSE(has_tensor(*ts, layer(L, "self_attn.k_proj.weight"))) << L;
      EXPECT_FALSE(has_tensor(*ts, layer(L, "self_attn.v_proj.weight"))) << L;
      EXPECT_FALSE(has_tensor(*ts, layer(L, "self_attn.qkv_proj.weight"))) << L;
    }
  }
  EXPECT_TRUE(has_tensor(f, layer(0, "mlp.shared_mlp.gate_and_up_proj.weight")));
  EXPECT_TRUE(has_tensor(f, layer(0, "mlp.experts.3.gate_and_up_proj.weight")));
  EXPECT_FALSE(has_tensor(f, layer(0, "mlp.experts.3.gate_proj.weight")));
}

TEST_F(HunyuanCheckpointHostile, CrossLayerAlsoStoringKProjIsRefused) {
  const std::string dir = bad("cross-k");
  copy_with_edit(separate(), dir, [](auto& ts) { ts.push_back(bf16(layer(1, "self_attn.k_proj.weight"), {kKv, kH})); });
  expect_load_refused(dir, {dir, q(layer(1, "self_attn.k_proj.weight")), "cross layer", "cla_share_factor 2"});
}

TEST_F(HunyuanCheckpointHostile, CrossLayerAlsoStoringVProjIsRefused) {
  const std::string dir = bad("cross-v");
  copy_with_edit(separate(), dir, [](auto& ts) { ts.push_back(bf16(layer(3, "self_attn.v_proj.weight"), {kKv, kH})); });
  expect_load_refused(dir, {dir, q(layer(3, "self_attn.v_proj.weight")), "cross layer"});
}

TEST_F(HunyuanCheckpointHostile, CrossLayerStoringFusedQkvIsRefused) {
  const std::string dir = bad("cross-qkv");
  copy_with_edit(fused(), dir, [](auto& ts) { ts.push_back(bf16(layer(1, "self_attn.qkv_proj.weight"), {kA + 2 * kKv, kH})); });
  expect_load_refused(dir, {dir, q(layer(1, "self_attn.qkv_proj.weight")), "cross layer"});
}

TEST_F(HunyuanCheckpointHostile, SelfLayerStoringQkvAndQProjIsRefused) {
  const std::string dir = bad("qkv-and-q");
  copy_with_edit(fused(), dir, [](auto& ts) { ts.push_back(bf16(layer(0, "self_attn.q_proj.weight"), {kA, kH})); });
  expect_load_refused(dir, {dir, q(layer(0, "self_attn.qkv_proj.weight")), "q_proj", "expected one layout"});
}

TEST_F(HunyuanCheckpointHostile, CrossLayerMissingQProjIsRefused) {
  const std::string dir = bad("cross-no-q");
  copy_with_edit(separate(), dir, [](auto& ts) { erase(ts, layer(3, "self_attn.q_proj.weight")); });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(3, "self_attn.q_proj.weight")), "is missing"});
}

TEST_F(HunyuanCheckpointHostile, SelfLayerMissingVProjIsRefused) {
  const std::string dir = bad("self-no-v");
  copy_with_edit(separate(), dir, [](auto& ts) { erase(ts, layer(2, "self_attn.v_proj.weight")); });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(2, "self_attn.v_proj.weight")), "is missing"});
}

TEST_F(HunyuanCheckpointHostile, MissingRouterIsRefused) {
  const std::string dir = bad("no-router");
  copy_with_edit(separate(), dir, [](auto& ts) { erase(ts, layer(2, "mlp.gate.wg.weight")); });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(2, "mlp.gate.wg.weight")), "is missing"});
}

TEST_F(HunyuanCheckpointHostile, WrongShapedQueryLayernormIsRefused) {
  const std::string dir = bad("qnorm-shape");
  copy_with_edit(separate(), dir, [](auto& ts) {
    erase(ts, layer(1, "self_attn.query_layernorm.weight"));
    ts.push_back(bf16(layer(1, "self_attn.query_layernorm.weight"), {kD + 2}));
  });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(1, "self_attn.query_layernorm.weight")),
                            "has shape [10], expected [8]"});
}

TEST_F(HunyuanCheckpointHostile, KeyLayernormPerHeadTimesHeadsIsRefused) {
  // A norm stored for all heads at once ([nkv·d]) instead of one head's [d].
  const std::string dir = bad("knorm-shape");
  copy_with_edit(separate(), dir, [](auto& ts) {
    erase(ts, layer(0, "self_attn.key_layernorm.weight"));
    ts.push_back(bf16(layer(0, "self_attn.key_layernorm.weight"), {kKv}));
  });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(0, "self_attn.key_layernorm.weight")),
                            "has shape [16], expected [8]"});
}

TEST_F(HunyuanCheckpointHostile, SharedGateAndUpWithWrongRowCountIsRefused) {
  const std::string dir = bad("shared-gate-up-rows");
  copy_with_edit(fused(), dir, [](auto& ts) { drop_last_row(find(ts, layer(0, "mlp.shared_mlp.gate_and_up_proj.weight"))); });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(0, "mlp.shared_mlp.gate_and_up_proj.weight")),
                            "has shape [63, 32], expected [64, 32]"});
}

TEST_F(HunyuanCheckpointHostile, ExpertGateAndUpOfOneHalfIsRefused) {
  // Only the up half stored under the fused name: [I, H] instead of [2I, H].
  const std::string dir = bad("expert-gate-up-half");
  copy_with_edit(fused(), dir, [](auto& ts) {
    RawTensor& t = find(ts, layer(2, "mlp.experts.1.gate_and_up_proj.weight"));
    t.shape[0] = kI;
    t.bytes.resize(size_t(kI * kH * 2));
  });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(2, "mlp.experts.1.gate_and_up_proj.weight")),
                            "has shape [16, 32], expected [32, 32]"});
}

TEST_F(HunyuanCheckpointHostile, QkvWithWrongRowCountIsRefused) {
  const std::string dir = bad("qkv-rows");
  copy_with_edit(fused(), dir, [](auto& ts) { drop_last_row(find(ts, layer(2, "self_attn.qkv_proj.weight"))); });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(2, "self_attn.qkv_proj.weight")),
                            "has shape [63, 32], expected [64, 32]"});
}

TEST_F(HunyuanCheckpointHostile, FusedGateAndUpNextToSeparateGateIsRefused) {
  const std::string dir = bad("gate-up-and-gate");
  copy_with_edit(fused(), dir, [](auto& ts) { ts.push_back(bf16(layer(0, "mlp.experts.0.gate_proj.weight"), {kI, kH})); });
  expect_load_refused(dir, {dir, q(layer(0, "mlp.experts.0.gate_and_up_proj.weight")), "expected one layout"});
}

TEST_F(HunyuanCheckpointHostile, RouterUnderTheHy3NameIsRefused) {
  // The hy_v3 router name next to a missing Hunyuan one: the Hunyuan name is what is asked for.
  const std::string dir = bad("router-renamed");
  copy_with_edit(separate(), dir, [](auto& ts) { find(ts, layer(0, "mlp.gate.wg.weight")).name = layer(0, "mlp.router.gate.weight"); });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(0, "mlp.gate.wg.weight")), "is missing"});
}

// --- The fused layouts against the separate ones and against a hand-written table -----------

template <class S>
void expect_same(const Tensor<S>& a, const Tensor<S>& b, const std::string& what) {
  EXPECT_EQ(a.shape, b.shape) << what;
  EXPECT_TRUE(a.data == b.data) << what << " differs";
}

TEST_F(HunyuanCheckpointHostile, FusedAndSeparateOfOneSeedLoadToIdenticalWeights) {
  const ModelWeights<double> s = load_model<double>(Checkpoint(separate()));
  const ModelWeights<double> f = load_model<double>(Checkpoint(fused()));
  expect_same(s.embed, f.embed, "embed");
  expect_same(s.lm_head, f.lm_head, "lm_head");
  expect_same(s.final_norm, f.final_norm, "final_norm");
  ASSERT_EQ(s.layers.size(), 4u);
  for (size_t L = 0; L < 4; ++L) {
    SCOPED_TRACE("layer " + std::to_string(L));
    const LayerWeights<double>& a = s.layers[L];
    const LayerWeights<double>& b = f.layers[L];
    expect_same(a.wq, b.wq, "wq");
    expect_same(a.wk, b.wk, "wk");
    expect_same(a.wv, b.wv, "wv");
    expect_same(a.wo, b.wo, "wo");
    expect_same(a.input_norm, b.input_norm, "input_norm");
    expect_same(a.q_norm, b.q_norm, "q_norm");
    expect_same(a.k_norm, b.k_norm, "k_norm");
    expect_same(a.post_norm, b.post_norm, "post_norm");
    expect_same(a.router, b.router, "router");
    expect_same(a.shared.gate, b.shared.gate, "shared.gate");
    expect_same(a.shared.up, b.shared.up, "shared.up");
    expect_same(a.shared.down, b.shared.down, "shared.down");
    EXPECT_EQ(a.shared.gate.shape, (std::vector<int64_t>{kIs, kH}));
    ASSERT_EQ(a.experts.resident.size(), 4u);
    ASSERT_EQ(b.experts.resident.size(), 4u);
    for (size_t e = 0; e < 4; ++e) {
      expect_same(a.experts.resident[e].gate, b.experts.resident[e].gate, "expert gate " + std::to_string(e));
      expect_same(a.experts.resident[e].up, b.experts.resident[e].up, "expert up " + std::to_string(e));
      expect_same(a.experts.resident[e].down, b.experts.resident[e].down, "expert down " + std::to_string(e));
    }
    // Self layers own k/v; cross layers have none. The tensors are not trivially equal.
    if (L % 2 == 0) {
      EXPECT_EQ(a.wk.shape, (std::vector<int64_t>{kKv, kH}));
      EXPECT_EQ(a.wv.shape, (std::vector<int64_t>{kKv, kH}));
      EXPECT_FALSE(a.wk.data == a.wv.data);
    } else {
      EXPECT_TRUE(a.wk.data.empty());
      EXPECT_TRUE(a.wv.data.empty());
    }
    EXPECT_EQ(a.wq.shape, (std::vector<int64_t>{kA, kH}));
    EXPECT_FALSE(a.shared.gate.data == a.shared.up.data);
  }
}

// A labelled F32 tensor [rows, cols]: element (r, c) holds r·1000 + c (exact in F32), so every
// loaded row says which stored row it came from.
RawTensor labelled(const std::string& name, int64_t rows, int64_t cols) {
  std::vector<double> v(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) v[size_t(r * cols + c)] = double(r * 1000 + c);
  return {name, DType::F32, {rows, cols}, encode_values(v.data(), rows * cols, DType::F32)};
}

// Every row i of `t` came from stored row starts[i / d] + i % d (whole row, columns in order).
void expect_rows_from(const Tensor<double>& t, const std::vector<int64_t>& starts, int64_t d, int64_t cols,
                      const std::string& what) {
  ASSERT_EQ(t.shape, (std::vector<int64_t>{int64_t(starts.size()) * d, cols}) ) << what;
  for (int64_t i = 0; i < t.shape[0]; ++i)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(t.row(i)[c], double((starts[size_t(i / d)] + i % d) * 1000 + c))
          << what << " row " << i << " (head " << i / d << ") col " << c;
}

struct QkvShape {
  int64_t H, nq, nkv;
  // Hand-written from the layout "per KV group m: its g query heads, its key head, its value
  // head": the first stored row of each q head, each k head, each v head.
  std::vector<int64_t> q_start, k_start, v_start;
};

void check_hand_labelled(const QkvShape& sh) {
  const int64_t d = sh.H / sh.nq, A = sh.nq * d, Kv = sh.nkv * d;
  SCOPED_TRACE("H " + std::to_string(sh.H) + ", " + std::to_string(sh.nq) + "/" + std::to_string(sh.nkv) + " heads x " +
               std::to_string(d));
  CheckpointSpec s = cla_spec(true, 3);
  s.hidden_size = sh.H;
  s.num_attention_heads = sh.nq;
  s.num_key_value_heads = sh.nkv;
  s.head_dim = d;
  s.rope_alpha = 0;
  TempDir root("hunyuan-labelled");
  write_random_checkpoint(s, root / "good");
  const int64_t Is = s.intermediate_size * s.num_shared_experts, I = s.intermediate_size;
  copy_with_edit(root / "good", root / "labelled", [&](std::vector<RawTensor>& ts) {
    for (const std::string& n : {layer(0, "self_attn.qkv_proj.weight"), layer(0, "mlp.shared_mlp.gate_and_up_proj.weight"),
                                 layer(0, "mlp.experts.2.gate_and_up_proj.weight")}) {
      const RawTensor& old = find(ts, n);
      const RawTensor lab = labelled(n, old.shape.at(0), old.shape.at(1));
      erase(ts, n);
      ts.push_back(lab);
    }
  });
  const Checkpoint ck(root / "labelled");
  const LayerWeights<double> w = load_layer<double>(ck, 0, /*resident_experts=*/true);
  ASSERT_EQ(int64_t(sh.q_start.size()), sh.nq);
  ASSERT_EQ(int64_t(sh.k_start.size()), sh.nkv);
  ASSERT_EQ(int64_t(sh.v_start.size()), sh.nkv);
  EXPECT_EQ(A + 2 * Kv, int64_t((sh.q_start.size() + 2 * sh.k_start.size())) * d);
  expect_rows_from(w.wq, sh.q_start, d, sh.H, "wq");
  expect_rows_from(w.wk, sh.k_start, d, sh.H, "wk");
  expect_rows_from(w.wv, sh.v_start, d, sh.H, "wv");
  // gate_and_up_proj = [up; gate]: up is stored rows 0 .. I−1, gate rows I .. 2I−1.
  expect_rows_from(w.shared.up, {0}, Is, sh.H, "shared.up");
  expect_rows_from(w.shared.gate, {Is}, Is, sh.H, "shared.gate");
  ASSERT_EQ(w.experts.resident.size(), size_t(s.num_experts));
  expect_rows_from(w.experts.resident[2].up, {0}, I, sh.H, "expert 2 up");
  expect_rows_from(w.experts.resident[2].gate, {I}, I, sh.H, "expert 2 gate");
}

TEST(HunyuanFusedLayout, HandLabelledQkvAndGateUpRowsLandWhereTheTableSays) {
  // 4 q heads, 2 kv heads of d = 8 (g = 2): group 0 = q0 [0,8) q1 [8,16) k0 [16,24) v0 [24,32),
  // group 1 = q2 [32,40) q3 [40,48) k1 [48,56) v1 [56,64).
  check_hand_labelled({32, 4, 2, {0, 8, 32, 40}, {16, 48}, {24, 56}});
  // 8 q heads, 2 kv heads of d = 4 (g = 4): group 0 = q0..q3 at 0,4,8,12, k0 16, v0 20;
  // group 1 = q4..q7 at 24,28,32,36, k1 40, v1 44.
  check_hand_labelled({32, 8, 2, {0, 4, 8, 12, 24, 28, 32, 36}, {16, 40}, {20, 44}});
  // 6 q heads, 3 kv heads of d = 4 (g = 2): group m starts at 16m: q, q, k, v.
  check_hand_labelled({24, 6, 3, {0, 4, 16, 20, 32, 36}, {8, 24, 40}, {12, 28, 44}});
  // Multi-query: 4 q heads, 1 kv head of d = 8 (g = 4): q0..q3, k0 32, v0 40.
  check_hand_labelled({32, 4, 1, {0, 8, 16, 24}, {32}, {40}});
}

// --- Two layouts of one weight -----------------------------------------------------------------

// A self layer storing the fused qkv_proj and also a separate k_proj (or v_proj) has two sources
// of the same K weights, which an engine could read either way: refused, naming both, as
// qkv_proj next to q_proj and gate_and_up_proj next to gate_proj are.
TEST_F(HunyuanCheckpointHostile, SelfLayerStoringQkvAndStrayKProjIsRefused) {
  const std::string dir = bad("qkv-and-k");
  copy_with_edit(fused(), dir, [](auto& ts) { ts.push_back(bf16(layer(2, "self_attn.k_proj.weight"), {kKv, kH})); });
  expect_load_refused(dir, {dir, q(layer(2, "self_attn.qkv_proj.weight")), "k_proj"});
}

// The layout conflicts (a cross layer storing k/v, qkv_proj next to q_proj, gate_and_up_proj next
// to gate_proj) name the file that holds the offending tensor, as every loader error does, so a
// sharded checkpoint's message says which shard to look at.
TEST_F(HunyuanCheckpointHostile, LayoutConflictsNameTheFileHoldingTheTensor) {
  const std::string dir = bad("conflict-file");
  copy_with_edit(separate(), dir, [](auto& ts) { ts.push_back(bf16(layer(1, "self_attn.k_proj.weight"), {kKv, kH})); });
  expect_load_refused(dir, {dir + "/model.safetensors", q(layer(1, "self_attn.k_proj.weight"))});
  const std::string dir2 = bad("conflict-file-2");
  copy_with_edit(fused(), dir2, [](auto& ts) { ts.push_back(bf16(layer(0, "self_attn.q_proj.weight"), {kA, kH})); });
  expect_load_refused(dir2, {dir2 + "/model.safetensors", q(layer(0, "self_attn.qkv_proj.weight"))});
}

}  // namespace
}  // namespace hyoracle
