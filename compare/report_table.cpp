// report_table.cpp: the per-tensor table exports, one row per tensor present on both sides
// (compared in execution order, then the skipped ones), for spreadsheets and scripts that filter
// thousands of rows without reading the whole JSON report. CSV (RFC 4180) and JSON Lines carry
// the same columns; a value that was not measured is an empty CSV cell and a JSON null.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "compare/compare.h"
#include "compare/report_view.h"
#include "compare/tolerance.h"

namespace hyoracle::compare {

namespace {

const char* const kColumns[] = {"name",         "step",         "layer",     "op",         "verdict",
                                "reason",       "judged_on",    "judged_error", "limit",   "budget_units",
                                "min_passing",  "inherited",    "total_rel_l2", "one_minus_cosine",
                                "norm_ratio",   "max_abs",      "max_abs_at", "rule",      "total_comparable"};

// A finite number as itself, ±inf as the strings "inf"/"-inf", NaN as null.
nlohmann::ordered_json num(double x) {
  if (std::isnan(x)) return nullptr;
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

// "3,17" for a coordinate (empty when there is none).
std::string coordinate(const std::vector<int64_t>& at) {
  std::string s;
  for (int64_t i : at) s += (s.empty() ? "" : ",") + std::to_string(i);
  return s;
}

// The row of a compared tensor, keys in kColumns order.
nlohmann::ordered_json tensor_row(const TensorResult& t) {
  const bool has_total = t.op != "routing" && t.op != "generation" && t.total_comparable;
  nlohmann::ordered_json j;
  j["name"] = t.name;
  j["step"] = t.step;
  j["layer"] = t.layer >= 0 ? nlohmann::ordered_json(t.layer) : nlohmann::ordered_json(nullptr);
  j["op"] = t.op;
  j["verdict"] = verdict_name(t.verdict);
  j["reason"] = t.reason;
  j["judged_on"] = t.judged_on;
  j["judged_error"] = num(t.judged_error);
  j["limit"] = num(t.budget.limit);
  j["budget_units"] = num(t.budget_units);
  j["min_passing"] = num(t.min_passing);
  j["inherited"] = num(t.inherited);
  j["total_rel_l2"] = has_total ? num(t.total.rel_l2) : nullptr;
  j["one_minus_cosine"] = has_total ? num(1 - t.total.cosine) : nullptr;
  j["norm_ratio"] = has_total ? num(t.total.norm_ratio) : nullptr;
  j["max_abs"] = has_total ? num(t.total.max_abs) : nullptr;
  j["max_abs_at"] = has_total ? nlohmann::ordered_json(coordinate(t.total.max_abs_at)) : nullptr;
  j["rule"] = t.budget.rule;
  j["total_comparable"] = t.total_comparable;
  return j;
}

// The row of a tensor that was present on both sides but not compared.
nlohmann::ordered_json skipped_row(const std::string& name, const std::string& reason) {
  nlohmann::ordered_json j;
  for (const char* c : kColumns) j[c] = nullptr;
  int64_t step = 0;
  strip_step(name, &step);
  const int64_t layer = layer_of_name(name);
  j["name"] = name;
  j["step"] = step;
  j["layer"] = layer >= 0 ? nlohmann::ordered_json(layer) : nlohmann::ordered_json(nullptr);
  j["verdict"] = "skipped";
  j["reason"] = reason;
  return j;
}

// Every row: compared tensors in execution order, then the skipped ones in the report's order.
std::vector<nlohmann::ordered_json> rows(const Report& r) {
  std::vector<nlohmann::ordered_json> v;
  for (const TensorResult& t : r.tensors) v.push_back(tensor_row(t));
  for (const auto& [name, reason] : r.skipped) v.push_back(skipped_row(name, reason));
  return v;
}

// One CSV field: numbers with 9 significant digits (%.9g), strings quoted when they hold a comma,
// a quote or a line break (quotes doubled), null empty.
std::string csv_field(const nlohmann::ordered_json& v) {
  if (v.is_null()) return "";
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    char b[40];
    std::snprintf(b, sizeof b, "%.9g", v.get<double>());
    return b;
  }
  const std::string s = v.get<std::string>();
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::string report_csv(const Report& r) {
  std::ostringstream o;
  bool first = true;
  for (const char* c : kColumns) o << (first ? "" : ",") << c, first = false;
  o << "\r\n";
  for (const nlohmann::ordered_json& row : rows(r)) {
    first = true;
    for (const char* c : kColumns) o << (first ? "" : ",") << csv_field(row.at(c)), first = false;
    o << "\r\n";
  }
  return o.str();
}

std::string report_jsonl(const Report& r) {
  std::string s;
  for (const nlohmann::ordered_json& row : rows(r)) s += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return s;
}

}  // namespace hyoracle::compare
