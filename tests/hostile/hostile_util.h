// hostile_util.h: helpers for the catalogue of bad inputs. Every case writes its files into a
// fresh temp directory, runs the real `hyoracle` binary with a time limit and reports the exit
// status, stderr and the peak memory of the child.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dtype.h"

namespace hyoracle::hostile {

// A fresh directory under $TMPDIR, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// What one run of the binary did.
struct Outcome {
  int status = -1;          // exit status; -1 when killed by a signal or the time limit
  int signal = 0;           // the signal that ended it, if any
  bool timed_out = false;   // killed after the time limit
  std::string err;          // everything written to stderr
  std::string out;          // everything written to stdout
  int64_t max_rss_kb = 0;   // peak resident memory of the child
};

// Runs HYORACLE_BINARY with `args`; kills it after `seconds`. With max_file_bytes >= 0 the child
// may write no file larger than that (RLIMIT_FSIZE, SIGXFSZ ignored): writes past it fail with
// EFBIG, as on a full disk.
Outcome run_hyoracle(const std::vector<std::string>& args, double seconds = 60, int64_t max_file_bytes = -1);

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

// A safetensors image: 8-byte little-endian length of `header`, `header`, then `data`.
std::string safetensors_bytes(const std::string& header, const std::string& data);
// A valid single-tensor F32 image: "w" of shape [n] with n*4 zero bytes.
std::string one_tensor_file(int64_t n);

// The tiny checkpoint every case starts from (3 layers, H=64, 8 experts), written to dir.
// shards > 1 writes model-0000k-of-0000K.safetensors and the index.
void write_good_checkpoint(const std::string& dir, int shards = 1);
// The config.json the tiny checkpoint uses.
nlohmann::ordered_json good_config();
// Rewrites dir/model.safetensors after `edit` changed its tensors (name, dtype, shape, bytes).
struct EditableTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void edit_checkpoint(const std::string& dir, const std::function<void(std::vector<EditableTensor>&)>& edit);

// A valid dump of the tiny checkpoint (`hyoracle run --dump`), written by the library's writer.
void write_good_dump(const std::string& dir);
// A dump holding only input_ids with the given ids (any values, negative ones included).
void write_dump_with_ids(const std::string& dir, const std::vector<int64_t>& ids);
// A dump holding input_ids [1, 2] and F32 "logits" [2, 2] with the given values.
void write_dump_with_logits(const std::string& dir, const std::vector<double>& logits);
// The same with generate.tokens [n] and generate.logits [n, V] (V = gen_logits.size() / n).
void write_dump_with_generation(const std::string& dir, const std::vector<int64_t>& tokens,
                                const std::vector<double>& gen_logits);

}  // namespace hyoracle::hostile
