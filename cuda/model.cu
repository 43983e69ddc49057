#include "cuda/model.h"

#include <cmath>

#include "cuda/embedding.h"
#include "cuda/matmul.h"
#include "reference/model.h"
#include "reference/names.h"
#include "cuda/record.h"
#include "cuda/rms_norm.h"

namespace hyoracle::cuda {

namespace {

std::string layer_name(int64_t L, const std::string& what) { return "model.layers." + std::to_string(L) + "." + what; }

// The fp64 path holds its large matrices in bf16 (weight_t<double>): a stored value that bf16
// cannot hold would be rounded, so it is refused instead.
void require_bf16_exact(const Tensor<float>& t, const std::string& name) {
  for (size_t i = 0; i < t.data.size(); ++i)
    if (__bfloat162float(__float2bfloat16_rn(t.data[i])) != t.data[i] && t.data[i] == t.data[i])
      fail(name + ": value " + std::to_string(t.data[i]) + " at element " + std::to_string(i) +
           " is not a bf16 value; the fp64 CUDA path holds the large matrices as bf16 (use the CPU reference)");
}
// Host values of a large matrix, checked for the path of activation type T (held as weight_t<T>).
template <class T>
const Tensor<float>& matrix_values(const Tensor<float>& t, const std::string& name) {
  if constexpr (std::is_same_v<T, double>) require_bf16_exact(t, name);
  return t;
}
template <class T>
DeviceTensor<weight_t<T>> upload_matrix(const Tensor<float>& t, const std::string& name) {
  return upload<weight_t<T>>(matrix_values<T>(t, name));
}

// Copies host values (rounded to T) into `dst` at element offset `at`.
template <class T>
void put(DeviceTensor<T>& dst, int64_t at, const Tensor<float>& host) {
  std::vector<T> v(host.data.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = from_f32<T>(host.data[i]);
  check(cudaMemcpyAsync(dst.data() + at, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, gpu().stream), "put");
  synchronize();
}

// A SwiGLU block [gate; up] [2I, H] and down [H, I] at element offsets `gate_up_at`, `down_at` of
// the device tensors (one MLP, or expert e of a layer's stacked experts).
template <class T>
void put_mlp(const hyoracle::MlpWeights<float>& h, const std::string& name, DeviceTensor<weight_t<T>>& gate_up,
             int64_t gate_up_at, DeviceTensor<weight_t<T>>& down, int64_t down_at) {
  put(gate_up, gate_up_at, matrix_values<T>(h.gate, name + "gate_proj.weight"));
  put(gate_up, gate_up_at + h.gate.numel(), matrix_values<T>(h.up, name + "up_proj.weight"));
  put(down, down_at, matrix_values<T>(h.down, name + "down_proj.weight"));
}
template <class T>
MlpWeights<T> upload_mlp(const hyoracle::MlpWeights<float>& h, const std::string& name) {
  MlpWeights<T> w;
  w.gate_up = DeviceTensor<weight_t<T>>({2 * h.gate.dim(0), h.gate.dim(1)});
  w.down = DeviceTensor<weight_t<T>>(h.down.shape);
  put_mlp<T>(h, name, w.gate_up, 0, w.down, 0);
  return w;
}

// Layer L of the checkpoint, read by the reference's loader (reference/model.h load_layer: the
// family's tensor names, Tencent's fused qkv_proj / gate_and_up_proj rows, cross layers without
// k/v, the F32 router and expert_bias; experts referenced, not expanded) and uploaded: norms in
// T, large matrices in weight_t<T>, router and bias in fp32 (a softmax router's bias: zeros).
// Experts are expanded and uploaded one at a time.
template <class T>
LayerWeights<T> upload_layer(const Checkpoint& ck, int64_t L) {
  const hyoracle::LayerWeights<float> h = hyoracle::load_layer<float>(ck, L, /*resident_experts=*/false);
  auto n = [&](const std::string& what) { return layer_name(L, what); };
  LayerWeights<T> w;
  w.input_norm = upload<T>(h.input_norm);
  w.q_norm = upload<T>(h.q_norm);
  w.k_norm = upload<T>(h.k_norm);
  w.post_norm = upload<T>(h.post_norm);
  w.wq = upload_matrix<T>(h.wq, n("self_attn.q_proj.weight"));
  if (!h.wk.shape.empty()) {
    w.wk = upload_matrix<T>(h.wk, n("self_attn.k_proj.weight"));
    w.wv = upload_matrix<T>(h.wv, n("self_attn.v_proj.weight"));
  }
  w.wo = upload_matrix<T>(h.wo, n("self_attn.o_proj.weight"));
  w.dense = h.dense;
  if (w.dense) {
    w.mlp = upload_mlp<T>(h.mlp, n("mlp."));
    return w;
  }
  w.router = upload<float>(h.router);
  w.expert_bias = upload<float>(h.expert_bias);
  if (!h.shared.gate.shape.empty()) w.shared = upload_mlp<T>(h.shared, n("mlp.shared_mlp."));
  const int64_t E = h.experts.count(), H = h.router.dim(1);
  hyoracle::MlpWeights<float> scratch;
  for (int64_t e = 0; e < E; ++e) {
    const hyoracle::MlpWeights<float>& x = h.experts.get(e, scratch);
    const int64_t I = x.gate.dim(0);
    if (e == 0) {
      w.experts.gate_up = DeviceTensor<weight_t<T>>({E, 2 * I, H});
      w.experts.down = DeviceTensor<weight_t<T>>({E, H, I});
    }
    put_mlp<T>(x, n("mlp.experts." + std::to_string(e) + "."), w.experts.gate_up, e * 2 * I * H, w.experts.down, e * H * I);
  }
  return w;
}

// splitmix64 finaliser: the counter-based generator of random_model.
__device__ __host__ inline uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// v[i] = T(bf16(mean + std · N_i)), N_i an Irwin-Hall(12) normal from mix(key + 12·i + j).
template <class T>
__global__ void fill_random(T* v, int64_t n, uint64_t key, float mean, float stddev) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int j = 0; j < 12; ++j) s += float(mix(key + uint64_t(i) * 12 + j) >> 40) * 0x1p-24f;
    v[i] = from_f32<T>(__bfloat162float(__float2bfloat16_rn(mean + stddev * (s - 6.0f))));
  }
}

template <class T>
DeviceTensor<T> random_tensor(uint64_t seed, const std::string& name, std::vector<int64_t> shape, double mean, double stddev,
                              bool f32_exact = false) {
  DeviceTensor<T> t(std::move(shape));
  const int64_t n = t.numel();
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 8192)));
  if (f32_exact) {  // expert_bias: F32 values, not rounded to bf16
    fill_random<float><<<blocks, 256, 0, gpu().stream>>>(reinterpret_cast<float*>(t.data()), n, mix(seed ^ name_hash(name)),
                                                         float(mean), float(stddev));
  } else {
    fill_random<T><<<blocks, 256, 0, gpu().stream>>>(t.data(), n, mix(seed ^ name_hash(name)), float(mean), float(stddev));
  }
  check_launch("random_tensor");
  return t;
}

// Index of the largest of row[0, n) over one block of kThreads threads, every thread returns it:
// the reference's argmax rule (reference/model.cpp), i.e. the first maximum among the non-NaN
// values, and 0 when row[0] is NaN (nothing compares larger than it there) or every value is NaN.
// Each thread scans its indices in ascending order skipping NaN, then a fixed pairwise tree merges
// the threads' (value, index) pairs, ties to the lower index.
template <int kThreads, class V>
__device__ int64_t block_argmax(const V* row, int64_t n) {
  V bv = -INFINITY;
  int64_t bi = n;  // n: nothing seen yet
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const V v = row[i];
    if (v == v && (bi == n || v > bv)) bv = v, bi = i;
  }
  __shared__ V sv[kThreads];
  __shared__ int64_t si[kThreads];
  sv[threadIdx.x] = bv;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) {
      const V ov = sv[threadIdx.x + s];
      const int64_t oi = si[threadIdx.x + s];
      if (oi < n && (si[threadIdx.x] == n || ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])))
        sv[threadIdx.x] = ov, si[threadIdx.x] = oi;
    }
    __syncthreads();
  }
  const V first = row[0];
  return si[0] == n || first != first ? 0 : si[0];
}

// out[r] = argmax of row r of x [R, n]; one block of 256 threads per row.
template <class V>
__global__ void argmax_kernel(const V* x, int64_t n, int64_t* out) {
  const int64_t i = block_argmax<256>(x + blockIdx.x * n, n);
  if (threadIdx.x == 0) out[blockIdx.x] = i;
}

// The decode step's tail: token = argmax(x[0, :n]), history[step] = token, step += 1,
// position += 1. One block of 1024 threads.
__global__ void argmax_advance(const float* x, int64_t n, int64_t* token, int64_t* position, int64_t* step,
                               int64_t* history, int64_t history_len) {
  const int64_t i = block_argmax<1024>(x, n);
  if (threadIdx.x == 0) {
    *token = i;
    if (*step < history_len) history[*step] = i;
    *step += 1;
    *position += 1;
  }
}

}  // namespace

template <class T>
ModelWeights<T> load_model(const Checkpoint& ck) {
  ModelWeights<T> m;
  m.config = ck.config();
  const ModelConfig& c = m.config;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  m.embed = upload_matrix<T>(ck.load<float>("model.embed_tokens.weight", {V, H}), "model.embed_tokens.weight");
  m.final_norm = upload<T>(ck.load<host_t<T>>("model.norm.weight", {H}));
  m.lm_head = c.tie_word_embeddings ? m.embed : upload_matrix<T>(ck.load<float>("lm_head.weight", {V, H}), "lm_head.weight");
  m.layers.resize(size_t(c.num_hidden_layers));
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) m.layers[L] = upload_layer<T>(ck, L);
  return m;
}

template <class T>
ModelWeights<T> random_model(const ModelConfig& c, uint64_t seed) {
  ModelWeights<T> m;
  m.config = c;
  const int64_t H = c.hidden_size, A = c.q_width(), Kv = c.kv_width(), d = c.head_dim, V = c.vocab_size;
  using W = weight_t<T>;
  auto lin = [&](const std::string& name, std::vector<int64_t> shape) {
    return random_tensor<W>(seed, name, shape, 0.0, 1.0 / std::sqrt(double(shape.back())));
  };
  auto norm = [&](const std::string& name, int64_t n) { return random_tensor<T>(seed, name, {n}, 1.0, 0.1); };
  m.embed = random_tensor<W>(seed, "model.embed_tokens.weight", {V, H}, 0.0, 1.0);
  m.final_norm = norm("model.norm.weight", H);
  m.lm_head = c.tie_word_embeddings ? m.embed : lin("lm_head.weight", {V, H});
  m.layers.resize(size_t(c.num_hidden_layers));
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) {
    auto n = [&](const std::string& what) { return layer_name(L, what); };
    LayerWeights<T>& w = m.layers[L];
    w.input_norm = norm(n("input_layernorm.weight"), H);
    w.wq = lin(n("self_attn.q_proj.weight"), {A, H});
    if (c.owns_kv(L)) {  // a cross layer has no k/v projections
      w.wk = lin(n("self_attn.k_proj.weight"), {Kv, H});
      w.wv = lin(n("self_attn.v_proj.weight"), {Kv, H});
    }
    w.wo = lin(n("self_attn.o_proj.weight"), {H, A});
    w.q_norm = norm(n("self_attn.q_norm.weight"), d);
    w.k_norm = norm(n("self_attn.k_norm.weight"), d);
    w.post_norm = norm(n("post_attention_layernorm.weight"), H);
    w.dense = c.is_dense(L);
    const int64_t I = w.dense ? c.intermediate_size : c.moe_intermediate_size;
    if (w.dense) {
      w.mlp.gate_up = lin(n("mlp.gate_up_proj.weight"), {2 * I, H});
      w.mlp.down = lin(n("mlp.down_proj.weight"), {H, I});
      continue;
    }
    const int64_t E = c.num_experts, Is = c.shared_width();
    w.router = random_tensor<float>(seed, n("mlp.router.gate.weight"), {E, H}, 0.0, 3.0 / std::sqrt(double(H)));
    if (c.has_expert_bias()) {
      w.expert_bias = random_tensor<float>(seed, n("mlp.expert_bias"), {E}, 0.0, 0.05, /*f32_exact=*/true);
    } else {  // the softmax router reads no bias
      w.expert_bias = DeviceTensor<float>({E});
      check(cudaMemsetAsync(w.expert_bias.data(), 0, size_t(E) * sizeof(float), gpu().stream), "random_model: bias");
    }
    if (Is > 0) {
      w.shared.gate_up = lin(n("mlp.shared_mlp.gate_up_proj.weight"), {2 * Is, H});
      w.shared.down = lin(n("mlp.shared_mlp.down_proj.weight"), {H, Is});
    }
    w.experts.gate_up = lin(n("mlp.experts.gate_up_proj"), {E, 2 * I, H});
    w.experts.down = lin(n("mlp.experts.down_proj"), {E, H, I});
  }
  synchronize();
  return m;
}

template <class T>
KVCache<T> make_cache(const ModelConfig& c, int64_t capacity) {
  KVCache<T> kv;
  kv.layers.resize(size_t(c.num_hidden_layers));
  for (auto& l : kv.layers) {
    l.k = DeviceTensor<T>({capacity, c.num_key_value_heads, c.head_dim});
    l.v = DeviceTensor<T>({capacity, c.num_key_value_heads, c.head_dim});
    // Zeroed: rows not yet written are never attended, but must not hold NaN garbage either.
    for (DeviceTensor<T>* t : {&l.k, &l.v})
      check(cudaMemsetAsync(t->data(), 0, size_t(t->numel()) * sizeof(T), gpu().stream), "KV cache zero");
  }
  return kv;
}

template <class V>
std::vector<int64_t> argmax_rows_of(const DeviceTensor<V>& x) {
  DeviceTensor<int64_t> out({x.rows()});
  if (x.rows()) {
    argmax_kernel<V><<<unsigned(x.rows()), 256, 0, gpu().stream>>>(x.data(), x.cols(), out.data());
    check_launch("argmax");
  }
  return download_ints(out);
}
std::vector<int64_t> argmax_rows(const DeviceTensor<float>& x) { return argmax_rows_of(x); }
std::vector<int64_t> argmax_rows(const DeviceTensor<double>& x) { return argmax_rows_of(x); }

template <class T>
DeviceTensor<acc_t<T>> forward(const ModelWeights<T>& m, const std::vector<int64_t>& ids, KVCache<T>& cache,
                            const Recorder& rec) {
  const ModelConfig& c = m.config;
  const int64_t T_ = int64_t(ids.size()), H = c.hidden_size;
  std::vector<int64_t> pos(ids.size());
  for (size_t t = 0; t < ids.size(); ++t) pos[t] = cache.length() + int64_t(t);
  const DeviceTensor<int64_t> positions = upload_ints(pos);
  rec.ints(names::kInputIds, {T_}, ids, dataflow::int_dtype_of(names::kInputIds));
  DeviceTensor<T> x({T_, H});
  embedding(m.embed, ids, x);
  record(rec, names::kEmbed, x);
  for (int64_t L = 0; L < c.num_hidden_layers; ++L)
    x = decoder_layer(x, L, m.layers[L], c, positions, cache.layers[L], rec, &cache.layers[c.kv_source(L)]);
  DeviceTensor<T> h({T_, H});
  rms_norm(x, m.final_norm, c.rms_norm_eps, h);
  record(rec, names::kFinalNorm, h);
  DeviceTensor<acc_t<T>> logits({T_, c.vocab_size});
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) linear(h, m.lm_head, logits);
  else linear<T, float>(h, m.lm_head, logits);
  record(rec, names::kLogits, logits);
  return logits;
}

template <class T>
GenerationOf<acc_t<T>> generate_greedy(const ModelWeights<T>& m, const DeviceTensor<acc_t<T>>& prefill_logits,
                                       KVCache<T>& cache, int64_t n, ActivationSink* steps) {
  using A = acc_t<T>;
  const int64_t V = m.config.vocab_size;
  GenerationOf<A> g;
  g.logits = Tensor<A>({n, V});
  DeviceTensor<A> last = prefill_logits.reshaped(prefill_logits.shape);
  int64_t row = prefill_logits.rows() - 1;
  for (int64_t s = 0; s < n; ++s) {
    if (s > 0) {
      Recorder rec{steps, names::step(s, "")};
      last = forward(m, {g.tokens.back()}, cache, rec);
      row = 0;
    }
    const DeviceTensor<A> r = DeviceTensor<A>::view(last.data() + row * V, {1, V});
    const Tensor<A> host = download(r);
    std::copy(host.data.begin(), host.data.end(), g.logits.row(s));
    g.tokens.push_back(argmax_rows(r)[0]);
  }
  return g;
}

template <class T>
DecodeGraph<T>::~DecodeGraph() {
  if (exec) cudaGraphExecDestroy(exec);
}

template <class T>
std::unique_ptr<DecodeGraph<T>> capture_decode_step(const ModelWeights<T>& m, KVCache<T>& cache, int64_t token) {
  const ModelConfig& c = m.config;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  if (cache.layers.empty()) fail("capture_decode_step: the KV cache has no layers");
  const int64_t capacity = cache.layers[0].k.dim(0);
  if (token < 0 || token >= V)
    fail("token id " + std::to_string(token) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  auto g = std::make_unique<DecodeGraph<T>>();
  g->token = upload_ints({token});
  g->position = upload_ints({cache.length()});
  g->step = upload_ints({0});
  g->history = DeviceTensor<int64_t>({capacity});
  g->logits = DeviceTensor<float>({1, V});
  g->bad_id = DeviceTensor<int32_t>({1});
  check(cudaMemsetAsync(g->bad_id.data(), 0, 4, gpu().stream), "decode graph: bad_id");
  synchronize();

  // The eager steps' raw k/v (kept for cross layers) are dropped before the capture: the graph
  // must free only what it allocates.
  for (auto& l : cache.layers) l.step_k = DeviceTensor<T>(), l.step_v = DeviceTensor<T>();
  synchronize();

  cudaStream_t s = gpu().stream;
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "decode graph: begin capture");
  try {
    DeviceTensor<T> x({1, H});
    embedding(m.embed, g->token, x, g->bad_id.data());
    for (int64_t L = 0; L < c.num_hidden_layers; ++L)
      x = decoder_layer_at(x, L, m.layers[L], c, g->position, cache.layers[L], capacity, Recorder{},
                           &cache.layers[c.kv_source(L)]);
    // The step's raw k/v were allocated in the capture: freed in it too, so the graph holds no
    // allocation past its end and can be replayed.
    for (auto& l : cache.layers) l.step_k = DeviceTensor<T>(), l.step_v = DeviceTensor<T>();
    DeviceTensor<T> h({1, H});
    rms_norm(x, m.final_norm, c.rms_norm_eps, h);
    if constexpr (std::is_same_v<T, float>) linear(h, m.lm_head, g->logits);
    else linear<T, float>(h, m.lm_head, g->logits);
    argmax_advance<<<1, 1024, 0, s>>>(g->logits.data(), V, g->token.data(), g->position.data(), g->step.data(),
                                      g->history.data(), capacity);
    check_launch("decode graph: argmax");
  } catch (...) {
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  check(cudaStreamEndCapture(s, &graph), "decode graph: end capture");
  const cudaError_t e = cudaGraphInstantiate(&g->exec, graph, 0);
  cudaGraphDestroy(graph);
  check(e, "decode graph: instantiate");
  return g;
}

template <class T>
void replay_decode_step(DecodeGraph<T>& g, KVCache<T>& cache) {
  const int64_t capacity = cache.layers[0].k.dim(0);
  if (cache.length() + 1 > capacity)
    fail("cuda KV cache: " + std::to_string(cache.length() + 1) + " positions exceed its capacity " + std::to_string(capacity));
  check(cudaGraphLaunch(g.exec, gpu().stream), "decode graph: launch");
  for (auto& l : cache.layers) l.length += 1;
}

template <class T>
Generation generate_greedy_graph(const ModelWeights<T>& m, const DeviceTensor<float>& prefill_logits, KVCache<T>& cache,
                                 int64_t n, bool keep_logits) {
  const int64_t V = m.config.vocab_size;
  Generation gen;
  if (n <= 0) return gen;
  if (keep_logits) gen.logits = Tensor<float>({n, V});
  const DeviceTensor<float> last =
      DeviceTensor<float>::view(const_cast<float*>(prefill_logits.data()) + (prefill_logits.rows() - 1) * V, {1, V});
  if (keep_logits) {
    const Tensor<float> host = download(last);
    std::copy(host.data.begin(), host.data.end(), gen.logits.row(0));
  }
  gen.tokens.push_back(argmax_rows(last)[0]);
  if (n == 1) return gen;
  std::unique_ptr<DecodeGraph<T>> g = capture_decode_step(m, cache, gen.tokens[0]);
  for (int64_t s = 1; s < n; ++s) {
    replay_decode_step(*g, cache);
    if (keep_logits) {
      const Tensor<float> host = download(g->logits);
      std::copy(host.data.begin(), host.data.end(), gen.logits.row(s));
    }
  }
  const std::vector<int64_t> bad = download_ints(g->bad_id);
  if (bad[0]) fail("cuda decode graph: a fed token id was outside the vocabulary [0, " + std::to_string(V) + ")");
  const std::vector<int64_t> hist = download_ints(g->history);
  gen.tokens.insert(gen.tokens.end(), hist.begin(), hist.begin() + (n - 1));
  return gen;
}

template ModelWeights<double> load_model<double>(const Checkpoint&);
template ModelWeights<double> random_model<double>(const ModelConfig&, uint64_t);
template KVCache<double> make_cache<double>(const ModelConfig&, int64_t);
template DeviceTensor<double> forward<double>(const ModelWeights<double>&, const std::vector<int64_t>&, KVCache<double>&,
                                              const Recorder&);
template GenerationOf<double> generate_greedy<double>(const ModelWeights<double>&, const DeviceTensor<double>&,
                                                      KVCache<double>&, int64_t, ActivationSink*);
template ModelWeights<float> load_model<float>(const Checkpoint&);
template ModelWeights<bf16> load_model<bf16>(const Checkpoint&);
template ModelWeights<fp16> load_model<fp16>(const Checkpoint&);
template ModelWeights<float> random_model<float>(const ModelConfig&, uint64_t);
template ModelWeights<bf16> random_model<bf16>(const ModelConfig&, uint64_t);
template ModelWeights<fp16> random_model<fp16>(const ModelConfig&, uint64_t);
template KVCache<float> make_cache<float>(const ModelConfig&, int64_t);
template KVCache<bf16> make_cache<bf16>(const ModelConfig&, int64_t);
template KVCache<fp16> make_cache<fp16>(const ModelConfig&, int64_t);
template DeviceTensor<float> forward<float>(const ModelWeights<float>&, const std::vector<int64_t>&, KVCache<float>&,
                                            const Recorder&);
template DeviceTensor<float> forward<bf16>(const ModelWeights<bf16>&, const std::vector<int64_t>&, KVCache<bf16>&,
                                           const Recorder&);
template DeviceTensor<float> forward<fp16>(const ModelWeights<fp16>&, const std::vector<int64_t>&, KVCache<fp16>&,
                                           const Recorder&);
template Generation generate_greedy<float>(const ModelWeights<float>&, const DeviceTensor<float>&, KVCache<float>&, int64_t,
                                           ActivationSink*);
template Generation generate_greedy<bf16>(const ModelWeights<bf16>&, const DeviceTensor<float>&, KVCache<bf16>&, int64_t,
                                          ActivationSink*);
template Generation generate_greedy<fp16>(const ModelWeights<fp16>&, const DeviceTensor<float>&, KVCache<fp16>&, int64_t,
                                          ActivationSink*);
template struct DecodeGraph<float>;
template std::unique_ptr<DecodeGraph<float>> capture_decode_step<float>(const ModelWeights<float>&, KVCache<float>&, int64_t);
template void replay_decode_step<float>(DecodeGraph<float>&, KVCache<float>&);
template Generation generate_greedy_graph<float>(const ModelWeights<float>&, const DeviceTensor<float>&, KVCache<float>&, int64_t,
                                               bool);
template struct DecodeGraph<bf16>;
template std::unique_ptr<DecodeGraph<bf16>> capture_decode_step<bf16>(const ModelWeights<bf16>&, KVCache<bf16>&, int64_t);
template void replay_decode_step<bf16>(DecodeGraph<bf16>&, KVCache<bf16>&);
template Generation generate_greedy_graph<bf16>(const ModelWeights<bf16>&, const DeviceTensor<float>&, KVCache<bf16>&, int64_t,
                                               bool);
template struct DecodeGraph<fp16>;
template std::unique_ptr<DecodeGraph<fp16>> capture_decode_step<fp16>(const ModelWeights<fp16>&, KVCache<fp16>&, int64_t);
template void replay_decode_step<fp16>(DecodeGraph<fp16>&, KVCache<fp16>&);
template Generation generate_greedy_graph<fp16>(const ModelWeights<fp16>&, const DeviceTensor<float>&, KVCache<fp16>&, int64_t,
                                               bool);

}  // namespace hyoracle::cuda
