// Fuzzes compare's routing path (compare/routing.h) fed the way compare's routing step feeds it
// (compare.cpp, Walk::compare_routing): two small dumps, a baseline and a target, are written to
// a scratch directory and read back; the id tensors go through checked_ids (shape, dtype, ids in
// [0, E), no expert twice in a row), routed ids "exported" outside a dump are checked for count
// and range, router scores / logits / margins / weights have their shape checked and NaN refused,
// the expert_bias is the checkpoint's F32 vector of E values (any bit pattern), and then
// routing_agreement and forced_routing run on what passed.
//
// The bytes pick small shapes (T, E, k <= 64), whether a model config fixes E and k, which
// tensors exist, their dtypes, shapes near or far from the expected ones, ids (in range mostly,
// else negative, E, INT32/INT64 extremes, arbitrary) and values (NaN, infinities, extremes,
// subnormals, arbitrary bit patterns). Bad input must end in hyoracle::Error; the results of
// accepted input must be consistent (counts add up, listed flips and mismatches name experts of
// the right sides), and a teacher-forced mismatch is listed only with a passed-over expert that
// beats a chosen one by more than their rounding windows.
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "io/dump.h"
#include "util/error.h"
#include "compare/routing.h"
#include "compare/tolerance.h"

namespace {

using hyoracle::DType;
using hyoracle::Dump;
using hyoracle::fail;
using hyoracle::Tensor;
using namespace hyoracle::compare;

constexpr int64_t kMax = 64;  // cap on T, E and k (and on each dimension of a wrong shape)

// Tensor names inside the scratch dumps (compare's canonical ones for layer 0).
const char* const kIds = "layers.0.moe.topk_ids";
const char* const kScores = "layers.0.moe.scores";
const char* const kLogits = "layers.0.moe.router_logits";
const char* const kMargin = "layers.0.moe.topk_margin";
const char* const kWeights = "layers.0.moe.topk_weights";

// One scratch directory per process (tmpfs when there is one: every input writes two dumps).
struct Scratch {
  std::string root;
  Scratch() {
    namespace fs = std::filesystem;
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    root = (base / ("hyoracle-fuzz-routing." + std::to_string(::getpid()))).string();
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};

const std::string& scratch_root() {
  static Scratch s;
  return s.root;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The expected shape for selectors 0-3 (0 is what an exhausted input reads), else a neighbour of
// it (a dimension off by one, dropped or added) or an arbitrary small shape.
std::vector<int64_t> shape_near(FuzzedDataProvider& p, std::vector<int64_t> want) {
  switch (p.ConsumeIntegralInRange<int>(0, 7)) {
    case 4: {
      if (want.empty()) return {1};
      int64_t& d = want[p.ConsumeIntegralInRange<size_t>(0, want.size() - 1)];
      d = std::clamp<int64_t>(d + (p.ConsumeBool() ? 1 : -1), 0, kMax);
      return want;
    }
    case 5:
      if (!want.empty()) want.pop_back();
      return want;
    case 6:
      want.push_back(p.ConsumeIntegralInRange<int64_t>(0, 3));
      return want;
    case 7: {
      std::vector<int64_t> s(p.ConsumeIntegralInRange<size_t>(0, 3));
      for (int64_t& d : s) d = p.ConsumeIntegralInRange<int64_t>(0, 8);
      return s;
    }
    default:
      return want;
  }
}

// A bad id: negative, E, past E, or an INT32 / INT64 extreme (an I32 tensor keeps the low 32 bits).
int64_t bad_id(FuzzedDataProvider& p, int64_t E) {
  switch (p.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return -1;
    case 1: return E;
    case 2: return E + 1;
    case 3: return std::numeric_limits<int32_t>::max();
    case 4: return std::numeric_limits<int32_t>::min();
    case 5: return std::numeric_limits<int64_t>::max();
    case 6: return std::numeric_limits<int64_t>::min();
    default: return p.ConsumeIntegral<int64_t>();
  }
}

// Ids for `shape`: each row of a [rows, k] shape a selection without repeats from [0, max(E, k))
// (a partial Fisher-Yates shuffle; with no bytes left, 0, 1, ..., k - 1), any other shape ids in
// [0, E); then a few ids, picked by the bytes, replaced with a bad one or a repeat.
std::vector<int64_t> fuzz_ids(FuzzedDataProvider& p, const std::vector<int64_t>& shape, int64_t E) {
  const int64_t n = numel(shape);
  std::vector<int64_t> v(static_cast<size_t>(n));
  if (shape.size() == 2 && shape[1] > 0) {
    const int64_t k = shape[1];
    std::vector<int64_t> pool(static_cast<size_t>(std::max(E, k)));
    for (int64_t r = 0; r < shape[0]; ++r) {
      for (size_t i = 0; i < pool.size(); ++i) pool[i] = int64_t(i);
      for (int64_t j = 0; j < k; ++j) {
        std::swap(pool[size_t(j)], pool[p.ConsumeIntegralInRange<size_t>(size_t(j), pool.size() - 1)]);
        v[size_t(r * k + j)] = pool[size_t(j)];
      }
    }
  } else {
    for (int64_t& x : v) x = p.ConsumeIntegralInRange<int64_t>(0, std::max<int64_t>(E, 1) - 1);
  }
  for (int bad = p.ConsumeIntegralInRange<int>(0, 3); bad > 0 && n > 0; --bad) {
    const size_t at = p.ConsumeIntegralInRange<size_t>(0, size_t(n) - 1);
    v[at] = p.ConsumeBool() ? bad_id(p, E) : v[p.ConsumeIntegralInRange<size_t>(0, size_t(n) - 1)];
  }
  return v;
}

// A small value for selectors 0-5 (0 is what an exhausted input reads), else 1, -0, a subnormal,
// a double extreme, an infinity, NaN, or any bit pattern.
double fuzz_real(FuzzedDataProvider& p) {
  switch (p.ConsumeIntegralInRange<int>(0, 15)) {
    case 6: return p.ConsumeFloatingPoint<double>();
    case 7: {
      const uint64_t bits = p.ConsumeIntegral<uint64_t>();
      double x;
      std::memcpy(&x, &bits, sizeof x);
      return x;
    }
    case 8: return 1.0;
    case 9: return -0.0;
    case 10: return std::numeric_limits<double>::denorm_min();
    case 11: return std::numeric_limits<double>::lowest();
    case 12: return std::numeric_limits<double>::max();
    case 13: return -std::numeric_limits<double>::infinity();
    case 14: return std::numeric_limits<double>::infinity();
    case 15: return std::numeric_limits<double>::quiet_NaN();
    default: return p.ConsumeFloatingPointInRange<double>(-4.0, 4.0);
  }
}

// A checkpoint F32 value (the loader checks dtype and shape, not values): small for selectors
// 0-9, else any bit pattern, a float extreme, an infinity or NaN.
double fuzz_f32(FuzzedDataProvider& p) {
  switch (p.ConsumeIntegralInRange<int>(0, 15)) {
    case 10: {
      const uint32_t bits = p.ConsumeIntegral<uint32_t>();
      float x;
      std::memcpy(&x, &bits, sizeof x);
      return double(x);
    }
    case 11: return std::numeric_limits<float>::denorm_min();
    case 12: return std::numeric_limits<float>::max();
    case 13: return -std::numeric_limits<double>::infinity();
    case 14: return std::numeric_limits<double>::infinity();
    case 15: return std::numeric_limits<double>::quiet_NaN();
    default: return double(p.ConsumeFloatingPointInRange<float>(-1.0f, 1.0f));
  }
}

DType fuzz_float_dtype(FuzzedDataProvider& p) {
  constexpr DType kinds[] = {DType::F64, DType::F32, DType::F16, DType::BF16};
  return kinds[p.ConsumeIntegralInRange<size_t>(0, 3)];
}

// Mostly I32 (hyoracle's writer) or I64 (engine dumps); now and then a float dtype.
DType fuzz_id_dtype(FuzzedDataProvider& p) {
  const int pick = p.ConsumeIntegralInRange<int>(0, 15);
  return pick == 15 ? fuzz_float_dtype(p) : pick < 9 ? DType::I32 : DType::I64;
}

// A dump being assembled: tensors in safetensors encoding (safetensors.h), written with plain
// file I/O into a directory that is reused by every input (DumpWriter's fsync'ed, renamed output
// would cost most of each run).
struct DumpFiles {
  std::vector<hyoracle::RawTensor> tensors;

  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    tensors.push_back({name, dtype, std::move(shape), std::move(bytes)});
  }

  // manifest.json (no "file_checks": optional, as in hand-written dumps) and
  // activations.safetensors.
  void write(const std::string& dir) const {
    std::filesystem::create_directories(dir);
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    uint64_t offset = 0;
    for (const auto& t : tensors) {
      header[t.name] = {{"dtype", hyoracle::dtype_name(t.dtype)},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + t.bytes.size()}}};
      offset += t.bytes.size();
    }
    std::string text = header.dump();
    while (text.size() % 8 != 0) text.push_back(' ');
    std::ofstream f(dir + "/activations.safetensors", std::ios::binary | std::ios::trunc);
    for (int i = 0; i < 8; ++i) f.put(char((uint64_t(text.size()) >> (8 * i)) & 0xff));
    f << text;
    for (const auto& t : tensors)
      f.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
    std::ofstream m(dir + "/manifest.json", std::ios::trunc);
    m << R"({"format": "hyoracle.dump", "version": 1, "files": ["activations.safetensors"]})";
    if (!f || !m) std::abort();  // the scratch directory is the harness's own: not an input error
  }
};

// An id tensor: I32 or I64 (the dtypes checked_ids reads), or a float dtype, which it refuses.
void put_ids(FuzzedDataProvider& p, DumpFiles& w, const std::string& name, const std::vector<int64_t>& shape, int64_t E,
             DType dtype) {
  const std::vector<int64_t> v = fuzz_ids(p, shape, E);
  w.add(name, dtype, shape, hyoracle::encode_ints(v.data(), int64_t(v.size()), dtype));
}

void put_reals(FuzzedDataProvider& p, DumpFiles& w, const std::string& name, const std::vector<int64_t>& shape,
               DType dtype) {
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = fuzz_real(p);
  w.add(name, dtype, shape, hyoracle::encode_values(v.data(), int64_t(v.size()), dtype));
}

// compare.cpp's read of a float routing tensor: the expected shape, then no NaN.
std::vector<double> read_float(const Dump& d, const std::string& n, const std::vector<int64_t>& want) {
  if (d.info(n).shape != want)
    fail(d.file_of(n) + ": tensor \"" + n + "\" has shape " + hyoracle::shape_str(d.info(n).shape) + "; expected " +
         hyoracle::shape_str(want));
  Tensor<double> x = d.read(n);
  for (double v : x.data)
    if (std::isnan(v)) fail(d.file_of(n) + ": tensor \"" + n + "\" has NaN");
  return x.data;
}

bool contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

void check_agreement(const RoutingInputs& in, const RoutingLayer& r) {
  const int64_t T = in.tokens, k = in.k;
  if (r.exact_set_match + r.near_tie_flips + r.real_flips != T) std::abort();
  if (int64_t(r.flips.size()) != r.near_tie_flips + r.real_flips) std::abort();
  if (!(r.mean_jaccard >= 0 && r.mean_jaccard <= 1)) std::abort();
  int64_t binned = 0;
  for (int64_t n : r.margin_histogram) binned += n;
  if (binned > T) std::abort();
  int64_t last = -1;
  for (const RoutingFlip& f : r.flips) {
    if (f.token <= last || f.token >= T) std::abort();
    last = f.token;
    const std::vector<int64_t> A(in.ref_ids.begin() + f.token * k, in.ref_ids.begin() + (f.token + 1) * k);
    const std::vector<int64_t> B(in.target_ids.begin() + f.token * k, in.target_ids.begin() + (f.token + 1) * k);
    if (f.only_baseline.empty() && f.only_target.empty()) std::abort();
    for (int64_t a : f.only_baseline)
      if (!contains(A, a) || contains(B, a)) std::abort();
    for (int64_t b : f.only_target)
      if (!contains(B, b) || contains(A, b)) std::abort();
  }
}

// A listed teacher-forced mismatch carries its own evidence (routing.h): the passed-over expert's
// corrected score beats the chosen one's by more than the sum of their rounding windows, a
// window that is not negative.
void check_forced(const RoutingInputs& in, const RoutingLayer& r) {
  const int64_t T = in.tokens, E = in.experts, k = in.k;
  if (!r.forced || r.forced_mismatches < 0 || r.forced_mismatches > T) std::abort();
  if (int64_t(r.forced_list.size()) > r.forced_mismatches) std::abort();
  for (const ForcedMismatch& m : r.forced_list) {
    if (m.token < 0 || m.token >= T || m.chosen < 0 || m.chosen >= E || m.passed_over < 0 || m.passed_over >= E)
      std::abort();
    const std::vector<int64_t> B(in.target_ids.begin() + m.token * k, in.target_ids.begin() + (m.token + 1) * k);
    if (!contains(B, m.chosen) || contains(B, m.passed_over)) std::abort();
    // forced_routing compares c_b − w_b with c_a + w_a: the same up to a few roundings.
    const double slack = 8 * std::numeric_limits<double>::epsilon() *
                         (std::fabs(m.c_chosen) + std::fabs(m.c_passed_over) + std::fabs(m.window));
    if (!(m.window >= 0) || !(m.c_passed_over - m.c_chosen >= m.window - slack)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  try {
    // The model config, when there is one (compare --model): E and k from it, T the prompt's.
    const bool model = p.ConsumeBool();
    const int64_t T = p.ConsumeIntegralInRange<int64_t>(0, kMax);
    const int64_t E_cfg = p.ConsumeIntegralInRange<int64_t>(1, kMax);
    const int64_t k_cfg = p.ConsumeIntegralInRange<int64_t>(1, E_cfg);
    const int64_t E_guess = model ? E_cfg : p.ConsumeIntegralInRange<int64_t>(0, kMax);
    const bool target_ids_in_dump = p.ConsumeBool();
    const uint8_t has = p.ConsumeIntegral<uint8_t>();  // which optional tensors exist
    const bool has_scores = has & 1, has_logits = has & 2, has_margin = has & 4, has_ref_weights = has & 8,
               has_target_weights = has & 16, has_target_router = has & 32, target_router_is_logits = has & 64;
    const DType ids_dtype = fuzz_id_dtype(p), target_ids_dtype = fuzz_id_dtype(p);

    // The baseline dump.
    const std::vector<int64_t> rows_k_want = {T, k_cfg}, rows_e_want = {T, E_guess};
    const DType bf = fuzz_float_dtype(p), tf = fuzz_float_dtype(p);
    DumpFiles bw, tw;
    put_ids(p, bw, kIds, shape_near(p, rows_k_want), E_guess, ids_dtype);
    if (has_scores) put_reals(p, bw, kScores, shape_near(p, rows_e_want), bf);
    if (has_logits) put_reals(p, bw, kLogits, shape_near(p, rows_e_want), bf);
    if (has_margin) put_reals(p, bw, kMargin, shape_near(p, {T}), bf);
    if (has_ref_weights) put_reals(p, bw, kWeights, shape_near(p, rows_k_want), bf);
    // The target dump, or the ids it exported (a routed-experts file).
    std::vector<int64_t> exported;
    if (target_ids_in_dump) {
      put_ids(p, tw, kIds, shape_near(p, rows_k_want), E_guess, target_ids_dtype);
    } else {
      exported = fuzz_ids(p, shape_near(p, rows_k_want), E_guess);
    }
    if (has_target_weights) put_reals(p, tw, kWeights, shape_near(p, rows_k_want), tf);
    if (has_target_router)
      put_reals(p, tw, target_router_is_logits ? kLogits : kScores, shape_near(p, rows_e_want), tf);
    // The checkpoint's expert_bias (F32, shape [E] checked by the checkpoint loader).
    std::vector<double> bias;
    if (model && p.ConsumeBool()) {
      bias.resize(size_t(E_cfg));
      for (double& x : bias) x = fuzz_f32(p);
    }
    const double noise_scale = std::fabs(fuzz_real(p));  // stands in for compare's per-token budget
    const std::string bdir = scratch_root() + "/baseline", tdir = scratch_root() + "/target";
    bw.write(bdir);
    tw.write(tdir);
    const Dump b(bdir), t(tdir);

    // From here on, as compare_routing does.
    RoutingInputs in;
    const hyoracle::TensorInfo& bi = b.info(kIds);
    if (bi.shape.size() != 2 || bi.shape[0] < 0 || bi.shape[1] < 1)
      fail(b.file_of(kIds) + ": tensor \"" + std::string(kIds) + "\" has shape " + hyoracle::shape_str(bi.shape) +
           "; expected [tokens, k] with k >= 1");
    in.tokens = bi.shape[0];
    in.k = bi.shape[1];
    in.experts = model ? E_cfg : 0;
    for (const char* s : {kScores, kLogits})
      if (!model && b.has(s) && b.info(s).shape.size() == 2) in.experts = b.info(s).shape[1];
    if (model && bi.shape != rows_k_want)
      fail(b.file_of(kIds) + ": tensor \"" + std::string(kIds) + "\" has shape " + hyoracle::shape_str(bi.shape) +
           "; expected " + hyoracle::shape_str(rows_k_want) + " from config.json");
    const std::vector<int64_t> rows_k = bi.shape, rows_e = {in.tokens, in.experts};
    in.ref_ids = checked_ids(b, kIds, rows_k, in.experts);
    if (target_ids_in_dump) {
      in.target_ids = checked_ids(t, kIds, rows_k, in.experts);
    } else {
      in.target_ids = exported;
      if (int64_t(in.target_ids.size()) != in.tokens * in.k)
        fail("routed experts for layer 0 have " + std::to_string(in.target_ids.size()) + " ids, expected " +
             std::to_string(in.tokens * in.k));
      for (int64_t id : in.target_ids)
        if (in.experts > 0 && (id < 0 || id >= in.experts))
          fail("routed experts for layer 0 hold expert id " + std::to_string(id) + "; expected [0, " +
               std::to_string(in.experts) + ")");
    }
    if (b.has(kScores)) in.ref_scores = read_float(b, kScores, rows_e);
    std::vector<double> logits;
    if (b.has(kLogits)) {
      logits = read_float(b, kLogits, rows_e);
      if (in.ref_scores.empty()) {
        in.ref_scores = logits;
        for (double& x : in.ref_scores) x = 1 / (1 + std::exp(-x));
      }
    }
    if (model) in.expert_bias = bias;
    if (b.has(kMargin)) in.ref_margin = read_float(b, kMargin, {in.tokens});
    if (b.has(kWeights) && t.has(kWeights)) {
      in.ref_weights = read_float(b, kWeights, rows_k);
      in.target_weights = read_float(t, kWeights, rows_k);
    }
    in.logit_noise.assign(size_t(in.tokens), 0.0);
    for (int64_t tok = 0; tok < in.tokens; ++tok) {
      double rms = 1.0;
      if (!logits.empty()) {
        double ss = 0;
        for (int64_t e = 0; e < in.experts; ++e) {
          const double l = logits[size_t(tok * in.experts + e)];
          ss += l * l;
        }
        rms = std::sqrt(ss / double(in.experts));
      }
      in.logit_noise[size_t(tok)] = noise_scale * rms;
    }
    in.ref_unit_roundoff = unit_roundoff(hyoracle::dtype_name(bi.dtype)).value_or(0x1p-53);
    if (b.has(kScores))
      in.ref_unit_roundoff = unit_roundoff(hyoracle::dtype_name(b.info(kScores).dtype)).value_or(0x1p-53);

    RoutingLayer rl = routing_agreement(in);
    check_agreement(in, rl);
    if (model && in.experts > 0) {
      for (const char* src : {kLogits, kScores}) {
        if (!t.has(src)) continue;
        const std::vector<double> v = read_float(t, src, rows_e);
        const double u_dump = unit_roundoff(hyoracle::dtype_name(t.info(src).dtype)).value_or(0x1p-24);
        const bool are_logits = std::string(src) == kLogits;
        forced_routing(v, are_logits, u_dump, in.expert_bias, in.target_ids, in.tokens, in.experts, in.k, rl);
        check_forced(in, rl);
        break;
      }
    }
  } catch (const hyoracle::Error&) {
  }
  return 0;
}
