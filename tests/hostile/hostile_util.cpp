#include "tests/hostile/hostile_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "io/config.h"
#include "io/dump.h"
#include "io/random_checkpoint.h"
#include "io/safetensors.h"

namespace hyoracle::hostile {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/hyoracle-hostile-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Outcome run_hyoracle(const std::vector<std::string>& args, double seconds, int64_t max_file_bytes) {
  TempDir scratch;
  const std::string err_path = scratch / "stderr", out_path = scratch / "stdout";
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0) ::_exit(126);
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (max_file_bytes >= 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      const struct rlimit lim {rlim_t(max_file_bytes), rlim_t(max_file_bytes)};
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    std::vector<char*> argv;
    std::string bin = HYORACLE_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  Outcome o;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int wstatus = 0;
  struct rusage ru {};
  for (;;) {
    const pid_t r = ::wait4(pid, &wstatus, WNOHANG, &ru);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::wait4(pid, &wstatus, 0, &ru);
      o.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(wstatus)) o.status = WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) o.signal = WTERMSIG(wstatus);
  o.max_rss_kb = ru.ru_maxrss;
  o.err = read_file(err_path);
  o.out = read_file(out_path);
  return o;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s + header + data;
}

std::string one_tensor_file(int64_t n) {
  return safetensors_bytes(R"({"w":{"dtype":"F32","shape":[)" + std::to_string(n) + R"(],"data_offsets":[0,)" +
                               std::to_string(4 * n) + "]}}",
                           std::string(size_t(4 * n), '\0'));
}

namespace {
CheckpointSpec tiny_spec(int shards) {
  CheckpointSpec s;  // the defaults are the tiny model: 3 layers, H=64, 8 experts, top-3
  s.shards = shards;
  return s;
}
}  // namespace

void write_good_checkpoint(const std::string& dir, int shards) { write_random_checkpoint(tiny_spec(shards), dir); }

nlohmann::ordered_json good_config() { return checkpoint_config_json(tiny_spec(1)); }

void edit_checkpoint(const std::string& dir, const std::function<void(std::vector<EditableTensor>&)>& edit) {
  const std::string path = dir + "/model.safetensors";
  std::vector<EditableTensor> ts;
  {
    SafetensorsFile f(path);
    for (const TensorInfo& t : f.tensors()) {
      const uint8_t* p = f.data(t);
      ts.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(p, p + (t.end - t.begin))});
    }
  }
  edit(ts);
  std::vector<RawTensor> raw;
  for (auto& t : ts) raw.push_back({t.name, t.dtype, t.shape, t.bytes});
  write_safetensors(path, raw);
}

void write_good_dump(const std::string& dir) {
  const ModelConfig c = parse_config(nlohmann::json::parse(good_config().dump()), "config.json");
  DumpWriter w;
  w.put_ints("input_ids", {2}, {1, 2}, DType::I64);
  w.put("embed", Tensor<double>({2, 64}));
  w.write(dir, make_manifest(DumpProducer{}, c, "tiny", {1, 2}));
}

void write_dump_with_ids(const std::string& dir, const std::vector<int64_t>& ids) {
  const ModelConfig c = parse_config(nlohmann::json::parse(good_config().dump()), "config.json");
  DumpWriter w;
  w.put_ints("input_ids", {int64_t(ids.size())}, ids, DType::I64);
  w.write(dir, make_manifest(DumpProducer{}, c, "tiny", {1, 2}));
}

void write_dump_with_generation(const std::string& dir, const std::vector<int64_t>& tokens,
                                const std::vector<double>& gen_logits) {
  const ModelConfig c = parse_config(nlohmann::json::parse(good_config().dump()), "config.json");
  DumpWriter w(DType::F32);
  w.put_ints("input_ids", {2}, {1, 2}, DType::I64);
  w.put("logits", Tensor<double>({2, 2}, {1.0, 2.0, 3.0, 4.0}));
  const int64_t n = int64_t(tokens.size());
  w.put_ints("generate.tokens", {n}, tokens, DType::I64);
  w.put("generate.logits", Tensor<double>({n, int64_t(gen_logits.size()) / n}, gen_logits));
  w.write(dir, make_manifest(DumpProducer{}, c, "tiny", {1, 2}));
}

void write_dump_with_logits(const std::string& dir, const std::vector<double>& logits) {
  const ModelConfig c = parse_config(nlohmann::json::parse(good_config().dump()), "config.json");
  DumpWriter w(DType::F32);
  w.put_ints("input_ids", {2}, {1, 2}, DType::I64);
  w.put("logits", Tensor<double>({2, 2}, logits));
  w.write(dir, make_manifest(DumpProducer{}, c, "tiny", {1, 2}));
}

}  // namespace hyoracle::hostile
