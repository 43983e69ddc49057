// config_reader.h: the field readers the family parsers of config.json share (io/config.cpp,
// io/config_hunyuan.cpp). Every failure is one line naming the file and the field.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "io/config.h"
#include "util/error.h"

namespace hyoracle::config_detail {

using nlohmann::json;

// Upper bound on any size field: large enough for any real model, small enough that products
// of two sizes stay far from int64 overflow.
inline constexpr int64_t kMaxDim = int64_t(1) << 24;

// A JSON value for a one-line message: ASCII only, at most 80 characters.
inline std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

struct Reader {
  const json& j;
  const std::string& src;

  [[noreturn]] void bad(const std::string& field, const std::string& why) const {
    fail(src + ": field \"" + field + "\" " + why);
  }
  bool has(const std::string& f) const { return j.contains(f) && !j[f].is_null(); }

  int64_t integer(const std::string& f, int64_t lo, int64_t hi = kMaxDim) const {
    if (!has(f)) bad(f, "is missing (it changes the computation; hyoracle uses no defaults)");
    const json& v = j[f];
    if (!v.is_number_integer() && !v.is_number_unsigned()) bad(f, "must be an integer, got " + shown(v));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi))
      bad(f, "is " + shown(v) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) bad(f, "is " + std::to_string(x) + ", expected " + std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  double number(const json& v, const std::string& f) const {
    if (!v.is_number()) bad(f, "must be a number, got " + shown(v));
    const double x = v.get<double>();
    if (!std::isfinite(x)) bad(f, "must be finite");
    return x;
  }
  double positive(const std::string& f) const {
    if (!has(f)) bad(f, "is missing (it changes the computation; hyoracle uses no defaults)");
    const double x = number(j[f], f);
    if (!(x > 0)) bad(f, "must be > 0, got " + shown(j[f]));
    return x;
  }
  bool boolean(const std::string& f) const {
    if (!has(f)) bad(f, "is missing (engines disagree on its default; hyoracle uses none)");
    if (!j[f].is_boolean()) bad(f, "must be true or false, got " + shown(j[f]));
    return j[f].get<bool>();
  }
  bool boolean_or(const std::string& f, bool dflt) const { return has(f) ? boolean(f) : dflt; }
};


void parse_hy_v3(const Reader& r, ModelConfig& c);
void parse_hunyuan_v1(const Reader& r, ModelConfig& c);

}  // namespace hyoracle::config_detail
