#include "compare/tolerance.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "reference/dataflow.h"
#include "util/error.h"
#include "io/safetensors.h"

namespace hyoracle::compare {

std::optional<double> unit_roundoff(const std::string& dtype) {
  // u = 2^-p, p = significand bits including the hidden bit.
  static const std::map<std::string, int> bits = {
      {"float64", 53}, {"F64", 53}, {"double", 53},   {"float32", 24}, {"F32", 24}, {"float", 24},
      {"tf32", 11},    {"float16", 11}, {"F16", 11},  {"half", 11},    {"bfloat16", 8}, {"BF16", 8},
      {"bf16", 8},     {"fp16", 11},    {"fp32", 24}, {"fp64", 53},    {"F8_E4M3", 4}, {"float8_e4m3fn", 4},
      {"fp8_e4m3", 4}, {"F8_E5M2", 3},  {"float8_e5m2", 3}, {"fp8_e5m2", 3}};
  auto it = bits.find(dtype);
  if (it == bits.end()) return std::nullopt;
  return std::ldexp(1.0, -it->second);
}

std::string strip_step(const std::string& name, int64_t* step) {
  if (step) *step = 0;
  if (name.rfind("steps.", 0) != 0) return name;
  const size_t dot = name.find('.', 6);
  if (dot == std::string::npos) return name;
  if (step) {
    try {
      *step = std::stoll(name.substr(6, dot - 6));
    } catch (...) {
      *step = 0;
    }
  }
  return name.substr(dot + 1);
}

int64_t layer_of_name(const std::string& name) {
  const std::string n = strip_step(name);
  if (n.rfind("layers.", 0) != 0) return -1;
  const size_t dot = n.find('.', 7);
  try {
    return std::stoll(n.substr(7, dot - 7));
  } catch (...) {
    return -1;
  }
}

std::string op_of(Family f, const std::string& canonical_name) {
  const std::string n = strip_step(canonical_name);
  if (layer_of_name(n) < 0) {
    for (const auto& m : dataflow::model_steps())
      if (m.name == n) return m.op;
    return "";
  }
  const std::string s = n.substr(n.find('.', 7) + 1);
  if (s == "kv.k" || s == "kv.v") return "copy";  // the KV cache after the run
  // mlp.out is an FFN in dense layers and the sum routed + shared in MoE layers; by name alone
  // it is the dense row (the MoE form's budget comes from its replay).
  for (const auto& st : dataflow::layer_steps(f))
    if (st.name == s) return st.op;
  return "";
}

double default_gain(const std::string& op, int64_t k) {
  // Root-sum-square count of rounding points (docs/model.md §8.2), each of gain ~1.
  if (op == "rms_norm") return std::sqrt(2.0);              // R2: v -> bf16, w·v -> bf16
  if (op == "rope") return std::sqrt(5.0);                  // R4: cos, sin, q·cos, rot·sin, sum
  if (op == "attention") return std::sqrt(4.0);             // R5 (x2), R6, R7; measured when teacher forced
  if (op == "swiglu" || op == "ffn") return std::sqrt(5.0); // R10: gate, up, silu, product, down
  if (op == "routed_experts")                               // R10 per expert, R12 weight product and
    return std::sqrt(6.0 + 0.5 * double(k + 1));            //   k partial-sum roundings (sizes ~ √(j/k))
  if (op == "router_weights") return 2.0;                   // s/Σs, ·scale (fp32)
  if (op == "sigmoid" || op == "softmax") return 2.0;
  return 1.0;                                               // linear, add, copy, embedding: 1 rounding
}

double amplification(const std::string& op) {
  if (op == "rope" || op == "copy" || op == "embedding" || op == "add") return 1.0;  // isometries / sums
  if (op == "rms_norm" || op == "sigmoid" || op == "softmax" || op == "router_weights" || op == "margin") return 2.0;
  if (op == "attention") return 4.0;
  return 3.0;  // linear maps, SwiGLU, routed experts, the FFN
}

double safety_factor(double u_target, int64_t numel) {
  return (u_target >= std::ldexp(1.0, -11) || numel < 1000) ? 3.0 : 2.0;
}

namespace {
std::string fmt(const char* f, double a) {
  char b[64];
  std::snprintf(b, sizeof b, f, a);
  return b;
}
}  // namespace

Budget derived_local_budget(const BudgetInputs& in) {
  const double u = in.u_target;
  const double u_acc = std::min(u, std::ldexp(1.0, -24));
  const double g = in.gain > 0 ? in.gain : default_gain(in.op, in.experts_per_token);
  const double c = safety_factor(u, in.numel);
  const double rounding = g * u / std::sqrt(3.0);
  const double accumulation = in.reduction_k > 0 ? std::sqrt(double(in.reduction_k)) * u_acc * in.kappa : 0.0;
  const double angles = std::sqrt(2.0 / 3.0) * std::ldexp(1.0, -24) * in.rope_angle_rms;
  Budget b;
  b.rule = "derived:" + (in.op.empty() ? std::string("unknown") : in.op);
  b.limit = c * (rounding + accumulation + angles);
  b.token_limit = 3.0 * b.limit;
  b.derivation = "c·(g·u/√3 + √K·u_acc·κ) = " + fmt("%g", c) + "·(" + fmt("%.3g", g) + "·" + fmt("%.3g", u) + "/√3";
  if (in.reduction_k > 0)
    b.derivation += " + √" + std::to_string(in.reduction_k) + "·" + fmt("%.3g", u_acc) + "·" + fmt("%.3g", in.kappa);
  if (angles > 0) b.derivation += " + √(2/3)·u_fp32·rms φ " + fmt("%.3g", in.rope_angle_rms);
  b.derivation += ") = " + fmt("%.3g", b.limit);
  return b;
}

double rope_angle_rms(const std::vector<int64_t>& positions, int64_t head_dim, double theta) {
  if (positions.empty() || head_dim < 2) return 0;
  double sum = 0;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * double(i) / double(head_dim));
    for (int64_t p : positions) sum += (double(p) * inv_freq) * (double(p) * inv_freq);
  }
  return std::sqrt(sum / (double(positions.size()) * double(head_dim / 2)));
}

Budget derived_total_budget(const BudgetInputs& in, double inherited_input) {
  Budget b = derived_local_budget(in);
  const double a = amplification(in.op);
  const double inh = std::isfinite(inherited_input) ? inherited_input : 0.0;
  const double local = b.limit;
  b.rule = "derived-total:" + (in.op.empty() ? std::string("unknown") : in.op);
  b.limit = local + a * inh;
  b.token_limit = 3.0 * b.limit;
  b.derivation = "local + a·inherited = " + fmt("%.3g", local) + " + " + fmt("%g", a) + "·" + fmt("%.3g", inh) +
                 " = " + fmt("%.3g", b.limit) + "  [local " + b.derivation + "]";
  return b;
}

int Rules::find(const std::string& name) const {
  for (size_t i = 0; i < rules.size(); ++i)
    if (rules[i].matcher.search(name)) return int(i);
  return -1;
}

void check_pattern(const std::string& pattern, const std::string& where) { (void)Pattern(pattern, where); }

Rules parse_rules(const std::string& text, const std::string& source) {
  // The strict reader every input goes through: a duplicate "max" must not silently win.
  const nlohmann::json j = parse_json_strict(text, source);
  if (!j.is_object()) fail(source + ": rules file must be a JSON object with a \"rules\" array");
  Rules r;
  r.source = source;
  if (j.contains("use_derived_defaults")) {
    if (!j["use_derived_defaults"].is_boolean()) fail(source + ": field \"use_derived_defaults\" must be true or false");
    r.use_derived_defaults = j["use_derived_defaults"].get<bool>();
  }
  if (!j.contains("rules") || !j["rules"].is_array()) fail(source + ": field \"rules\" must be an array");
  static const std::vector<std::string> metrics = {"rel_l2", "max_abs", "nmse", "diff", "cosine_distance"};
  for (size_t i = 0; i < j["rules"].size(); ++i) {
    const nlohmann::json& e = j["rules"][i];
    const std::string where = source + ": rules[" + std::to_string(i) + "]";
    if (!e.is_object()) fail(where + " must be an object");
    if (!e.contains("match") || !e["match"].is_string()) fail(where + ": field \"match\" (a regex) is required");
    Rule rule;
    rule.pattern = e["match"].get<std::string>();
    rule.matcher = Pattern(rule.pattern, where + ": field \"match\"");
    if (e.contains("metric")) {
      if (!e["metric"].is_string()) fail(where + ": field \"metric\" must be a string");
      rule.metric = e["metric"].get<std::string>();
      if (std::find(metrics.begin(), metrics.end(), rule.metric) == metrics.end())
        fail(where + ": field \"metric\" must be one of rel_l2, max_abs, nmse, diff, cosine_distance");
    }
    if (e.contains("max")) {
      if (!e["max"].is_number() || e["max"].get<double>() < 0) fail(where + ": field \"max\" must be a number >= 0");
      rule.max = e["max"].get<double>();
    }
    if (e.contains("scale")) {
      if (!e["scale"].is_number() || e["scale"].get<double>() <= 0) fail(where + ": field \"scale\" must be a number > 0");
      rule.scale = e["scale"].get<double>();
    }
    if (rule.max.has_value() == rule.scale.has_value()) fail(where + ": give exactly one of \"max\" and \"scale\"");
    if (rule.scale && rule.metric != "rel_l2") fail(where + ": \"scale\" applies to the derived rel_l2 budget only");
    if (!e.contains("reason") || !e["reason"].is_string() || e["reason"].get<std::string>().empty())
      fail(where + ": field \"reason\" (why this override is right) is required");
    rule.reason = e["reason"].get<std::string>();
    r.rules.push_back(std::move(rule));
  }
  return r;
}

Rules load_rules(const std::string& path) { return parse_rules(read_text_file(path, kJsonFileLimit, "rules file"), path); }

Budget apply_rule(const Rules& rules, int i, const Budget& derived) {
  const Rule& r = rules.rules.at(size_t(i));
  Budget b = derived;
  b.rule = "rules:" + std::to_string(i) + ":" + r.pattern;
  b.reason = r.reason;
  if (r.scale) {
    b.limit = derived.limit * *r.scale;
    b.token_limit = derived.token_limit * *r.scale;
    b.derivation = fmt("%g", *r.scale) + " × (" + derived.derivation + ")";
  } else {
    b.metric = r.metric;
    b.limit = *r.max;
    b.token_limit = 0;
    b.derivation = r.metric + " <= " + fmt("%g", *r.max) + " (" + rules.source + ")";
  }
  return b;
}

}  // namespace hyoracle::compare
