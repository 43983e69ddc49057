#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

namespace hyoracle {

using nlohmann::json;

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then rejected as not regular).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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

std::string printable_quoted(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  constexpr size_t kMax = 200;
  std::string out = "\"";
  size_t i = 0;
  for (; i < s.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f || c >= 0x80) {
      // Bytes >= 0x80 are escaped too: a message stays ASCII whatever the file held.
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  if (i < s.size()) out += "...";
  return out + "\"";
}

std::string read_text_file(const std::string& path, uint64_t limit, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path + ": cannot open " + what + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path + ": " + what + " is not a regular file");
  if (uint64_t(st.st_size) > limit)
    fail(path + ": " + what + " is " + std::to_string(st.st_size) + " bytes, more than the limit of " +
         std::to_string(limit) + " bytes");
  // O_NONBLOCK: should the file have been swapped for a FIFO since stat, open must not block.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(path + ": cannot open " + what + ": " + std::strerror(errno));
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int e = errno;
      ::close(fd);
      fail(path + ": cannot read " + what + ": " + std::strerror(e));
    }
    if (got == 0) break;
    if (text.size() + uint64_t(got) > limit) {
      ::close(fd);
      fail(path + ": " + what + " grew past the limit of " + std::to_string(limit) + " bytes while being read");
    }
    text.append(buf, size_t(got));
  }
  ::close(fd);
  return text;
}

namespace {

// One line from a nlohmann exception: its message with anything unprintable escaped.
std::string json_error_text(const nlohmann::json::exception& e) {
  const std::string q = printable_quoted(e.what());
  return q.substr(1, q.size() - 2);
}

// Builds the DOM from nlohmann's SAX events, refusing a duplicate key in any object (nlohmann
// would keep the last one silently) and nesting deeper than a limit (bounds memory and recursion
// later). Every event costs O(log n) at most (a key is looked up in its object's map), so a
// header of a million tensors parses in n log n time. (nlohmann's callback parser is not used:
// it scans all siblings for discarded values at every object end, quadratic in the tensors.)
class StrictDomBuilder {
 public:
  // outer_depth: containers already open around the value built (for the depth limit).
  StrictDomBuilder(json& root, const std::string& path, int max_depth, int outer_depth = 0)
      : root_(root), path_(path), max_depth_(max_depth), outer_depth_(outer_depth) {}
  // True once a whole value has been built (a scalar, or a container and its end).
  bool done() const { return stack_.empty(); }

  bool null() { place(json(nullptr)); return true; }
  bool boolean(bool v) { place(json(v)); return true; }
  bool number_integer(json::number_integer_t v) { place(json(v)); return true; }
  bool number_unsigned(json::number_unsigned_t v) { place(json(v)); return true; }
  bool number_float(json::number_float_t v, const json::string_t&) { place(json(v)); return true; }
  bool string(json::string_t& v) { place(json(std::move(v))); return true; }
  bool binary(json::binary_t& v) { place(json(json::binary_t(std::move(v)))); return true; }
  bool start_object(std::size_t) { open(json::object()); return true; }
  bool start_array(std::size_t) { open(json::array()); return true; }
  bool value(json&& v) { place(std::move(v)); return true; }
  bool end_object() { stack_.pop_back(); return true; }
  bool end_array() { stack_.pop_back(); return true; }
  bool key(json::string_t& k) {
    json& object = *stack_.back();
    if (object.contains(k))
      fail(path_ + ": JSON has duplicate key " + printable_quoted(k) + (stack_.size() == 1 ? "" : " in a nested object"));
    slot_ = &object[k];  // std::map: the slot stays put while siblings are added
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    fail(path_ + ": not valid JSON: " + json_error_text(e));
  }

 private:
  // Stores a value where the parser is: the root, the next array element or the last key's slot.
  json* place(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }
  void open(json&& container) {
    if (int(stack_.size()) + outer_depth_ >= max_depth_)
      fail(path_ + ": JSON nesting deeper than " + std::to_string(max_depth_) + " levels");
    stack_.push_back(place(std::move(container)));
  }

  json& root_;
  const std::string& path_;
  int max_depth_, outer_depth_;
  // Open containers, innermost last. A pointer into an array stays valid: an array only grows
  // while its last element is closed.
  std::vector<json*> stack_;
  json* slot_ = nullptr;      // where the value after the last key goes
};

}  // namespace

nlohmann::json parse_json_strict(const std::string& text, const std::string& path, int max_depth) {
  // nlohmann skips a UTF-8 byte order mark; JSON (RFC 8259) does not allow one, and the other
  // readers of these files (Python's json, Rust's serde_json) refuse it.
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) fail(path + ": starts with a UTF-8 byte order mark, which JSON does not allow");
  json root;
  StrictDomBuilder builder(root, path, max_depth);
  try {
    json::sax_parse(text, &builder);
  } catch (const json::exception& e) {
    fail(path + ": not valid JSON: " + json_error_text(e));
  }
  return root;
}

namespace {

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

// Reads the little-endian header length and checks it against the limit and the buffer.
uint64_t header_length(const uint8_t* bytes, uint64_t size, const std::string& path) {
  if (size < 8) fail(path + ": file is " + std::to_string(size) + " bytes, too short for a safetensors header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kSafetensorsHeaderLimit)
    fail(path + ": safetensors header length " + std::to_string(n) + " exceeds the limit of " +
         std::to_string(kSafetensorsHeaderLimit) + " bytes");
  if (n > size - 8)
    fail(path + ": safetensors header length " + std::to_string(n) + " runs past the end of the file (" +
         std::to_string(size) + " bytes): truncated file?");
  return n;
}

// Reads "__metadata__": an object of strings.
void read_metadata(const json& v, const std::string& path, std::map<std::string, std::string>& out) {
  if (!v.is_object()) fail(path + ": __metadata__ must be an object of strings");
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string()) fail(path + ": __metadata__ value " + printable_quoted(m.key()) + " must be a string");
    out[m.key()] = m.value().get<std::string>();
  }
}

// Reads and checks one tensor entry against a data section of data_size bytes.
TensorInfo read_tensor_entry(const std::string& name, const json& v, uint64_t data_size, const std::string& path) {
  const std::string where = path + ": tensor " + printable_quoted(name);
  if (!v.is_object()) fail(where + ": entry must be an object");
  if (!v.contains("dtype") || !v["dtype"].is_string()) fail(where + ": missing string field \"dtype\"");
  const auto dt = parse_dtype(v["dtype"].get<std::string>());
  if (!dt) fail(where + ": unknown dtype " + printable_quoted(v["dtype"].get<std::string>()));
  if (!v.contains("shape") || !v["shape"].is_array()) fail(where + ": missing array field \"shape\"");
  if (v["shape"].size() > kSafetensorsMaxRank)
    fail(where + ": shape has " + std::to_string(v["shape"].size()) + " dimensions, more than the limit of " +
         std::to_string(kSafetensorsMaxRank));
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
  // count <= 2^62 (numel_of) but count * 8 can still wrap past 2^64: compare without wrapping.
  const uint64_t size = uint64_t(dtype_size(t.dtype)), span = t.end - t.begin;
  const bool wraps = uint64_t(count) > UINT64_MAX / size;
  if (wraps || uint64_t(count) * size != span)
    fail(where + ": " + dtype_name(t.dtype) + " " + shape_str(t.shape) + " needs " +
         (wraps ? std::string("more than 2^64") : std::to_string(uint64_t(count) * size)) +
         " bytes but data_offsets span " + std::to_string(span));
  return t;
}

// The tensors tile the data section exactly, as the reference implementation requires: no two
// share bytes, no bytes lie between them and none follow the last one (a gap or a tail would be
// bytes no tensor accounts for: a truncated header, a spliced file).
void check_layout(const std::vector<TensorInfo>& tensors, uint64_t data_size, const std::string& path) {
  std::vector<const TensorInfo*> by_begin;
  for (const auto& t : tensors) by_begin.push_back(&t);
  std::sort(by_begin.begin(), by_begin.end(),
            [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  const TensorInfo* reach = nullptr;  // the tensor reaching furthest so far
  uint64_t covered = 0;               // bytes [0, covered) belong to tensors
  for (const TensorInfo* b : by_begin) {
    if (b->begin < covered)
      fail(path + ": tensors " + printable_quoted(reach->name) + " and " + printable_quoted(b->name) + " overlap in the data section");
    if (b->begin > covered)
      fail(path + ": tensor " + printable_quoted(b->name) + " begins at data offset " + std::to_string(b->begin) +
           ", leaving a gap of " + std::to_string(b->begin - covered) + " bytes no tensor accounts for");
    if (b->end > covered || !reach) reach = b, covered = b->end;
  }
  if (covered != data_size)
    fail(path + ": data section has " + std::to_string(data_size - covered) + " trailing bytes after the last tensor" +
         (reach ? " " + printable_quoted(reach->name) : std::string()) + " (" + std::to_string(data_size) + " bytes, tensors end at " +
         std::to_string(covered) + ")");
}

// A safetensors header nests objects 3 deep: {name: {"shape": [..]}}; 4 leaves room for an
// unknown extra field holding an array.
constexpr int kHeaderMaxDepth = 4;

}  // namespace

namespace {

// Reads a header from SAX events without building the whole DOM: each top-level value (a tensor
// entry or __metadata__) is built on its own, checked and dropped, so the cost is linear in the
// header with a few small allocations per tensor (a million tensors: about a second). Duplicate
// tensor names are found by sorting the names at the end; depth and syntax as parse_json_strict.
class HeaderReader {
 public:
  HeaderReader(const std::string& path, uint64_t data_size, SafetensorsHeader& h)
      : path_(path), label_(path + ": safetensors header"), data_size_(data_size), h_(h) {}

  bool null() { return scalar(json(nullptr)); }
  bool boolean(bool v) { return scalar(json(v)); }
  bool number_integer(json::number_integer_t v) { return scalar(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return scalar(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return scalar(json(v)); }
  bool string(json::string_t& v) { return scalar(json(std::move(v))); }
  bool binary(json::binary_t& v) { return scalar(json(json::binary_t(std::move(v)))); }
  bool start_object(std::size_t n) {
    if (!root_open_) return root_open_ = true;
    value().start_object(n);
    return after();
  }
  bool start_array(std::size_t n) {
    if (!root_open_) fail(label_ + " must be a JSON object");
    value().start_array(n);
    return after();
  }
  bool end_object() {
    if (!builder_) return true;  // the end of the root object
    builder_->end_object();
    return after();
  }
  bool end_array() {
    builder_->end_array();
    return after();
  }
  bool key(json::string_t& k) {
    if (builder_) return builder_->key(k);
    name_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    fail(label_ + ": not valid JSON: " + json_error_text(e));
  }

 private:
  bool scalar(json&& v) {
    if (!root_open_) fail(label_ + " must be a JSON object");
    if (builder_) return builder_->value(std::move(v));  // inside an entry (its container stays open)
    value_ = std::move(v);  // a scalar entry: read_tensor_entry / read_metadata say what is wrong
    take();
    return true;
  }
  StrictDomBuilder& value() {
    if (!builder_) {
      value_ = json();
      builder_.emplace(value_, label_, kHeaderMaxDepth, 1);  // inside the root object
    }
    return *builder_;
  }
  bool after() {
    if (builder_->done()) {
      builder_.reset();
      take();
    }
    return true;
  }
  // One complete top-level value under the key name_.
  void take() {
    if (name_ == "__metadata__") {
      if (metadata_seen_) fail(label_ + ": JSON has duplicate key \"__metadata__\"");
      metadata_seen_ = true;
      read_metadata(value_, path_, h_.metadata);
    } else {
      h_.tensors.push_back(read_tensor_entry(name_, value_, data_size_, path_));
    }
  }

  const std::string& path_;
  const std::string label_;
  uint64_t data_size_;
  SafetensorsHeader& h_;
  bool root_open_ = false, metadata_seen_ = false;
  std::string name_;
  json value_;
  std::optional<StrictDomBuilder> builder_;
};

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& path) {
  const uint64_t n = header_length(bytes, size, path);
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  if (n >= 3 && std::memcmp(text, "\xEF\xBB\xBF", 3) == 0)
    fail(path + ": safetensors header: starts with a UTF-8 byte order mark, which JSON does not allow");
  SafetensorsHeader h;
  h.data_start = 8 + n;
  const uint64_t data_size = size - 8 - n;
  HeaderReader reader(path, data_size, h);
  try {
    json::sax_parse(text, text + n, &reader);
  } catch (const json::exception& e) {
    fail(path + ": safetensors header: not valid JSON: " + json_error_text(e));
  }
  // Sorted by name (the order readers list them in); equal neighbours are a duplicate key.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  for (size_t i = 1; i < h.tensors.size(); ++i)
    if (h.tensors[i].name == h.tensors[i - 1].name)
      fail(path + ": safetensors header: JSON has duplicate key " + printable_quoted(h.tensors[i].name));
  check_layout(h.tensors, data_size, path);
  return h;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : map_(path) {
  SafetensorsHeader h = parse_safetensors_header(map_.data(), map_.size(), path);
  data_section_ = map_.data() + h.data_start;
  tensors_ = std::move(h.tensors);
  metadata_ = std::move(h.metadata);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  // tensors_ is sorted by name (parse_safetensors_header): a binary search, no index to build.
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
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

FileCheck write_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // The header text is assembled entry by entry (an ordered_json object looks keys up linearly,
  // which would make writing n tensors quadratic).
  std::string text = "{";
  if (!metadata.empty()) text += "\"__metadata__\":" + json(metadata).dump();
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) fail(path + ": duplicate tensor name \"" + t.name + "\" while writing");
    if (uint64_t(numel_of(t.shape)) * dtype_size(t.dtype) != t.bytes.size())
      fail(path + ": tensor \"" + t.name + "\" has " + std::to_string(t.bytes.size()) + " bytes for shape " +
           shape_str(t.shape));
    const nlohmann::ordered_json entry = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    if (text.size() > 1) text += ",";
    text += json(t.name).dump() + ":" + entry.dump();
    offset += t.bytes.size();
  }
  text += "}";
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  OutputFile out(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t((uint64_t(text.size()) >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(text);
  for (const auto& t : tensors) out.write(t.bytes.data(), t.bytes.size());
  return out.commit();
}

}  // namespace hyoracle
