// hyoracle layer: run one decoder layer of a (possibly huge, sharded) checkpoint on an engine's
// own dumped input, in double, with bounded memory, and optionally compare it with the engine.
//
//   hyoracle layer --model DIR --layer L --input DUMP [--rows A:B] [--precision exact|hf|fp32]
//                  [--threads N] [--compare TARGET_DUMP] --dump OUT
//
// Input: `layers.L-1.out` (or `embed` for L = 0) of DUMP, rows 0..B-1 at positions
// position_offset + row. Attention runs over rows 0..B-1 (the keys of every earlier token are
// needed); the FFN runs on rows A..B-1 only; the dump holds rows A..B-1 of every tensor of
// layer L, plus the input rows. A cross layer (cross-layer attention, Hunyuan-Large) also needs
// its KV source layer S's raw k and v: layers.S.attn.k / attn.v of DUMP, or layer S's input
// (then layer S's input norm and k/v projections are read too). Only these layers' tensors are read (through the shard index);
// experts are expanded one per thread at a time and their mapped pages released after use.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "io/checkpoint.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "compare/compare.h"
#include "reference/decoder_layer.h"
#include "io/dump.h"
#include "io/fingerprint.h"
#include "reference/model.h"
#include "reference/matmul.h"
#include "reference/names.h"
#include "reference/rms_norm.h"
#include "io/output.h"

namespace hyoracle::cli {

namespace {

struct LayerOptions {
  std::string model, input, compare, dump, rows, precision_text = "exact", store;
  std::string rows_option = "--rows";  // the spelling given (--tokens is its deprecated alias), for messages
  int64_t layer = -1;
  int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  bool resident_experts = false;
  bool force = false;  // replace a non-empty --dump directory
  double max_memory_gb = 0;  // 0: MemAvailable
};

// Parses "A:B" (either side may be empty) against the T rows of the input tensor `where`;
// `option` is the spelling the user gave, for messages.
std::pair<int64_t, int64_t> parse_range(const std::string& s, int64_t T, const std::string& where, const std::string& option) {
  if (s.empty()) return {0, T};
  const size_t c = s.find(':');
  if (c == std::string::npos) fail(option + ": \"" + s + "\" is not A:B");
  auto num = [&](const std::string& t, int64_t dflt) -> int64_t {
    if (t.empty()) return dflt;
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(t, &used);
    } catch (...) {
      used = 0;
    }
    if (used != t.size() || v < 0) fail(option + ": \"" + s + "\" is not A:B with non-negative integers");
    return v;
  };
  const int64_t a = num(s.substr(0, c), 0), b = num(s.substr(c + 1), T);
  if (!(a < b && b <= T))
    fail(option + " " + s + ": need 0 <= A < B <= " + std::to_string(T) + ", the rows of " + where +
         (b > T ? " (" + std::to_string(b - T) + " rows too many)" : std::string()));
  return {a, b};
}

// Bytes available to this process: MemAvailable from /proc/meminfo (0 if unknown).
double mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return 0;
}

double peak_rss_bytes() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) * 1024.0;
}

// Peak memory of one layer run in element type of `bytes` per value (weights expanded to S,
// `slots` experts at a time, activations, per-head attention scores).
double estimate_bytes(const ModelConfig& c, int64_t L, int64_t T, int64_t slots, bool resident, double bytes) {
  const double H = double(c.hidden_size), A = double(c.q_width()), Kv = double(c.kv_width());
  double params = H * A * 2 + H * Kv * 2 + 2 * H + 2 * double(c.head_dim);
  double acts = double(T) * (12 * H + 4 * A + 4 * Kv);
  if (c.is_dense(L)) {
    params += 3 * H * double(c.intermediate_size);
    acts += double(T) * 3 * double(c.intermediate_size);
  } else {
    const double expert = 3 * H * double(c.moe_intermediate_size);
    params += double(c.num_experts) * (H + 1) + 3 * H * double(c.shared_width());
    params += expert * double(resident ? c.num_experts : std::min<int64_t>(slots, c.num_experts));
    acts += double(T) * (3 * double(c.num_experts) + double(c.num_experts_per_tok) * (H * 2 + 3 * double(c.moe_intermediate_size)));
  }
  const double scores = double(std::min<int64_t>(slots, c.num_attention_heads)) * 2 * double(T) * double(T);
  return bytes * (params + acts + scores);
}

// Rows [a, b) of t along its leading dimension.
template <class S>
Tensor<S> slice_rows(const Tensor<S>& t, int64_t a, int64_t b) {
  const int64_t per = t.shape[0] == 0 ? 0 : t.numel() / t.shape[0];
  std::vector<int64_t> shape = t.shape;
  shape[0] = b - a;
  return Tensor<S>(shape, std::vector<S>(t.data.begin() + a * per, t.data.begin() + b * per));
}

// Keeps rows [a, b) of every tensor whose leading dimension is `full` rows; passes the rest.
class RowSliceSink : public ActivationSink {
 public:
  RowSliceSink(ActivationSink& out, int64_t a, int64_t full) : out_(out), a_(a), full_(full) {}
  void put(const std::string& n, const Tensor<double>& t) override { out_.put(n, slice(t)); }
  void put(const std::string& n, const Tensor<float>& t) override { out_.put(n, slice(t)); }
  void put_ints(const std::string& n, const std::vector<int64_t>& s, const std::vector<int64_t>& v,
                DType stored) override {
    out_.put_ints(n, s, v, stored);
  }

 private:
  template <class S>
  Tensor<S> slice(const Tensor<S>& t) const {
    if (a_ == 0 || t.shape.empty() || t.shape[0] != full_) return t;
    return slice_rows(t, a_, full_);
  }
  ActivationSink& out_;
  int64_t a_, full_;
};

// Copies rows [a, b) of the tensors of layer L (and its input) of `target` into a new dump dir.
void slice_target(const Dump& target, int64_t L, const std::string& input_name, int64_t a, int64_t b,
                  const std::string& dir) {
  DumpWriter w(DType::F64);
  const std::string prefix = names::layer(L, "");
  for (const std::string& n : target.names()) {
    if (n != input_name && n.rfind(prefix, 0) != 0) continue;
    const TensorInfo& info = target.info(n);
    if (info.shape.empty() || info.shape[0] < b) continue;
    if (!dtype_is_float(info.dtype)) {
      const Tensor<int64_t> ids = slice_rows(Tensor<int64_t>(info.shape, target.read_ints(n)), a, b);
      w.put_ints(n, ids.shape, ids.data, dataflow::int_dtype_of(n));
      continue;
    }
    w.put(n, slice_rows(target.read(n), a, b));
  }
  nlohmann::ordered_json m = {{"format", "hyoracle.dump"}, {"version", kDumpVersion}};
  m["producer"] = target.manifest().value("producer", nlohmann::json::object());
  m["input"] = {{"position_offset", a}};
  w.write(dir, m);
}

// A cross layer (cross-layer attention) attends with the raw k and v of its KV source layer S:
// taken from the input dump when it holds layers.S.attn.k / attn.v, else computed from layer S's
// input (layers.S-1.out, or embed) with layer S's input norm and k/v projections.
template <class S>
void source_kv(const Checkpoint& ck, const Dump& input, int64_t L, int64_t b, const Numerics& num, LayerCache<S>& out) {
  const ModelConfig& c = ck.config();
  const int64_t src = c.kv_source(L), nkv = c.num_key_value_heads, d = c.head_dim;
  const std::string kn = names::layer(src, "attn.k"), vn = names::layer(src, "attn.v");
  const std::string in = src == 0 ? std::string(names::kEmbed) : names::layer(src - 1, "out");
  auto rows = [&](const std::string& n, int64_t width) {
    const TensorInfo& i = input.info(n);
    int64_t per = 1;
    for (size_t a = 1; a < i.shape.size(); ++a) per *= i.shape[a];
    if (i.shape.empty() || i.shape[0] < b || per != width)
      fail(input.file_of(n) + ": tensor \"" + n + "\" has shape " + shape_str(i.shape) + ", expected at least " +
           std::to_string(b) + " rows of " + std::to_string(width));
    const Tensor<double> t = input.read(n);
    Tensor<S> r({b, width});
    for (int64_t k = 0; k < r.numel(); ++k) {
      if (!std::isfinite(t.data[k])) fail(input.file_of(n) + ": tensor \"" + n + "\" holds a non-finite value");
      r.data[k] = S(t.data[k]);
    }
    return r;
  };
  if (input.has(kn) && input.has(vn)) {
    out.step_k = rows(kn, nkv * d);
    out.step_v = rows(vn, nkv * d);
  } else if (input.has(in)) {
    const LayerWeights<S> ws = load_layer<S>(ck, src, /*resident_experts=*/false);
    const Tensor<S> a = rms_norm(rows(in, c.hidden_size), ws.input_norm, c.rms_norm_eps, num);
    out.step_k = linear(a, ws.wk, num.threads);
    out.step_v = linear(a, ws.wv, num.threads);
  } else {
    fail(input.dir() + ": layer " + std::to_string(L) + " is a cross layer reading layer " + std::to_string(src) +
         "'s K/V (cla_share_factor " + std::to_string(c.cla_share_factor) + "); the dump must hold \"" + kn + "\" and \"" +
         vn + "\", or layer " + std::to_string(src) + "'s input \"" + in + "\"");
  }
  out.step_k.shape = {b, nkv, d};
  out.step_v.shape = {b, nkv, d};
}

template <class S>
int run_layer(const LayerOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  // The output must not replace an input (the dumps read, the checkpoint).
  check_output_path(o.dump, "--dump", {o.model, o.input, o.compare});
  check_fresh_output_dir(o.dump, "--dump", o.force);
  Checkpoint ck(o.model);
  const ModelConfig& c = ck.config();
  const int64_t L = o.layer;
  if (L < 0 || L >= c.num_hidden_layers)
    fail("--layer " + std::to_string(L) + ": " + c.source + " has layers 0.." + std::to_string(c.num_hidden_layers - 1));
  const Dump input(o.input);
  const std::string in_name = L == 0 ? names::kEmbed : names::layer(L - 1, "out");
  if (!input.has(in_name))
    fail(o.input + ": tensor \"" + in_name + "\" (the input of layer " + std::to_string(L) + ") is not in the dump");
  const TensorInfo& info = input.info(in_name);
  if (info.shape.size() != 2 || info.shape[1] != c.hidden_size)
    fail(input.file_of(in_name) + ": tensor \"" + in_name + "\" has shape " + shape_str(info.shape) + ", expected [T, " +
         std::to_string(c.hidden_size) + "]");
  const int64_t T = info.shape[0];
  const std::string in_where = input.file_of(in_name) + ": tensor " + printable_quoted(in_name);
  if (T == 0) fail(in_where + " has 0 rows; a layer run needs at least one token");
  const auto [a, b] = parse_range(o.rows, T, in_where, o.rows_option);
  int64_t offset = 0;
  if (input.manifest().contains("input") && input.manifest()["input"].contains("position_offset"))
    offset = input.manifest()["input"]["position_offset"].get<int64_t>();

  const double need = estimate_bytes(c, L, b, o.threads, o.resident_experts, double(sizeof(S)));
  const double avail = o.max_memory_gb > 0 ? o.max_memory_gb * 1e9 : mem_available_bytes();
  if (avail > 0 && need > 0.9 * avail)
    fail("layer " + std::to_string(L) + " at T=" + std::to_string(b) + " needs about " + std::to_string(int(need / 1e9)) +
         " GB but " + std::to_string(int(avail / 1e9)) + " GB are available; use fewer --threads, --rows, or fp32");

  const LayerWeights<S> w = load_layer<S>(ck, L, o.resident_experts);
  const Tensor<double> x_all = input.read(in_name);
  Tensor<S> x({b, c.hidden_size});
  for (int64_t i = 0; i < x.numel(); ++i) {
    // NaN or Inf would run through the layer into the dump as if it were a result.
    if (!std::isfinite(x_all.data[i]))
      fail(in_where + " holds " + (std::isnan(x_all.data[i]) ? "NaN" : "Inf") + " at row " + std::to_string(i / c.hidden_size) +
           ", column " + std::to_string(i % c.hidden_size) + "; a layer run needs finite input");
    x.data[i] = S(x_all.data[i]);
  }
  std::vector<int64_t> positions(static_cast<size_t>(b));
  for (int64_t t = 0; t < b; ++t) positions[t] = offset + t;
  const auto t1 = std::chrono::steady_clock::now();

  Numerics num{parse_precision(o.precision_text), o.threads};
  // An input made by the W8A8 model (docs/fp8.md) continues in that model.
  const nlohmann::json prod = input.manifest().value("producer", nlohmann::json::object());
  num.fp8_activations = prod.is_object() && prod.value("activations", "") == "fp8-static";
  if (num.fp8_activations && (c.quant.kind != QuantKind::Fp8PerTensor || c.quant.activation_scheme != "static"))
    fail(o.input + ": producer.activations is \"fp8-static\" (the W8A8 model), but " + c.source +
         " field \"quantization_config\" is not a per-tensor static FP8 config; expected the checkpoint the dump was made from");
  const DType store = o.store == "bfloat16" ? DType::BF16 : o.store == "float32" ? DType::F32
                      : std::is_same_v<S, double> ? DType::F64 : DType::F32;
  DumpWriter writer(store);
  RowSliceSink sliced(writer, a, b);
  const Recorder rec{&sliced, ""};
  rec(in_name, x);
  LayerCache<S> cache;
  LayerCache<S> source;  // a cross layer's KV source: layer S's raw k, v of rows 0..B-1
  if (!c.owns_kv(L)) source_kv(ck, input, L, b, num, source);
  const Tensor<S> h = attention_block(x, L, w, c, positions, cache, num, rec, &source);
  ffn_block(slice_rows(h, a, b), L, w, c, num, rec);
  const auto t2 = std::chrono::steady_clock::now();
  auto sec = [](auto x0, auto x1) { return std::chrono::duration<double>(x1 - x0).count(); };

  DumpProducer p;
  p.dtype = store == DType::BF16 ? "bfloat16" : store == DType::F32 ? "float32" : "float64";
  p.precision = o.precision_text;
  if (num.fp8_activations) p.activations = "fp8-static";
  std::vector<int64_t> ids = input.token_ids();
  if (int64_t(ids.size()) >= b) ids = std::vector<int64_t>(ids.begin() + a, ids.begin() + b);
  nlohmann::ordered_json m = make_manifest(p, c, o.model, ids, offset + a);
  // A partly downloaded checkpoint (what `layer` is for) has no fingerprint to record.
  if (missing_shards(o.model).empty()) record_weights_fingerprint(m, o.model);
  m["layer"] = {{"index", L}, {"input", o.input}, {"rows", {a, b}}};
  writer.write(o.dump, m);
  std::printf("hyoracle layer %lld of %s (%s, %s)\n", (long long)L, o.model.c_str(), c.is_dense(L) ? "dense" : "MoE",
              o.precision_text.c_str());
  std::printf("  input   %s rows %lld..%lld of %s (positions %lld..%lld)\n", in_name.c_str(), (long long)a,
              (long long)b - 1, o.input.c_str(), (long long)(offset + a), (long long)(offset + b - 1));
  std::printf("  time    load %.2f s, layer %.2f s, %d thread(s); peak RSS %.2f GB (estimate %.2f GB)\n", sec(t0, t1),
              sec(t1, t2), o.threads, peak_rss_bytes() / 1e9, need / 1e9);
  std::printf("  dump    %s (%zu tensors)\n", o.dump.c_str(), writer.size());
  if (o.compare.empty()) return 0;

  std::string target_dir = o.compare;
  if (a != 0 || b != T) {
    target_dir = o.dump + "/target-rows";
    slice_target(Dump(o.compare), L, in_name, a, b, target_dir);
  }
  compare::CompareOptions co;
  // Teacher forcing re-runs attention on the target's own q/k/v, which needs every earlier
  // row; a row slice lacks them, so a sliced comparison judges total error only.
  co.model_dir = a == 0 ? o.model : "";
  if (a != 0) std::printf("  note    rows start at %lld: teacher forcing is off (attention needs rows 0..%lld)\n", (long long)a, (long long)a - 1);
  co.require = {};
  // Layer L-1 too, so its `out` (this layer's input) is compared and its error is inherited.
  co.layer_first = std::max<int64_t>(0, L - 1);
  co.layer_last = L + 1;
  co.threads = o.threads;
  const compare::Report r = compare::compare_dirs(o.dump, target_dir, co);
  std::cout << "\n" << compare::terminal_summary(r);
  return compare::exit_code(r);
}

}  // namespace

void register_layer(CLI::App& app, int& status) {
  auto o = std::make_shared<LayerOptions>();
  auto* cmd = app.add_subcommand("layer", "Run one layer of a checkpoint on a dumped input (bounded memory)");
  cmd->add_option("--model", o->model, "Checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--layer", o->layer, "Layer index")->required();
  cmd->add_option("--input", o->input, "Dump holding layers.L-1.out (or embed for L = 0)")->required();
  auto* rows = cmd->add_option("--rows", o->rows, "Rows A:B of the input to run (attention still sees rows 0..B-1)");
  add_deprecated_alias(*cmd, rows, "--tokens", o->rows);
  cmd->add_option("--precision", o->precision_text, "exact | hf | fp32")->check(CLI::IsMember({"exact", "hf", "fp32"}));
  cmd->add_option("--threads", o->threads, "Worker threads (results identical for any count)")->check(CLI::Range(1, 1024));
  cmd->add_option("--compare", o->compare, "Compare layer L with this (engine) dump");
  cmd->add_option("--dump", o->dump, "Output dump directory")->required();
  cmd->add_option("--store-dtype", o->store, "Store tensors as float64 | float32 | bfloat16 (default: the compute type)")
      ->transform(dtype_choice({"float64", "float32", "bfloat16"}));
  cmd->add_flag("--force", o->force, "Replace a non-empty --dump directory (refused otherwise)");
  cmd->add_flag("--resident-experts", o->resident_experts, "Expand every expert at load (fast, more memory)");
  cmd->add_option("--max-memory", o->max_memory_gb, "Refuse runs estimated above this many GB (default: MemAvailable)");
  cmd->callback([o, cmd, &status] {
    if (cmd->get_option("--tokens")->count()) o->rows_option = "--tokens";
    status = o->precision_text == "fp32" ? run_layer<float>(*o) : run_layer<double>(*o);
  });
}

}  // namespace hyoracle::cli
