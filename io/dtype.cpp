#include "io/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace hyoracle {

int dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::F8_E4M3: case DType::F8_E5M2: case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

std::string dtype_name(DType t) {
  switch (t) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

std::optional<DType> parse_dtype(const std::string& s) {
  for (DType t : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2, DType::I64,
                  DType::I32, DType::I16, DType::I8, DType::U8, DType::BOOL})
    if (dtype_name(t) == s) return t;
  return std::nullopt;
}

bool dtype_is_float(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F8_E4M3 ||
         t == DType::F8_E5M2;
}

float bf16_to_float(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_to_float(uint16_t h) {
  const int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0) v = std::ldexp(float(man), -24);                  // subnormal or zero
  else if (exp == 31) v = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(float(man | 0x400), exp - 25);
  return sign ? -v : v;
}

float f8e4m3_to_float(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
  float v;
  if (exp == 0xf && man == 7) v = std::numeric_limits<float>::quiet_NaN();
  else if (exp == 0) v = std::ldexp(float(man), -9);               // 2^(1-7) * man/8
  else v = std::ldexp(float(man | 8), exp - 10);                    // 2^(exp-7) * (8+man)/8
  return sign ? -v : v;
}

float f8e5m2_to_float(uint8_t b) { return f16_to_float(uint16_t(b) << 8); }

uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  const uint32_t lsb = (u >> 16) & 1;
  u += 0x7fff + lsb;
  return uint16_t(u >> 16);
}

uint16_t float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x477ff000) return sign | 0x7c00;  // rounds to >= 65520: Inf
  if (a < 0x38800000) {                        // below the smallest normal 2^-14: subnormal
    const float af = std::fabs(f);
    const float scaled = af * 16777216.0f;     // units of 2^-24, exact
    return sign | uint16_t(std::nearbyint(scaled));
  }
  const uint32_t lsb = (a >> 13) & 1;
  const uint32_t r = a + 0xfff + lsb;
  return sign | uint16_t((r >> 13) - (112u << 10));
}

uint8_t double_to_f8e4m3(double x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(x);
  if (a >= 448) return sign | 0x7e;                     // saturate: E4M3FN has no infinity
  if (a < 0x1p-6) return sign | uint8_t(std::nearbyint(a * 0x1p9));  // subnormal grid 2^-9 (8 -> 2^-6, 0x08)
  int k;
  std::frexp(a, &k);                                    // a = f * 2^k, 0.5 <= f < 1: a in [2^(k-1), 2^k)
  const int e = k - 1;
  int n = int(std::nearbyint(std::ldexp(a, 3 - e)));   // significand in units of 2^(e-3): 8..16
  int biased = e + 7;
  if (n == 16) n = 8, ++biased;
  return sign | uint8_t((biased << 3) | (n - 8));
}

double round_to_bf16(double x) {
  // Round double -> bf16 directly (not via float) to avoid double rounding.
  if (std::isnan(x) || std::isinf(x) || x == 0) return double(bf16_to_float(float_to_bf16(float(x))));
  int e;
  std::frexp(x, &e);                    // x = m * 2^e, 0.5 <= |m| < 1
  if (e < -125) e = -125;                // bf16 subnormals share float's exponent range
  const double ulp = std::ldexp(1.0, e - 8);
  const double r = std::nearbyint(x / ulp) * ulp;  // nearbyint rounds half to even
  if (std::fabs(r) > 3.3895313892515355e38) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}

double element_as_double(const void* data, DType t, int64_t i) {
  const auto* p = static_cast<const unsigned char*>(data);
  switch (t) {
    case DType::F64: { double v; std::memcpy(&v, p + 8 * i, 8); return v; }
    case DType::F32: { float v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case DType::F16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return f16_to_float(v); }
    case DType::BF16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return bf16_to_float(v); }
    case DType::F8_E4M3: return f8e4m3_to_float(p[i]);
    case DType::F8_E5M2: return f8e5m2_to_float(p[i]);
    case DType::I64: { int64_t v; std::memcpy(&v, p + 8 * i, 8); return double(v); }
    case DType::I32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case DType::I16: { int16_t v; std::memcpy(&v, p + 2 * i, 2); return v; }
    case DType::I8: return double(int8_t(p[i]));
    case DType::U8: case DType::BOOL: return p[i];
  }
  return 0;
}

}  // namespace hyoracle
