#include "io/quant.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "io/dtype.h"
#include "util/error.h"

namespace hyoracle {

using nlohmann::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), std::string::npos, suffix) == 0;
}

// A JSON value for a one-line message: ASCII only, at most 80 characters.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

[[noreturn]] void bad(const std::string& src, const std::string& key, const std::string& why) {
  fail(src + ": field \"quantization_config\" " + (key.empty() ? "" : "key \"" + key + "\" ") + why);
}

// A list of module names (ignored_layers / modules_to_not_convert): an array of strings.
std::vector<std::string> name_list(const json& v, const std::string& src, const std::string& key) {
  if (!v.is_array()) bad(src, key, "must be an array of module names, got " + shown(v));
  std::vector<std::string> out;
  for (const json& e : v) {
    if (!e.is_string()) bad(src, key, "must hold module name strings, got " + shown(e));
    out.push_back(e.get<std::string>());
  }
  return out;
}

// Drops this process's resident copy of the mapped file pages [p, p+n) once a weight is expanded
// (the page cache keeps them), so expanding experts one after another does not accumulate every
// expert's FP8 bytes in the resident set.
void release_pages(const uint8_t* p, uint64_t n) {
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = uintptr_t(p) & ~(page - 1), end = (uintptr_t(p) + n + page - 1) & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

std::string quant_description(const QuantConfig& q) {
  switch (q.kind) {
    case QuantKind::None: return "none";
    case QuantKind::Fp8PerTensor: return "fp8 per-tensor weight_scale (activation_scheme " + q.activation_scheme + ")";
    case QuantKind::Fp8Block:
      return "fp8 block-wise weight_scale_inv, weight_block_size [" + std::to_string(q.block_rows) + ", " +
             std::to_string(q.block_cols) + "] (activation_scheme " + q.activation_scheme + ")";
  }
  return "?";
}

QuantConfig parse_quantization_config(const json& v, const std::string& src) {
  if (!v.is_object()) bad(src, "", "must be an object, got " + shown(v));
  // Every key is known: an unknown one may change what the scales mean, so it is refused.
  static const char* const known[] = {"quant_method",  "activation_scheme", "weight_block_size", "fmt",
                                      "ignored_layers", "modules_to_not_convert", "kv_cache_scheme"};
  for (auto it = v.begin(); it != v.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok)
      bad(src, it.key(), "is not a field hyoracle knows (accepted: quant_method, activation_scheme, weight_block_size, "
                         "fmt, ignored_layers, modules_to_not_convert, kv_cache_scheme)");
  }
  if (!v.contains("quant_method") || !v["quant_method"].is_string())
    bad(src, "quant_method", "is missing or not a string (hyoracle reads \"fp8\" checkpoints only)");
  const std::string method = v["quant_method"].get<std::string>();
  if (method != "fp8")
    bad(src, "quant_method", "is " + printable_quoted(method) +
                                 "; hyoracle reads only \"fp8\" (E4M3 weights with a per-tensor weight_scale or a "
                                 "block-wise weight_scale_inv)");
  QuantConfig q;
  // activation_scheme: engines default it differently (transformers "dynamic"), so it must be given.
  if (!v.contains("activation_scheme") || !v["activation_scheme"].is_string())
    bad(src, "activation_scheme", "is missing or not a string (expected \"static\" or \"dynamic\")");
  q.activation_scheme = v["activation_scheme"].get<std::string>();
  if (q.activation_scheme != "static" && q.activation_scheme != "dynamic")
    bad(src, "activation_scheme", "is " + printable_quoted(q.activation_scheme) + ", expected \"static\" or \"dynamic\"");
  if (v.contains("fmt") && v["fmt"] != "e4m3")
    bad(src, "fmt", "is " + shown(v["fmt"]) + "; only \"e4m3\" (float8_e4m3fn) weights are read");
  if (v.contains("kv_cache_scheme") && !v["kv_cache_scheme"].is_null() && v["kv_cache_scheme"] != "static")
    bad(src, "kv_cache_scheme", "is " + shown(v["kv_cache_scheme"]) + ", expected \"static\" or null");
  if (v.contains("ignored_layers") && v.contains("modules_to_not_convert"))
    bad(src, "modules_to_not_convert", "is given next to ignored_layers (its alias); give one");
  for (const char* k : {"ignored_layers", "modules_to_not_convert"})
    if (v.contains(k) && !v[k].is_null()) q.ignored_layers = name_list(v[k], src, k);

  if (!v.contains("weight_block_size") || v["weight_block_size"].is_null()) {
    q.kind = QuantKind::Fp8PerTensor;
    return q;
  }
  const json& b = v["weight_block_size"];
  if (!b.is_array() || b.size() != 2)
    bad(src, "weight_block_size", "is " + shown(b) + ", expected [rows, cols] (two positive integers) or absent");
  int64_t dims[2];
  for (int i = 0; i < 2; ++i) {
    if (!b[i].is_number_integer() && !b[i].is_number_unsigned())
      bad(src, "weight_block_size", "is " + shown(b) + ", expected two positive integers");
    const int64_t x = b[i].is_number_unsigned() && b[i].get<uint64_t>() > (uint64_t(1) << 24) ? -1 : b[i].get<int64_t>();
    if (x < 1 || x > (int64_t(1) << 24))
      bad(src, "weight_block_size", "is " + shown(b) + ", expected two integers in 1..16777216");
    dims[i] = x;
  }
  // vLLM and transformers quantize activations per token and block when the weights are
  // block-scaled; a static activation scale there is a layout no engine loads.
  if (q.activation_scheme != "dynamic")
    bad(src, "activation_scheme", "is \"static\" with a weight_block_size; block-wise FP8 checkpoints use \"dynamic\"");
  q.kind = QuantKind::Fp8Block;
  q.block_rows = dims[0];
  q.block_cols = dims[1];
  return q;
}

bool is_fp8_scale_name(const std::string& n) {
  return ends_with(n, ".weight_scale") || ends_with(n, ".weight_scale_inv") || ends_with(n, ".input_scale");
}

std::string scaled_weight_of(const std::string& n) {
  if (ends_with(n, ".weight_scale")) return n.substr(0, n.size() - std::strlen(kWeightScaleSuffix));
  if (ends_with(n, ".weight_scale_inv")) return n.substr(0, n.size() - std::strlen(kWeightScaleInvSuffix));
  if (ends_with(n, ".input_scale")) return n.substr(0, n.size() - std::strlen(".input_scale")) + ".weight";
  return "";
}

std::string input_scale_of(const std::string& weight_name) {
  return weight_name.substr(0, weight_name.size() - std::strlen(".weight")) + ".input_scale";
}

bool may_be_fp8(const std::string& n) { return ends_with(n, "_proj.weight"); }

std::vector<int64_t> block_scale_shape(const QuantConfig& q, const std::vector<int64_t>& w) {
  if (q.kind != QuantKind::Fp8Block || w.size() != 2) return {1};
  return {(w[0] + q.block_rows - 1) / q.block_rows, (w[1] + q.block_cols - 1) / q.block_cols};
}

bool scale_shape_ok(const QuantConfig& q, const std::vector<int64_t>& w, const std::vector<int64_t>& s) {
  if (q.kind == QuantKind::Fp8Block) return w.size() == 2 && s == block_scale_shape(q, w);
  return s.empty() || s == std::vector<int64_t>{1};
}

void check_scale_values(const SafetensorsFile& f, const TensorInfo& s) {
  if (s.dtype != DType::F32)
    fail(f.path() + ": tensor " + printable_quoted(s.name) + " has dtype " + dtype_name(s.dtype) +
         ", expected F32 (FP8 checkpoints store their scales in float32)");
  const uint8_t* p = f.data(s);
  for (int64_t i = 0, n = s.numel(); i < n; ++i) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    if (!std::isfinite(v) || !(v > 0))
      fail(f.path() + ": tensor " + printable_quoted(s.name) + " holds " + (std::isnan(v) ? std::string("NaN") : std::to_string(v)) +
           " at element " + std::to_string(i) + ", expected a finite scale > 0");
  }
}

template <class S>
Tensor<S> dequantize_fp8(const SafetensorsFile& wf, const TensorInfo& w, const SafetensorsFile& sf, const TensorInfo& s,
                         int64_t block_rows, int64_t block_cols) {
  // w [O, I] E4M3 bytes; s [⌈O/b0⌉, ⌈I/b1⌉] F32 (or one value); out [O, I] in S, each element
  // q · s formed in double (exact) then converted to S.
  const int64_t O = w.shape.at(0), I = w.shape.at(1);
  const uint8_t* q = wf.data(w);
  const uint8_t* sp = sf.data(s);
  auto scale_at = [&](int64_t i) {
    float v;
    std::memcpy(&v, sp + 4 * i, 4);
    return double(v);
  };
  // The 256 possible E4M3 values, decoded once.
  double table[256];
  for (int b = 0; b < 256; ++b) table[b] = f8e4m3_to_float(uint8_t(b));
  Tensor<S> out(w.shape);
  const int64_t scale_cols = block_cols > 0 ? (I + block_cols - 1) / block_cols : 0;
  for (int64_t r = 0; r < O; ++r) {
    const uint8_t* row = q + r * I;
    S* dst = out.data.data() + r * I;
    if (block_rows == 0) {
      const double sc = scale_at(0);
      for (int64_t c = 0; c < I; ++c) dst[c] = S(table[row[c]] * sc);
      continue;
    }
    const int64_t srow = (r / block_rows) * scale_cols;
    for (int64_t c0 = 0, j = 0; c0 < I; c0 += block_cols, ++j) {
      const double sc = scale_at(srow + j);
      const int64_t c1 = std::min(I, c0 + block_cols);
      for (int64_t c = c0; c < c1; ++c) dst[c] = S(table[row[c]] * sc);
    }
  }
  release_pages(q, w.end - w.begin);
  return out;
}
template Tensor<double> dequantize_fp8<double>(const SafetensorsFile&, const TensorInfo&, const SafetensorsFile&,
                                               const TensorInfo&, int64_t, int64_t);
template Tensor<float> dequantize_fp8<float>(const SafetensorsFile&, const TensorInfo&, const SafetensorsFile&,
                                             const TensorInfo&, int64_t, int64_t);

uint8_t quantize_e4m3(double value, double scale) { return double_to_f8e4m3(value / scale); }

}  // namespace hyoracle
