#include "compare/layer_curve.h"

#include <cmath>
#include <cstdio>
#include <map>

namespace hyoracle::compare {

std::string g_digits(double x, int digits) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char b[40];
  std::snprintf(b, sizeof b, "%.*g", digits, x);
  return b;
}

std::string g3(double x) { return g_digits(x, 3); }

std::vector<LayerPoint> layer_curve(const Report& r) {
  std::map<int64_t, LayerPoint> m;
  for (const TensorResult& t : r.tensors) {
    if (t.layer < 0 || t.step != 0 || t.op == "routing") continue;
    LayerPoint& p = m[t.layer];
    p.layer = t.layer;
    if (t.name.size() >= 4 && t.name.compare(t.name.size() - 4, 4, ".out") == 0 &&
        t.name.find("attn.") == std::string::npos && t.name.find("mlp.") == std::string::npos &&
        t.name.find("moe.") == std::string::npos)
      p.total = t.total.rel_l2;
    const double added = t.local ? t.local->rel_l2 : t.judged_error;
    if (t.budget.metric == "rel_l2") p.added = std::max(p.added, added);
    if (t.budget_units > p.units || p.worst.empty()) {
      p.units = std::max(p.units, t.budget_units);
      p.worst = t.name;
    }
  }
  std::vector<LayerPoint> v;
  for (auto& [L, p] : m) v.push_back(p);
  return v;
}

}  // namespace hyoracle::compare
