// io/safetensors: a round trip of every dtype the writer stores, and malformed files refused with
// one-line errors naming the file.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "io/dtype.h"
#include "io/safetensors.h"
#include "tests/common/test_util.h"
#include "util/error.h"

namespace hyoracle {
namespace {

TEST(Safetensors, RoundTripEveryDtype) {
  test::TempDir dir;
  const std::vector<double> v = {1.0, -2.5, 0.15625, 3.0e-3, -7.0, 1e4, 0.0};
  std::vector<RawTensor> ts;
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16})
    ts.push_back({"t_" + dtype_name(d), d, {7}, encode_values(v.data(), 7, d)});
  const std::vector<int64_t> ids = {5, -1, 1ll << 40};
  ts.push_back({"ids", DType::I64, {3}, encode_ints(ids.data(), 3, DType::I64)});
  write_safetensors(dir / "a.safetensors", ts, {{"k", "v"}});
  SafetensorsFile f(dir / "a.safetensors");
  EXPECT_EQ(f.tensors().size(), 5u);
  EXPECT_EQ(f.metadata().at("k"), "v");
  const Tensor<double> f64 = decode_tensor<double>(f, *f.find("t_F64"));
  EXPECT_EQ(f64.data, v);
  const Tensor<double> b = decode_tensor<double>(f, *f.find("t_BF16"));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(b.data[i], round_to_bf16(v[i]));
  const Tensor<double> h = decode_tensor<double>(f, *f.find("t_F16"));
  EXPECT_EQ(h.data[2], 0.15625);
  const Tensor<double> i64 = decode_tensor<double>(f, *f.find("ids"));
  EXPECT_EQ(i64.data[2], double(1ll << 40));
}

// Writes raw bytes to a file.
void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string with_header(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s + json + data;
}

void expect_error(const std::string& path, const std::string& needle) {
  try {
    SafetensorsFile f(path);
    FAIL() << "no error for " << path << " (expected \"" << needle << "\")";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

TEST(Safetensors, RejectsMalformedFiles) {
  test::TempDir dir;
  write_bytes(dir / "short", "abc");
  expect_error(dir / "short", "too short");
  write_bytes(dir / "past", with_header("{}", "").substr(0, 8) + "{");  // claims 2 bytes, has 1
  expect_error(dir / "past", "past the end");
  write_bytes(dir / "json", with_header("{not json", ""));
  expect_error(dir / "json", "not valid JSON");
  write_bytes(dir / "dup", with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd"));
  expect_error(dir / "dup", "duplicate key \"a\"");
  write_bytes(dir / "len", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"));
  expect_error(dir / "len", "needs 8 bytes");
  write_bytes(dir / "oob", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "abcd"));
  expect_error(dir / "oob", "truncated");
  write_bytes(dir / "ovl", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "abcdefgh"));
  expect_error(dir / "ovl", "overlap");
  write_bytes(dir / "dt", with_header(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", "a"));
  expect_error(dir / "dt", "unknown dtype");
  write_bytes(dir / "ovf", with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", "abcd"));
  expect_error(dir / "ovf", "overflow");
}

}  // namespace
}  // namespace hyoracle
