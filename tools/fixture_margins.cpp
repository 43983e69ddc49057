#include "tools/fixture_margins.h"

#include <algorithm>
#include <cmath>

#include "tools/cli_util.h"
#include "reference/model.h"
#include "reference/names.h"
#include "reference/router.h"

namespace hyoracle::fixture {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The L of "...layers.L...." (-1 when absent).
int64_t layer_in_name(const std::string& name) {
  const size_t at = name.find("layers.");
  if (at == std::string::npos) return -1;
  return std::stoll(name.substr(at + 7));
}

// Watches the recorded tensors for router margins and for selections the bias changed, and
// passes every tensor on to an optional dump writer (decode steps only when `keep_steps`).
class MarginSink : public ActivationSink {
 public:
  MarginSink(MarginReport& r, DumpWriter* writer, bool keep_steps) : r_(r), writer_(writer), keep_steps_(keep_steps) {}

  void put(const std::string& name, const Tensor<double>& t) override {
    see(name, t);
    if (keeps(name)) writer_->put(name, t);
  }
  void put(const std::string& name, const Tensor<float>& t) override {
    see(name, cast<double>(t));
    if (keeps(name)) writer_->put(name, t);
  }
  void put_ints(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& v,
                DType stored) override {
    if (ends_with(name, "moe.topk_ids")) count_bias_effect(name, shape, v);
    if (keeps(name)) writer_->put_ints(name, shape, v, stored);
  }

 private:
  bool keeps(const std::string& name) const { return writer_ && (keep_steps_ || name.rfind("steps.", 0) != 0); }

  void see(const std::string& name, const Tensor<double>& t) {
    if (ends_with(name, "moe.scores")) scores_[name.substr(0, name.size() - 6)] = t;
    if (!ends_with(name, "moe.topk_margin")) return;
    const int64_t L = layer_in_name(name);
    auto [slot, fresh] = r_.router_by_layer.try_emplace(L, std::numeric_limits<double>::infinity());
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double m = t.data[size_t(i)];
      ++r_.router_decisions;
      slot->second = std::min(slot->second, m);
      if (m < r_.min_router || std::isnan(m)) {
        r_.min_router = m;
        r_.min_router_at = name + "[" + std::to_string(i) + "]";
      }
    }
  }

  // Compares the chosen set (by σ + bias) with the top-k of σ alone, token by token.
  void count_bias_effect(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& ids) {
    const auto it = scores_.find(name.substr(0, name.size() - 8));
    if (it == scores_.end() || shape.size() != 2) return;
    const Tensor<double>& s = it->second;
    const int64_t T = shape[0], k = shape[1], E = s.cols();
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int64_t> plain = top_k_indices(s.row(t), E, k);
      std::vector<int64_t> chosen(ids.begin() + t * k, ids.begin() + (t + 1) * k);
      std::sort(plain.begin(), plain.end());
      std::sort(chosen.begin(), chosen.end());
      r_.bias_changes_selection += plain != chosen;
    }
  }

  MarginReport& r_;
  DumpWriter* writer_;
  bool keep_steps_;
  std::map<std::string, Tensor<double>> scores_;  // "…moe." prefix -> scores [T, E]
};

void see_logits(MarginReport& r, const Tensor<double>& logits, const std::string& name, std::vector<double>& out) {
  for (int64_t t = 0; t < logits.rows(); ++t) {
    const double m = top1_margin(logits.row(t), logits.cols());
    out.push_back(m);
    if (m < r.min_logit || std::isnan(m)) {
      r.min_logit = m;
      r.min_logit_at = name + "[" + std::to_string(t) + "]";
    }
  }
}

std::string short_num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", x);
  return b;
}

nlohmann::ordered_json finite_or_null(double x) { return std::isfinite(x) ? nlohmann::ordered_json(x) : nullptr; }

}  // namespace

double top1_margin(const double* row, int64_t n) {
  double first = -std::numeric_limits<double>::infinity(), second = first;
  for (int64_t i = 0; i < n; ++i) {
    if (row[i] > first) {
      second = first;
      first = row[i];
    } else if (row[i] > second) {
      second = row[i];
    }
  }
  return first - second;
}

MarginReport run_golden(const Checkpoint& ck, const std::vector<int64_t>& prompt, int64_t generate, int threads,
                        DumpWriter* golden, bool golden_steps, cli::Progress* progress) {
  const ModelConfig& c = ck.config();
  // Experts are expanded on use: memory stays bounded at full size (one Hy3 MoE layer is 14.5 GB
  // in float64), and at CI size re-expanding a few KB per use costs nothing.
  LoadOptions lo;
  lo.resident_experts = false;
  const ModelWeights<double> m = load_model<double>(ck, lo);
  const Numerics num{Precision::exact, threads};
  MarginReport r;
  MarginSink prefill(r, golden, true), steps(r, golden, golden_steps);
  cli::ProgressSink watched_prefill(&prefill, progress, c.num_hidden_layers, true);
  cli::ProgressSink watched_steps(&steps, progress, c.num_hidden_layers, true);
  KVCache<double> cache = make_cache<double>(c);
  const Tensor<double> logits = forward(m, prompt, cache, num, Recorder{&watched_prefill, ""});
  see_logits(r, logits, names::kLogits, r.prompt_logit_margins);
  if (generate > 0) {
    const Generation<double> g = generate_greedy(m, logits, cache, generate, num, &watched_steps);
    r.tokens = g.tokens;
    see_logits(r, g.logits, names::kGenerateLogits, r.step_logit_margins);
    if (golden) {
      golden->put_ints(names::kGenerateTokens, {generate}, g.tokens, dataflow::int_dtype_of(names::kGenerateTokens));
      golden->put(names::kGenerateLogits, g.logits);
    }
  }
  return r;
}

std::string margin_shortfall(const MarginReport& r, double min_margin) {
  if (!(r.min_router >= min_margin))
    return "router top-k margin " + short_num(r.min_router) + " < " + short_num(min_margin) + " at " + r.min_router_at;
  if (!(r.min_logit >= min_margin))
    return "top-1 logit margin " + short_num(r.min_logit) + " < " + short_num(min_margin) + " at " + r.min_logit_at;
  return "";
}

nlohmann::ordered_json margins_json(const MarginReport& r) {
  nlohmann::ordered_json by_layer = nlohmann::ordered_json::object();
  for (const auto& [L, m] : r.router_by_layer) by_layer[std::to_string(L)] = finite_or_null(m);
  nlohmann::ordered_json j;
  j["router"] = {{"min", finite_or_null(r.min_router)},
                 {"at", r.min_router_at},
                 {"by_layer", by_layer},
                 {"decisions", r.router_decisions},
                 {"bias_changes_selection", r.bias_changes_selection}};
  j["logit"] = {{"min", finite_or_null(r.min_logit)},
                {"at", r.min_logit_at},
                {"prompt", r.prompt_logit_margins},
                {"generated", r.step_logit_margins}};
  return j;
}

}  // namespace hyoracle::fixture
