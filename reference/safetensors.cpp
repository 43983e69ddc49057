#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

namespace hyoracle {

using nlohmann::json;

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path + ": not a regular file");
  }
  size_ = uint64_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(path + ": mmap failed: " + std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

namespace {

// Parses JSON and rejects duplicate keys at the top level (nlohmann keeps the last silently).
json parse_header_json(const std::string& text, const std::string& path) {
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    fail(path + ": safetensors header is not valid JSON: " + what);
  }
  if (!duplicate.empty()) fail(path + ": safetensors header has duplicate key \"" + duplicate + "\"");
  return j;
}

int64_t json_nonneg_int(const json& v, const std::string& what) {
  if (!v.is_number_integer() && !v.is_number_unsigned()) fail(what + " must be a non-negative integer");
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) fail(what + " is out of range");
    return int64_t(u);
  }
  const int64_t i = v.get<int64_t>();
  if (i < 0) fail(what + " must be a non-negative integer, got " + std::to_string(i));
  return i;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  const uint64_t size = map_.size();
  if (size < 8) fail(path + ": file is " + std::to_string(size) + " bytes, too short for a safetensors header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | map_.data()[i];
  if (n > kSafetensorsHeaderLimit)
    fail(path + ": safetensors header length " + std::to_string(n) + " exceeds the limit of " +
         std::to_string(kSafetensorsHeaderLimit) + " bytes");
  if (n > size - 8)
    fail(path + ": safetensors header length " + std::to_string(n) + " runs past the end of the file (" +
         std::to_string(size) + " bytes): truncated file?");
  const std::string text(reinterpret_cast<const char*>(map_.data() + 8), n);
  const json header = parse_header_json(text, path);
  if (!header.is_object()) fail(path + ": safetensors header must be a JSON object");
  data_section_ = map_.data() + 8 + n;
  const uint64_t data_size = size - 8 - n;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path + ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(path + ": __metadata__ value \"" + m.key() + "\" must be a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor \"" + name + "\"";
    if (!v.is_object()) fail(where + ": entry must be an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) fail(where + ": missing string field \"dtype\"");
    const auto dt = parse_dtype(v["dtype"].get<std::string>());
    if (!dt) fail(where + ": unknown dtype \"" + v["dtype"].get<std::string>() + "\"");
    if (!v.contains("shape") || !v["shape"].is_array()) fail(where + ": missing array field \"shape\"");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      fail(where + ": \"data_offsets\" must be an array [begin, end]");
    TensorInfo t;
    t.name = name;
    t.dtype = *dt;
    try {
      for (const json& d : v["shape"]) t.shape.push_back(json_nonneg_int(d, "shape entry"));
      t.begin = uint64_t(json_nonneg_int(v["data_offsets"][0], "data_offsets[0]"));
      t.end = uint64_t(json_nonneg_int(v["data_offsets"][1], "data_offsets[1]"));
    } catch (const Error& e) {
      fail(where + ": " + e.what());
    }
    int64_t count = 0;
    try {
      count = numel_of(t.shape);
    } catch (const Error&) {
      fail(where + ": shape " + shape_str(t.shape) + " has an element count that overflows");
    }
    if (t.begin > t.end) fail(where + ": data_offsets begin " + std::to_string(t.begin) + " > end " + std::to_string(t.end));
    if (t.end > data_size)
      fail(where + ": data_offsets end " + std::to_string(t.end) + " is past the data section (" +
           std::to_string(data_size) + " bytes): truncated file?");
    const uint64_t want = uint64_t(count) * uint64_t(dtype_size(t.dtype));
    if (uint64_t(count) > (uint64_t(1) << 60) || t.end - t.begin != want)
      fail(where + ": " + dtype_name(t.dtype) + " " + shape_str(t.shape) + " needs " + std::to_string(want) +
           " bytes but data_offsets span " + std::to_string(t.end - t.begin));
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  // No two tensors may share bytes.
  std::vector<const TensorInfo*> by_begin;
  for (const auto& t : tensors_)
    if (t.end > t.begin) by_begin.push_back(&t);
  std::sort(by_begin.begin(), by_begin.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  const TensorInfo* reach = nullptr;  // the tensor reaching furthest so far
  for (const TensorInfo* b : by_begin) {
    if (reach && b->begin < reach->end)
      fail(path + ": tensors \"" + reach->name + "\" and \"" + b->name + "\" overlap in the data section");
    if (!reach || b->end > reach->end) reach = b;
  }
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

template <class S>
Tensor<S> decode_tensor(const SafetensorsFile& f, const TensorInfo& t) {
  Tensor<S> out(t.shape);
  const uint8_t* p = f.data(t);
  const int64_t n = out.numel();
  switch (t.dtype) {
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out.data[i] = S(bf16_to_float(h));
      }
      break;
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out.data[i] = S(v);
      }
      break;
    default:
      for (int64_t i = 0; i < n; ++i) out.data[i] = S(element_as_double(p, t.dtype, i));
  }
  return out;
}
template Tensor<double> decode_tensor<double>(const SafetensorsFile&, const TensorInfo&);
template Tensor<float> decode_tensor<float>(const SafetensorsFile&, const TensorInfo&);

namespace {
template <class T>
std::vector<uint8_t> encode_any(const T* values, int64_t n, DType dtype) {
  std::vector<uint8_t> b(size_t(n) * dtype_size(dtype));
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(values[i]);
    switch (dtype) {
      case DType::F64: std::memcpy(&b[8 * i], &v, 8); break;
      case DType::F32: { float f = float(v); std::memcpy(&b[4 * i], &f, 4); break; }
      case DType::BF16: { uint16_t h = float_to_bf16(float(round_to_bf16(v))); std::memcpy(&b[2 * i], &h, 2); break; }
      case DType::F16: { uint16_t h = float_to_f16(float(v)); std::memcpy(&b[2 * i], &h, 2); break; }
      case DType::I64: { int64_t x = int64_t(values[i]); std::memcpy(&b[8 * i], &x, 8); break; }
      case DType::I32: { int32_t x = int32_t(values[i]); std::memcpy(&b[4 * i], &x, 4); break; }
      default: fail("encode_values: unsupported dtype " + dtype_name(dtype));
    }
  }
  return b;
}
}  // namespace

std::vector<uint8_t> encode_values(const double* v, int64_t n, DType d) { return encode_any(v, n, d); }
std::vector<uint8_t> encode_values(const float* v, int64_t n, DType d) { return encode_any(v, n, d); }
std::vector<uint8_t> encode_ints(const int64_t* v, int64_t n, DType d) { return encode_any(v, n, d); }

void write_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) fail(path + ": duplicate tensor name \"" + t.name + "\" while writing");
    if (uint64_t(numel_of(t.shape)) * dtype_size(t.dtype) != t.bytes.size())
      fail(path + ": tensor \"" + t.name + "\" has " + std::to_string(t.bytes.size()) + " bytes for shape " +
           shape_str(t.shape));
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(path + ": cannot open for writing");
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t((uint64_t(text.size()) >> (8 * i)) & 0xff);
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
  if (!out) fail(path + ": write failed (disk full?)");
}

}  // namespace hyoracle
