// dump.h: writing and reading hyoracle activation dumps (docs/DUMP_FORMAT.md, version 1).
//
//   <dump>/manifest.json              format, version, producer, model, input, files
//   <dump>/activations.safetensors    canonical tensor names, batch 1, leading dim T
//
// The writer keeps tensors in memory until write(); the reader maps the files and decodes one
// tensor at a time (or a range of one, read_range), so reading needs no more memory than the
// largest tensor (or range) asked for; advise()/release_pages() keep mapped pages out of RSS.
#pragma once
#include <map>
#include <unordered_map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/config.h"
#include "io/safetensors.h"
#include "io/sink.h"

namespace hyoracle {

constexpr int kDumpVersion = 1;
constexpr const char* kHyoracleVersion = "0.1.0";

struct DumpProducer {
  std::string name = "hyoracle-reference";
  std::string version = kHyoracleVersion;
  std::string device = "cpu";
  std::string dtype = "float64";   // activation dtype of the run
  std::string precision = "exact"; // exact | hf | fp32 | bf16 | engine
  std::string mode = "prefill";    // prefill | decode | generate
  // "" (the model as stored: exact inputs to every layer) or "fp8-static" (W8A8: each FP8
  // linear's input quantized with its checkpoint input_scale, reference/fp8_activation.h).
  std::string activations;
};

// The manifest fields DUMP_FORMAT.md defines, plus hyoracle's extras (tie-break rule, ...).
nlohmann::ordered_json make_manifest(const DumpProducer& p, const ModelConfig& c, const std::string& checkpoint,
                                     const std::vector<int64_t>& token_ids, int64_t position_offset = 0);

// Adds model.weights_fingerprint (fingerprint.h) of the checkpoint in `checkpoint_dir`.
void record_weights_fingerprint(nlohmann::ordered_json& manifest, const std::string& checkpoint_dir);

class DumpWriter : public ActivationSink {
 public:
  // float_dtype: how floating tensors are stored (F64, F32, F16 or BF16).
  explicit DumpWriter(DType float_dtype = DType::F64) : float_dtype_(float_dtype) {}
  void put(const std::string& name, const Tensor<double>& t) override;
  void put(const std::string& name, const Tensor<float>& t) override;
  // Stored as `stored` (I64 or I32; the values must fit).
  void put_ints(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& v,
                DType stored) override;
  // ids are stored as I64 for input_ids / generate.tokens and I32 for topk_ids (DUMP_FORMAT.md).
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  size_t size() const { return tensors_.size(); }
  // Writes manifest.json (with "files" filled in) and activations.safetensors into dir.
  void write(const std::string& dir, nlohmann::ordered_json manifest) const;

 private:
  void add(RawTensor t);
  DType float_dtype_;
  std::vector<RawTensor> tensors_;
  std::map<std::string, size_t> index_;
};

// Parses and validates manifest.json text (format, version, files, input; DUMP_FORMAT.md) without
// touching the files it lists; `path` names it in messages. Dump's constructor uses it.
nlohmann::json parse_dump_manifest(const std::string& text, const std::string& path);

class Dump {
 public:
  // Reads and validates dir/manifest.json and maps every file it lists.
  explicit Dump(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& manifest() const { return manifest_; }
  // Tensor names in file order.
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  // Path of the file holding `name`.
  const std::string& file_of(const std::string& name) const;
  // Decodes any numeric tensor into double (exact for every dtype of the format).
  Tensor<double> read(const std::string& name) const;
  // Streaming access (hyoracle compare reads dumps of several GB this way): decodes elements
  // [begin, begin + count) of a numeric tensor, in row-major order, into out; exact, as read().
  void read_range(const std::string& name, int64_t begin, int64_t count, double* out) const;
  // Page hints for the mapped bytes of elements [begin, begin + count) of `name` (madvise, whole
  // pages around the range): will_need starts readahead; dont_need drops the pages from this
  // process's memory (the page cache keeps them; touching them again faults them back in), so a
  // streaming reader's RSS stays at its buffers whatever the dump's size.
  enum class Pages { will_need, dont_need };
  void advise(const std::string& name, int64_t begin, int64_t count, Pages what) const;
  // dont_need over the data of every file of the dump (after whole-tensor reads).
  void release_pages() const;
  // will_need for the `bytes` of the file that follow element `begin` of `name`, across the
  // tensors stored after it in the file, asked only once per byte: a streaming reader calls it
  // before each chunk so the disk works ahead of it. It pays off when the file holds tensors in
  // the order they are compared (execution order: hyoracle's DumpWriter); a file grouped by dtype
  // (tools/dump_io.py, HF's goldens) still reads correctly, the read-ahead only helps less.
  void read_ahead(const std::string& name, int64_t begin, uint64_t bytes) const;
  std::vector<int64_t> read_ints(const std::string& name) const;
  std::vector<int64_t> token_ids() const;
  // producer.<field> as a string ("" when absent).
  std::string producer(const std::string& field) const;

 private:
  // Checks each file's size and CRC-32 against the manifest's "file_checks".
  void verify_file_checks() const;
  std::string dir_;
  nlohmann::json manifest_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::pair<const uint8_t*, uint64_t>> spans_;  // per file: first data byte, data length
  mutable std::vector<const uint8_t*> ahead_;               // per file: read ahead up to here (a hint)
  std::unordered_map<std::string, std::pair<size_t, const TensorInfo*>> where_;  // looked up, never iterated
  std::vector<std::string> names_;
};

// What identifies a checkpoint to the dumps made from it: the sha256 of its config.json and its
// weights fingerprint (fingerprint.h; computed on first use, only when a manifest records one).
class CheckpointIdentity {
 public:
  CheckpointIdentity(std::string dir, std::string config_sha256);
  const std::string& dir() const { return dir_; }
  const std::string& config_sha256() const { return config_sha256_; }
  const std::string& fingerprint() const;

 private:
  std::string dir_, config_sha256_;
  mutable std::string fingerprint_;
};

// Refuses (one line naming the manifest, the field and both values) a dump whose manifest records
// a model.config_sha256 or model.weights_fingerprint other than the checkpoint's: judged against
// other weights, an honest engine would fail from its first tensor on. A field the manifest does
// not record is not checked (engines' dumps often lack both), unless require_config_sha256.
void check_made_from(const Dump& d, const CheckpointIdentity& ck, bool require_config_sha256 = false);

}  // namespace hyoracle
