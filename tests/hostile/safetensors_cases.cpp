// Bad safetensors files: a valid config.json next to a model.safetensors with one defect in its
// length prefix, JSON header or data offsets.
#include <sys/stat.h>

#include "tests/hostile/catalogue.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {

namespace {

// A checkpoint directory whose model.safetensors is exactly `bytes`.
std::vector<std::string> model_file(const std::string& dir, const std::string& bytes) {
  write_file(dir + "/config.json", good_config().dump(2));
  write_file(dir + "/model.safetensors", bytes);
  return run_model(dir);
}

// A case whose model.safetensors is `bytes`; the message must name `field`.
Case shard_case(const std::string& name, const std::string& bytes, const std::string& field) {
  return {name, [bytes](const std::string& dir) { return model_file(dir, bytes); }, "model.safetensors", field};
}

// A header with one F32 tensor "w": the given shape and offsets, with `data` after it.
std::string tensor_w(const std::string& shape, const std::string& offsets, const std::string& data,
                     const std::string& dtype = "F32") {
  return safetensors_bytes(R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}",
                           data);
}

// "[1,1,...,1]" with n entries.
std::string ones(int n) {
  std::string s = "[1";
  for (int i = 1; i < n; ++i) s += ",1";
  return s + "]";
}

// A length prefix of `n` followed by `rest`.
std::string with_length(uint64_t n, const std::string& rest) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s + rest;
}

}  // namespace

std::vector<Case> safetensors_cases() {
  const std::string ok = R"("dtype":"F32","shape":[1],"data_offsets":[0,4])";
  std::vector<Case> v;
  // Fewer than the 8 bytes of the length prefix.
  v.push_back(shard_case("EmptyFile", "", "too short"));
  v.push_back(shard_case("ShortFile", "abc", "too short"));
  // The length prefix points past the end of the file.
  v.push_back(shard_case("HeaderLengthPastEof", with_length(64, "{}"), "header length 64"));
  // A length above the 100 MiB limit is refused before anything is read or allocated.
  v.push_back(shard_case("HeaderLengthHuge", with_length(uint64_t(1) << 40, "{}"), "header length"));
  v.push_back(shard_case("HeaderLengthMax", with_length(~uint64_t(0), "{}"), "header length"));
  // The header is not JSON, not UTF-8, or not an object.
  v.push_back(shard_case("HeaderNotJson", safetensors_bytes("{not json", ""), "safetensors header"));
  v.push_back(shard_case("HeaderNotUtf8", safetensors_bytes("{\"w\xff\xfe\":{" + ok + "}}", "abcd"), "safetensors header"));
  v.push_back(shard_case("HeaderTruncatedJson", safetensors_bytes("{\"w\":{\"dtype\":\"F3", ""), "safetensors header"));
  v.push_back(shard_case("HeaderIsArray", safetensors_bytes("[1,2,3]", ""), "safetensors header"));
  v.push_back(shard_case("HeaderNestedTooDeep",
                         safetensors_bytes("{\"w\":{\"x\":" + std::string(10000, '[') + std::string(10000, ']') + "}}", ""),
                         "nesting"));
  // The same tensor name twice (nlohmann would keep the last one silently).
  v.push_back(shard_case("DuplicateTensorKey", safetensors_bytes("{\"w\":{" + ok + "},\"w\":{" + ok + "}}", "abcd"),
                         "duplicate key \"w\""));
  // The same field twice inside one entry.
  v.push_back(shard_case("DuplicateFieldInEntry",
                         safetensors_bytes(R"({"w":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}})", "abcd"),
                         "duplicate key \"dtype\""));
  v.push_back(shard_case("UnknownDtype", tensor_w("[1]", "[0,1]", "a", "Q4_K"), "\"w\""));
  v.push_back(shard_case("MissingDtype", safetensors_bytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd"), "dtype"));
  // The element count of the shape overflows int64 (2^32 * 2^32 * 16).
  v.push_back(shard_case("ElementCountOverflow", tensor_w("[4294967296,4294967296,16]", "[0,4]", "abcd"), "\"w\""));
  // A huge but representable count: 2^60 elements claimed for 4 bytes; nothing may be allocated.
  v.push_back(shard_case("ElementCountHuge", tensor_w("[1073741824,1073741824]", "[0,4]", "abcd"), "\"w\""));
  v.push_back(shard_case("NegativeDimension", tensor_w("[-1]", "[0,4]", "abcd"), "\"w\""));
  v.push_back(shard_case("FractionalDimension", tensor_w("[1.5]", "[0,4]", "abcd"), "\"w\""));
  // More dimensions than the rank limit (64), each 1, so the count itself is fine.
  v.push_back(shard_case("RankTooLarge", tensor_w(ones(100), "[0,4]", "abcd"), "\"w\""));
  // The dtype and shape need 8 bytes but the offsets span 4.
  v.push_back(shard_case("DtypeLengthMismatch", tensor_w("[2]", "[0,4]", "abcd"), "\"w\""));
  v.push_back(shard_case("DtypeLengthMismatchF64", tensor_w("[1]", "[0,4]", "abcd", "F64"), "\"w\""));
  // Offsets beyond the data section (a truncated file), reversed, or not a pair.
  v.push_back(shard_case("OffsetPastData", tensor_w("[2]", "[0,8]", "abcd"), "\"w\""));
  v.push_back(shard_case("OffsetHuge", tensor_w("[1]", "[18446744073709551612,18446744073709551616]", "abcd"), "\"w\""));
  v.push_back(shard_case("OffsetReversed", tensor_w("[0]", "[4,0]", "abcd"), "\"w\""));
  v.push_back(shard_case("OffsetNotPair", tensor_w("[1]", "[0,4,8]", "abcd"), "\"w\""));
  // Two tensors sharing bytes.
  v.push_back(shard_case("OverlappingTensors",
                         safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                           "abcdefgh"),
                         "overlap"));
  v.push_back(shard_case("MetadataNotString", safetensors_bytes(R"({"__metadata__":{"k":1}})", ""), "__metadata__"));
  // A tensor name holding a newline and a NUL: the message must stay one line.
  // A tensor name holding a newline and a NUL: the message must stay one line (and escape them).
  v.push_back(shard_case("NameWithNewlineAndNul",
                         safetensors_bytes(R"({"w\n\u0000x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"),
                         "\"w\\n\\x00x\""));
  // JSON allows no byte order mark (nlohmann would skip it).
  v.push_back(shard_case("HeaderWithByteOrderMark", safetensors_bytes("\xEF\xBB\xBF{\"w\":{" + ok + "}}", "abcd"),
                         "byte order mark"));
  // Bytes no tensor accounts for: between two tensors, or after the last one.
  v.push_back(shard_case("GapBetweenTensors",
                         safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                           "abcdefghijkl"),
                         "\"b\" begins at data offset 8"));
  v.push_back(shard_case("TrailingBytesAfterTensors", tensor_w("[1]", "[0,4]", "abcdefgh"), "4 trailing bytes"));
  // A FIFO where the shard should be: must not block in open().
  v.push_back({"ShardIsFifo",
               [](const std::string& dir) {
                 write_file(dir + "/config.json", good_config().dump(2));
                 ::mkfifo((dir + "/model.safetensors").c_str(), 0644);
                 return run_model(dir);
               },
               "model.safetensors", "not a regular file"});
  return v;
}

}  // namespace hyoracle::hostile
