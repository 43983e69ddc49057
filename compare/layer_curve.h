// layer_curve.h: the per-layer error curve the Markdown/HTML/terminal reports plot.
//   total[L]  = total rel-L2 of layers.L.out (target vs baseline)
//   added[L]  = the largest judged local rel-L2 among layer L's tensors (teacher forced), or the
//               largest total rel-L2 minus its inherited part when there is no teacher forcing
//   units[L]  = the largest budget_units among layer L's tensors
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compare/compare.h"

namespace hyoracle::compare {

struct LayerPoint {
  int64_t layer = 0;
  double total = 0, added = 0, units = 0;
  std::string worst;  // tensor with the largest budget_units
};

std::vector<LayerPoint> layer_curve(const Report& r);

// x with `digits` significant digits ("%.<digits>g"); "inf"/"nan" spelled out.
std::string g_digits(double x, int digits);
// g_digits(x, 3).
std::string g3(double x);

}  // namespace hyoracle::compare
