// Hostile inputs through the library API: what the command line cannot show directly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "io/config.h"
#include "io/dump.h"
#include "tests/hostile/hostile_util.h"
#include "io/safetensors.h"

namespace hyoracle::hostile {
namespace {

// Calls f, expects an Error whose message contains every needle and is one line.
template <class F>
void expect_error(F f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "no \"" << n << "\" in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

const uint8_t* bytes_of(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// The header parser works on a buffer and reads nothing past the header.
TEST(ReaderApi, HeaderParsesFromMemory) {
  const std::string img = one_tensor_file(3);
  const SafetensorsHeader h = parse_safetensors_header(bytes_of(img), img.size(), "mem");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].shape, std::vector<int64_t>{3});
  EXPECT_EQ(h.data_start + 12, img.size());
  // The same buffer one byte short: the tensor's data runs past the end.
  expect_error([&] { parse_safetensors_header(bytes_of(img), img.size() - 1, "mem"); }, {"mem", "\"w\"", "truncated"});
}

// A 2^62-element shape that claims its bytes exactly cannot exist in a real file; the parser
// refuses it from the length check without allocating.
TEST(ReaderApi, HugeShapeIsRefusedWithoutAllocation) {
  const std::string img = safetensors_bytes(R"({"w":{"dtype":"U8","shape":[4611686018427387904],"data_offsets":[0,4]}})", "abcd");
  expect_error([&] { parse_safetensors_header(bytes_of(img), img.size(), "mem"); }, {"\"w\"", "needs 4611686018427387904 bytes"});
}

// The header parser is n log n in the tensor count (a parser that rescans siblings at every
// object end takes minutes here); a regression shows as the ctest timeout, not a timed assert.
TEST(ReaderApi, HeaderOfManyTensorsParses) {
  constexpr int kTensors = 200001;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i)
    header += (i ? ",\"t" : "\"t") + std::to_string(i) + R"(":{"dtype":"U8","shape":[1],"data_offsets":[)" +
              std::to_string(i) + "," + std::to_string(i + 1) + "]}";
  header += "}";
  const std::string img = safetensors_bytes(header, std::string(kTensors, 'x'));
  const SafetensorsHeader h = parse_safetensors_header(bytes_of(img), img.size(), "mem");
  EXPECT_EQ(h.tensors.size(), size_t(kTensors));
  // The duplicate check still works among so many keys, on the last one.
  const std::string dup = safetensors_bytes(header.substr(0, header.size() - 1) + R"(,"t7":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})",
                                            std::string(kTensors, 'x'));
  expect_error([&] { parse_safetensors_header(bytes_of(dup), dup.size(), "mem"); }, {"mem", "duplicate key \"t7\""});
}

// Every byte of the data section belongs to a tensor: no gap between tensors, no trailing bytes.
TEST(ReaderApi, DataSectionMustBeTiledByTensors) {
  const std::string gap = safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", std::string(12, 'x'));
  expect_error([&] { parse_safetensors_header(bytes_of(gap), gap.size(), "mem"); }, {"mem", "\"b\"", "gap of 4 bytes"});
  const std::string tail = safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(7, 'x'));
  expect_error([&] { parse_safetensors_header(bytes_of(tail), tail.size(), "mem"); }, {"mem", "3 trailing bytes"});
  const std::string none = safetensors_bytes("{}", "x");
  expect_error([&] { parse_safetensors_header(bytes_of(none), none.size(), "mem"); }, {"mem", "1 trailing bytes"});
  // Zero-size tensors anywhere in the tiling are fine, as is an empty data section.
  const std::string ok = safetensors_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"c":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
                                           "abcd");
  EXPECT_EQ(parse_safetensors_header(bytes_of(ok), ok.size(), "mem").tensors.size(), 3u);
  const std::string empty = safetensors_bytes("{}", "");
  EXPECT_TRUE(parse_safetensors_header(bytes_of(empty), empty.size(), "mem").tensors.empty());
}

// JSON does not allow a byte order mark; the header, config and manifest readers refuse one.
TEST(ReaderApi, ByteOrderMarkIsRefused) {
  const std::string img = safetensors_bytes("\xEF\xBB\xBF{}", "");
  expect_error([&] { parse_safetensors_header(bytes_of(img), img.size(), "mem"); }, {"mem", "byte order mark"});
  expect_error([&] { parse_json_strict("\xEF\xBB\xBF{}", "config.json"); }, {"config.json", "byte order mark"});
}

// Only a path component equal to ".." is a traversal: "acts..v1.safetensors" is a legal name.
TEST(ReaderApi, DotsInsideAFileNameAreAccepted) {
  TempDir dir;
  write_good_dump(dir / "d");
  std::filesystem::rename(dir / "d/activations.safetensors", dir / "d/acts..v1.safetensors");
  nlohmann::json m = nlohmann::json::parse(read_file(dir / "d/manifest.json"));
  m["files"] = {"acts..v1.safetensors"};
  m["file_checks"] = {{"acts..v1.safetensors", m["file_checks"]["activations.safetensors"]}};
  write_file(dir / "d/manifest.json", m.dump());
  EXPECT_EQ(Dump(dir / "d").token_ids(), (std::vector<int64_t>{1, 2}));
  for (const char* bad : {"../d/acts..v1.safetensors", "sub/../acts..v1.safetensors", "./acts..v1.safetensors", "a//b"}) {
    m["files"] = {bad};
    expect_error([&] { parse_dump_manifest(m.dump(), "manifest.json"); }, {"manifest.json", "\"files\""});
  }
}

// Integer tensors are read exactly: INT64_MAX does not pass through double (UB on the way back).
TEST(ReaderApi, ReadIntsIsExactAtInt64Extremes) {
  TempDir dir;
  DumpWriter w;
  const int64_t big = std::numeric_limits<int64_t>::max(), small = std::numeric_limits<int64_t>::min();
  w.put_ints("input_ids", {3}, {big, small, (int64_t(1) << 53) + 1}, DType::I64);
  w.write(dir / "d", make_manifest(DumpProducer{}, parse_config(nlohmann::json::parse(good_config().dump()), "c"), "x", {1}));
  const Dump d(dir / "d");
  EXPECT_EQ(d.read_ints("input_ids"), (std::vector<int64_t>{big, small, (int64_t(1) << 53) + 1}));
}

// The dump reader keeps NaN and Inf as they are (flagging them is `hyoracle compare`'s job).
TEST(ReaderApi, DumpReaderKeepsNanAndInf) {
  TempDir dir;
  DumpWriter w(DType::F32);
  Tensor<double> t({1, 3});
  t.data = {std::nan(""), INFINITY, -INFINITY};
  w.put("logits", t);
  w.write(dir / "d", make_manifest(DumpProducer{}, parse_config(nlohmann::json::parse(good_config().dump()), "c"), "x", {1}));
  const Tensor<double> r = Dump(dir / "d").read("logits");
  EXPECT_TRUE(std::isnan(r.data[0]));
  EXPECT_EQ(r.data[1], INFINITY);
  EXPECT_EQ(r.data[2], -INFINITY);
}

// Manifest checks run on text alone, before any file is touched.
TEST(ReaderApi, ManifestParsesFromText) {
  const auto m = parse_dump_manifest(R"({"format":"hyoracle.dump","version":1,"files":["a.safetensors"],"extra":{"kept":1}})", "m");
  EXPECT_EQ(m["extra"]["kept"], 1);  // unknown fields are kept
  expect_error([] { parse_dump_manifest(R"({"format":"hyoracle.dump","version":1,"files":[]})", "m.json"); },
               {"m.json", "\"files\""});
  expect_error([] { parse_dump_manifest(R"({"format":"hyoracle.dump","version":1,"files":["a"],"files":["b"]})", "m.json"); },
               {"m.json", "duplicate key \"files\""});
}

// Config text: duplicate keys at any depth, and the sha256 is of the exact bytes.
TEST(ReaderApi, ConfigTextIsStrict) {
  const std::string good = good_config().dump();
  const ModelConfig c = parse_config_text(good, "c.json");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.sha256.size(), 64u);
  std::string dup = good;
  dup.insert(dup.find("\"rope_type\""), "\"rope_theta\":1e4,");
  expect_error([&] { parse_config_text(dup, "c.json"); }, {"c.json", "duplicate key \"rope_theta\""});
}

// printable_quoted() keeps messages one printable line whatever the bytes.
TEST(ReaderApi, QuotedEscapesEverythingUnprintable) {
  EXPECT_EQ(printable_quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(printable_quoted(std::string("x\n\0\xff", 4)), "\"x\\n\\x00\\xff\"");
  EXPECT_EQ(printable_quoted(std::string(300, 'a')), "\"" + std::string(200, 'a') + "...\"");
}

}  // namespace
}  // namespace hyoracle::hostile
