// safetensors.h: a validating, mmap-based safetensors reader and a small writer.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section; offsets are relative to the start of the data section.
//
// Everything in the header is checked before any tensor is touched: the header length against
// the file size and kHeaderLimit, JSON syntax and UTF-8, duplicate keys, dtype names, shapes
// (non-negative, element count without overflow), offsets inside the data section, the byte
// length equal to elements x dtype size, and no two tensors overlapping. A violation is a
// hyoracle::Error naming the file and the tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dtype.h"
#include "io/output.h"
#include "util/tensor.h"

namespace hyoracle {

// Largest JSON header accepted (the same limit as the reference Python/Rust implementation).
constexpr uint64_t kSafetensorsHeaderLimit = 100ull << 20;
// Largest rank of a stored tensor (hy_v3 tensors have at most 3 dimensions).
constexpr size_t kSafetensorsMaxRank = 64;
// Largest config.json, model.safetensors.index.json and dump manifest.json read (docs/limits.md).
constexpr uint64_t kConfigFileLimit = 1ull << 20;
constexpr uint64_t kJsonFileLimit = 64ull << 20;
// Deepest nesting of objects/arrays accepted in any JSON file hyoracle reads.
constexpr int kJsonMaxDepth = 64;

// Quotes `s` for a one-line message: "..." with control bytes, quotes, backslashes and bytes that
// are not UTF-8 escaped (\n, \x00, ...); long strings are cut at 200 bytes with "...".
std::string printable_quoted(const std::string& s);

// Reads a whole regular file of at most `limit` bytes. Rejects FIFOs, devices and directories
// before opening them (so a FIFO never blocks); `what` names the file's role in messages.
std::string read_text_file(const std::string& path, uint64_t limit, const std::string& what);

// Parses JSON text strictly: syntax, UTF-8, no duplicate key in any object, nesting at most
// `max_depth`. Errors are one line naming `path`.
nlohmann::json parse_json_strict(const std::string& text, const std::string& path, int max_depth = kJsonMaxDepth);

// A read-only memory map of a whole file (RAII).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets inside the data section
  int64_t numel() const { return numel_of(shape); }
};

// A validated safetensors header (see the file comment for what is checked).
struct SafetensorsHeader {
  uint64_t data_start = 0;                      // offset of the data section: 8 + header length
  std::vector<TensorInfo> tensors;              // sorted by name
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Validates the header of a safetensors image of `size` bytes at `bytes` (a mapped file or any
// buffer); `path` names it in messages. Reads only bytes [0, 8 + header length).
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& path);

class SafetensorsFile {
 public:
  // Maps and validates the file; throws Error on any defect.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return map_.path(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  // Pointer to the first byte of a tensor's data (not necessarily aligned).
  const uint8_t* data(const TensorInfo& t) const { return data_section_ + t.begin; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The whole mapped file (header included).
  const uint8_t* map_data() const { return map_.data(); }
  uint64_t map_size() const { return map_.size(); }

 private:
  MappedFile map_;
  const uint8_t* data_section_ = nullptr;
  std::vector<TensorInfo> tensors_;  // sorted by name
  std::map<std::string, std::string> metadata_;
};

// Decodes a stored tensor into S (exact for every float dtype when S is double; for float when
// the stored dtype is at most 32 bits wide).
template <class S>
Tensor<S> decode_tensor(const SafetensorsFile& f, const TensorInfo& t);

// One tensor to be written: name, dtype, shape and its raw little-endian bytes.
struct RawTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Encodes values into dtype (F64, F32, F16, BF16, I64, I32) as raw bytes.
std::vector<uint8_t> encode_values(const double* values, int64_t n, DType dtype);
std::vector<uint8_t> encode_values(const float* values, int64_t n, DType dtype);
std::vector<uint8_t> encode_ints(const int64_t* values, int64_t n, DType dtype);

// Writes a safetensors file through an OutputFile (complete or not at all; every write checked);
// tensors keep the given order in the header and the data section. Returns its size and CRC-32.
FileCheck write_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace hyoracle
