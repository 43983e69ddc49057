#include "io/dump.h"

#include "util/cpu_features.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/crc32.h"
#include "io/fingerprint.h"
#include "util/error.h"
#include "reference/numerics.h"
#include "io/output.h"

namespace hyoracle {

using nlohmann::json;
using nlohmann::ordered_json;

ordered_json make_manifest(const DumpProducer& p, const ModelConfig& c, const std::string& checkpoint,
                           const std::vector<int64_t>& token_ids, int64_t position_offset) {
  ordered_json m;
  m["format"] = "hyoracle.dump";
  m["version"] = kDumpVersion;
  m["producer"] = {{"name", p.name},           {"version", p.version}, {"device", p.device},
                   {"dtype", p.dtype},         {"precision", p.precision}, {"mode", p.mode},
                   {"bf16_rounding", "off"},   {"tie_break", kTieBreakRule}};
  if (!p.activations.empty()) m["producer"]["activations"] = p.activations;
  m["model"] = {{"model_type", c.model_type},
                {"family", family_name(c.family)},
                {"semantics", c.semantics},
                {"cla_share_factor", c.cla_share_factor},
                {"config_sha256", c.sha256},
                {"num_hidden_layers", c.num_hidden_layers},
                {"checkpoint", checkpoint}};
  m["input"] = {{"token_ids", token_ids}, {"position_offset", position_offset}};
  return m;
}

void record_weights_fingerprint(ordered_json& manifest, const std::string& checkpoint_dir) {
  manifest["model"]["weights_fingerprint"] = weights_fingerprint(checkpoint_dir);
}

CheckpointIdentity::CheckpointIdentity(std::string dir, std::string config_sha256)
    : dir_(std::move(dir)), config_sha256_(std::move(config_sha256)) {}

const std::string& CheckpointIdentity::fingerprint() const {
  if (fingerprint_.empty()) fingerprint_ = weights_fingerprint(dir_);
  return fingerprint_;
}

void check_made_from(const Dump& d, const CheckpointIdentity& ck, bool require_config_sha256) {
  const json& m = d.manifest();
  const json none = json::object();
  const json& model = m.contains("model") ? m["model"] : none;
  const std::string mpath = d.dir() + "/manifest.json";
  const std::string sha = model.value("config_sha256", std::string());
  if (sha.empty() && require_config_sha256)
    fail(mpath + ": model.config_sha256 is missing; expected the sha256 of " + ck.dir() + "/config.json (" +
         ck.config_sha256().substr(0, 12) + "...)");
  if (!sha.empty() && sha != ck.config_sha256())
    fail(mpath + ": model.config_sha256 " + sha.substr(0, 12) + "... is not the sha256 of " + ck.dir() +
         "/config.json (" + ck.config_sha256().substr(0, 12) + "...): the dump was made from another checkpoint");
  const std::string fp = model.value("weights_fingerprint", std::string());
  if (!fp.empty() && fp != ck.fingerprint()) {
    const size_t shown = std::string(kWeightsFingerprintPrefix).size() + 12;
    fail(mpath + ": model.weights_fingerprint " + fp.substr(0, shown) + "... is not that of " + ck.dir() + " (" +
         ck.fingerprint().substr(0, shown) + "...): the dump was made from a checkpoint with other weights");
  }
}

void DumpWriter::add(RawTensor t) {
  if (index_.count(t.name)) fail("dump writer: tensor \"" + t.name + "\" recorded twice");
  index_[t.name] = tensors_.size();
  tensors_.push_back(std::move(t));
}

void DumpWriter::put(const std::string& name, const Tensor<double>& t) {
  add({name, float_dtype_, t.shape, encode_values(t.data.data(), t.numel(), float_dtype_)});
}
void DumpWriter::put(const std::string& name, const Tensor<float>& t) {
  const DType d = float_dtype_ == DType::F64 ? DType::F32 : float_dtype_;  // never widen silently
  add({name, d, t.shape, encode_values(t.data.data(), t.numel(), d)});
}
void DumpWriter::put_ints(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& v,
                          DType stored) {
  if (stored != DType::I64 && stored != DType::I32)
    fail("dump writer: tensor \"" + name + "\" of ids must be stored as I64 or I32, not " + dtype_name(stored));
  add({name, stored, shape, encode_ints(v.data(), int64_t(v.size()), stored)});
}

void DumpWriter::write(const std::string& dir, ordered_json manifest) const {
  // Written into a fresh temporary directory and put in place whole (output.h): a failure leaves
  // the old dump (or nothing), a concurrent writer one complete dump, never a mix.
  OutputDir out(dir);
  const std::string file = "activations.safetensors";
  const FileCheck check = write_safetensors(out.path() + "/" + file, tensors_, {{"format", "hyoracle.dump"}});
  manifest["files"] = {file};
  manifest["file_checks"] = {{file, {{"bytes", check.bytes}, {"crc32", crc32_hex(check.crc32)}}}};
  write_output_file(out.path() + "/manifest.json", manifest.dump(2) + "\n");
  out.commit();
}

namespace {

void advise_bytes(const uint8_t* p, uint64_t len, int advice);

// A manifest "files" entry: a relative path inside the dump, with no component "." or ".."
// ("acts..v1.safetensors" is a legal name), no empty component, no control bytes or NUL (which
// would cut the path short at open()).
bool is_inside_name(const std::string& name) {
  if (name.empty() || name[0] == '/') return false;
  for (const char ch : name)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f || ch == '\\') return false;
  size_t begin = 0;
  for (;;) {
    const size_t end = name.find('/', begin);
    const std::string part = name.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string::npos) return true;
    begin = end + 1;
  }
}

// A JSON integer in [0, 2^62] (token ids, offsets); false for floats, negatives and huge values.
bool is_small_nonneg_int(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= (uint64_t(1) << 62);
  return v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= (int64_t(1) << 62);
}

}  // namespace

nlohmann::json parse_dump_manifest(const std::string& text, const std::string& mpath) {
  const json m = parse_json_strict(text, mpath);
  auto bad = [&](const std::string& field, const std::string& why) { fail(mpath + ": field \"" + field + "\" " + why); };
  if (!m.is_object()) fail(mpath + ": manifest must be a JSON object");
  if (!m.contains("format") || m["format"] != "hyoracle.dump") bad("format", "must be \"hyoracle.dump\"");
  if (!m.contains("version") || !m["version"].is_number_integer()) bad("version", "is missing or not an integer");
  if (m["version"].is_number_unsigned() ? m["version"].get<uint64_t>() != uint64_t(kDumpVersion)
                                        : m["version"].get<int64_t>() != kDumpVersion)
    bad("version", "is " + m["version"].dump() + "; this hyoracle reads version " + std::to_string(kDumpVersion));
  if (!m.contains("files") || !m["files"].is_array() || m["files"].empty())
    bad("files", "must be a non-empty array of file names");
  for (const json& f : m["files"]) {
    if (!f.is_string()) bad("files", "entries must be strings");
    if (!is_inside_name(f.get<std::string>()))
      bad("files", "entry " + printable_quoted(f.get<std::string>()) + " must be a relative path inside the dump");
  }
  // "file_checks": {name: {"bytes": N, "crc32": "8 hex digits"}} for every file (optional: older
  // and hand-written dumps lack it). Readers verify both, so a torn or mixed dump is refused.
  if (m.contains("file_checks")) {
    const json& fc = m["file_checks"];
    if (!fc.is_object()) bad("file_checks", "must be an object {file: {\"bytes\": N, \"crc32\": \"hex\"}}");
    for (const json& f : m["files"]) {
      const std::string name = f.get<std::string>();
      const std::string field = "file_checks." + name;
      if (!fc.contains(name)) continue;  // Dump's reader refuses a file without one, after reading the files
      const json& e = fc[name];
      if (!e.is_object()) bad(field, "must be an object {\"bytes\": N, \"crc32\": \"hex\"}");
      if (!e.contains("bytes") || !is_small_nonneg_int(e["bytes"])) bad(field + ".bytes", "must be an integer in [0, 2^62]");
      if (!e.contains("crc32") || !e["crc32"].is_string() || e["crc32"].get<std::string>().size() != 8 ||
          e["crc32"].get<std::string>().find_first_not_of("0123456789abcdef") != std::string::npos)
        bad(field + ".crc32", "must be 8 lowercase hex digits");
    }
  }
  // Fields other code reads: wrong JSON types are bad input here, not a failure later.
  if (m.contains("producer")) {
    if (!m["producer"].is_object()) bad("producer", "must be an object");
    for (const char* f : {"name", "version", "device", "dtype", "precision", "mode", "bf16_rounding", "tie_break"})
      if (m["producer"].contains(f) && !m["producer"][f].is_string()) bad(std::string("producer.") + f, "must be a string");
  }
  if (m.contains("model")) {
    if (!m["model"].is_object()) bad("model", "must be an object");
    if (m["model"].contains("num_hidden_layers") && !is_small_nonneg_int(m["model"]["num_hidden_layers"]))
      bad("model.num_hidden_layers", "must be an integer in [0, 2^62]");
    for (const char* f : {"model_type", "family", "semantics", "config_sha256", "weights_fingerprint", "checkpoint"})
      if (m["model"].contains(f) && !m["model"][f].is_string()) bad(std::string("model.") + f, "must be a string");
  }
  if (m.contains("input")) {
    const json& inp = m["input"];
    if (!inp.is_object()) bad("input", "must be an object");
    if (inp.contains("token_ids")) {
      if (!inp["token_ids"].is_array()) bad("input.token_ids", "must be an array of integers");
      for (const json& t : inp["token_ids"])
        if (!is_small_nonneg_int(t)) bad("input.token_ids", "must be an array of integers in [0, 2^62]");
    }
    if (inp.contains("position_offset") && !is_small_nonneg_int(inp["position_offset"]))
      bad("input.position_offset", "must be an integer in [0, 2^62]");
  }
  return m;
}

Dump::Dump(const std::string& dir) : dir_(dir) {
  const std::string mpath = dir + "/manifest.json";
  struct stat st {};
  if (::stat(mpath.c_str(), &st) != 0) fail(mpath + ": cannot open (is " + dir + " a hyoracle dump?)");
  manifest_ = parse_dump_manifest(read_text_file(mpath, kJsonFileLimit, "manifest"), mpath);
  for (const json& f : manifest_["files"]) {
    const std::string name = f.get<std::string>();
    const std::string path = dir + "/" + name;
    if (::stat(path.c_str(), &st) != 0) fail(mpath + ": field \"files\" entry " + printable_quoted(name) + " does not exist");
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    const SafetensorsFile& sf = *files_.back();
    // The file's tensor bytes (for release_pages): first tensor byte to the last tensor's end.
    uint64_t first = UINT64_MAX, last = 0;
    const uint8_t* section = nullptr;  // start of the data section
    for (const TensorInfo& t : sf.tensors()) {
      first = std::min(first, t.begin);
      last = std::max(last, t.end);
      section = sf.data(t) - t.begin;
    }
    spans_.push_back({first < last ? section + first : nullptr, first < last ? last - first : 0});
    for (const TensorInfo& t : sf.tensors()) {
      if (where_.count(t.name))
        fail(sf.path() + ": tensor " + printable_quoted(t.name) + " also appears in " + file_of(t.name) + " (duplicate name)");
      where_[t.name] = {files_.size() - 1, &t};
      names_.push_back(t.name);
    }
  }
  if (manifest_.contains("file_checks")) verify_file_checks();
}

void Dump::verify_file_checks() const {
  const std::string mpath = dir_ + "/manifest.json";
  const json& fc = manifest_["file_checks"];
  for (const auto& f : files_) {
    const std::string name = f->path().substr(dir_.size() + 1);
    if (!fc.contains(name))
      fail(mpath + ": field \"file_checks." + name + "\" is missing (every file of \"files\" needs its size and crc32)");
    const json& e = fc[name];
    const uint64_t bytes = e["bytes"].get<uint64_t>();
    if (f->map_size() != bytes)
      fail(f->path() + ": is " + std::to_string(f->map_size()) + " bytes but " + mpath + " field \"file_checks." + name +
           ".bytes\" says " + std::to_string(bytes) + " (a torn or mixed dump?)");
    // Read through once in 4 MiB steps, dropping each step's pages (RSS stays a few MB).
    uint32_t crc = 0;
    constexpr uint64_t kStep = 4ull << 20;
    for (uint64_t at = 0; at < bytes; at += kStep) {
      const uint64_t n = std::min(kStep, bytes - at);
      crc = crc32_update(crc, f->map_data() + at, size_t(n));
      advise_bytes(f->map_data() + at, n, MADV_DONTNEED);
    }
    if (crc32_hex(crc) != e["crc32"].get<std::string>())
      fail(f->path() + ": CRC-32 is " + crc32_hex(crc) + " but " + mpath + " field \"file_checks." + name +
           ".crc32\" says " + e["crc32"].get<std::string>() + " (a torn or mixed dump?)");
  }
}

const TensorInfo& Dump::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_ + ": tensor " + printable_quoted(name) + " is not in the dump");
  return *it->second.second;
}

const std::string& Dump::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_ + ": tensor " + printable_quoted(name) + " is not in the dump");
  return files_[it->second.first]->path();
}

Tensor<double> Dump::read(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_ + ": tensor " + printable_quoted(name) + " is not in the dump");
  return decode_tensor<double>(*files_[it->second.first], *it->second.second);
}

namespace {

// f16 -> float for all 65536 bit patterns (f16_to_float is exact but slow per element).
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = f16_to_float(uint16_t(h));
    return t;
  }();
  return table.data();
}

// bf16 / f32 -> double with AVX2, 8 values per step (a bf16 is the top half of a float; the
// float -> double conversion is exact); returns how many it decoded (a multiple of 8).
__attribute__((target("avx2"))) int64_t decode_bf16_avx2(const uint8_t* p, int64_t n, double* out) {
  const __m128i zero = _mm_setzero_si128();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
    _mm256_storeu_pd(out + i, _mm256_cvtps_pd(_mm_castsi128_ps(_mm_unpacklo_epi16(zero, h))));
    _mm256_storeu_pd(out + i + 4, _mm256_cvtps_pd(_mm_castsi128_ps(_mm_unpackhi_epi16(zero, h))));
  }
  return i;
}
__attribute__((target("avx2"))) int64_t decode_f32_avx2(const uint8_t* p, int64_t n, double* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_pd(out + i, _mm256_cvtps_pd(_mm_loadu_ps(reinterpret_cast<const float*>(p + 4 * i))));
    _mm256_storeu_pd(out + i + 4, _mm256_cvtps_pd(_mm_loadu_ps(reinterpret_cast<const float*>(p + 4 * i + 16))));
  }
  return i;
}

// Decodes elements [begin, begin + n) of a little-endian buffer of type t into double, exactly.
void decode_range(const uint8_t* p, DType t, int64_t begin, int64_t n, double* out) {
  int64_t done = 0;
  switch (t) {
    case DType::BF16:
      p += 2 * begin;
      if (use_avx2()) done = decode_bf16_avx2(p, n, out);
      for (int64_t i = done; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        const uint32_t u = uint32_t(h) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        out[i] = f;
      }
      return;
    case DType::F16: {
      const float* tab = f16_table();
      p += 2 * begin;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = tab[h];
      }
      return;
    }
    case DType::F32:
      p += 4 * begin;
      if (use_avx2()) done = decode_f32_avx2(p, n, out);
      for (int64_t i = done; i < n; ++i) {
        float f;
        std::memcpy(&f, p + 4 * i, 4);
        out[i] = f;
      }
      return;
    case DType::F64:
      std::memcpy(out, p + 8 * begin, size_t(n) * 8);
      return;
    default:
      for (int64_t i = 0; i < n; ++i) out[i] = element_as_double(p, t, begin + i);
  }
}

// madvise over the whole pages that hold [p, p + len).
void advise_bytes(const uint8_t* p, uint64_t len, int advice) {
  if (!p || len == 0) return;
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + len + page - 1) & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(a), b - a, advice);  // a hint: failure changes nothing but memory use
}

}  // namespace

void Dump::read_range(const std::string& name, int64_t begin, int64_t count, double* out) const {
  const TensorInfo& t = info(name);
  if (begin < 0 || count < 0 || begin > t.numel() - count)
    fail(file_of(name) + ": tensor " + printable_quoted(name) + ": elements [" + std::to_string(begin) + ", " +
         std::to_string(begin + count) + ") asked for, it has " + std::to_string(t.numel()));
  if (count == 0) return;  // `out` may be null (an empty buffer's data())
  decode_range(files_[where_.at(name).first]->data(t), t.dtype, begin, count, out);
}

void Dump::advise(const std::string& name, int64_t begin, int64_t count, Pages what) const {
  const TensorInfo& t = info(name);
  begin = std::clamp<int64_t>(begin, 0, t.numel());
  count = std::clamp<int64_t>(count, 0, t.numel() - begin);
  const int64_t es = dtype_size(t.dtype);
  advise_bytes(files_[where_.at(name).first]->data(t) + begin * es, uint64_t(count * es),
               what == Pages::will_need ? MADV_WILLNEED : MADV_DONTNEED);
}

void Dump::release_pages() const {
  for (const auto& [p, len] : spans_) advise_bytes(p, len, MADV_DONTNEED);
}

void Dump::read_ahead(const std::string& name, int64_t begin, uint64_t bytes) const {
  const TensorInfo& t = info(name);
  const size_t f = where_.at(name).first;
  if (ahead_.size() != spans_.size()) ahead_.assign(spans_.size(), nullptr);
  const uint8_t* from = files_[f]->data(t) + std::clamp<int64_t>(begin, 0, t.numel()) * dtype_size(t.dtype);
  const uint8_t* end = spans_[f].first + spans_[f].second;
  const uint8_t* to = from + std::min<uint64_t>(bytes, uint64_t(end - from));
  // Ask in steps of at least half the window (large sequential requests per file), and only for
  // the part not asked for yet.
  if (ahead_[f] >= to || (ahead_[f] > from && uint64_t(ahead_[f] - from) >= bytes / 2)) return;
  if (ahead_[f] > from) from = ahead_[f];
  advise_bytes(from, uint64_t(to - from), MADV_WILLNEED);
  ahead_[f] = to;
}

namespace {
// Element i of an integer tensor, exactly (no trip through double, which loses bits past 2^53).
int64_t integer_element(const uint8_t* p, DType t, int64_t i) {
  switch (t) {
    case DType::I64: { int64_t v; std::memcpy(&v, p + 8 * i, 8); return v; }
    case DType::I32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case DType::I16: { int16_t v; std::memcpy(&v, p + 2 * i, 2); return v; }
    case DType::I8: return int8_t(p[i]);
    default: return p[i];  // U8, BOOL
  }
}
}  // namespace

std::vector<int64_t> Dump::read_ints(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (dtype_is_float(t.dtype))
    fail(file_of(name) + ": tensor " + printable_quoted(name) + " has dtype " + dtype_name(t.dtype) + ", expected I64 or I32");
  const auto& f = *files_[where_.at(name).first];
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = integer_element(f.data(t), t.dtype, i);
  return v;
}

std::vector<int64_t> Dump::token_ids() const {
  if (has("input_ids")) return read_ints("input_ids");
  std::vector<int64_t> v;
  if (manifest_.contains("input") && manifest_["input"].contains("token_ids"))
    for (const json& t : manifest_["input"]["token_ids"]) v.push_back(t.get<int64_t>());
  return v;
}

std::string Dump::producer(const std::string& field) const {
  if (!manifest_.contains("producer")) return "";
  const json& p = manifest_["producer"];
  return p.contains(field) && p[field].is_string() ? p[field].get<std::string>() : "";
}

}  // namespace hyoracle
