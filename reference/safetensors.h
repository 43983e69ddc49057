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

#include "dtype.h"
#include "tensor.h"

namespace hyoracle {

// Largest JSON header accepted (the same limit as the reference Python/Rust implementation).
constexpr uint64_t kSafetensorsHeaderLimit = 100ull << 20;

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

 private:
  MappedFile map_;
  const uint8_t* data_section_ = nullptr;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
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

// Writes a safetensors file; tensors keep the given order in the header and the data section.
void write_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace hyoracle
