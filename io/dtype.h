// dtype.h: safetensors element types and exact conversions between them.
//
// Decoding (bf16, f16, f8 -> float/double) is exact: every such value is representable in
// float. Encoding (double -> bf16/f16/f32) rounds to nearest, ties to even, and keeps NaN/Inf.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace hyoracle {

enum class DType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };

// Bytes per element.
int dtype_size(DType t);
// The safetensors spelling ("BF16", "F8_E4M3", ...).
std::string dtype_name(DType t);
// Parses a safetensors dtype string; nullopt when unknown.
std::optional<DType> parse_dtype(const std::string& s);
bool dtype_is_float(DType t);

float bf16_to_float(uint16_t h);
float f16_to_float(uint16_t h);
float f8e4m3_to_float(uint8_t b);  // OCP E4M3FN: no Inf, 0x7f/0xff are NaN
float f8e5m2_to_float(uint8_t b);
uint16_t float_to_bf16(float f);   // round to nearest even
uint16_t float_to_f16(float f);    // round to nearest even
uint8_t double_to_f8e4m3(double x);  // E4M3FN, round to nearest even, saturating at ±448; NaN -> 0x7f
double round_to_bf16(double x);    // x rounded to the nearest bf16 value, as a double

// Reads element i of a little-endian buffer of type t as double (floats and integers).
double element_as_double(const void* data, DType t, int64_t i);

}  // namespace hyoracle
