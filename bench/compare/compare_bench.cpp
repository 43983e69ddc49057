// bench_compare: throughput and peak memory of `hyoracle compare` on two synthetic multi-GB
// dumps, next to a plain sequential read of the same two files measured in the same run.
//
//   bench_compare --hyoracle build/tools/hyoracle [--dtype bf16|f32] [--gb 2] [--tokens 512]
//                 [--dir DIR] [--keep] [--reuse] [--cached-only] [-- EXTRA COMPARE ARGS]
//   bench_compare --hyoracle H --measure BASELINE TARGET [-- EXTRA COMPARE ARGS]
//
// The dumps (written by the project's DumpWriter in a child process, so this process stays
// small) have Hy-MT2's shapes (hidden 2048, 32/4 heads of 128, 128 experts, top-8, vocabulary
// 120832; layer 0 dense, the others MoE), the canonical names of docs/DUMP_FORMAT.md, and as many
// layers as fit in --gb per dump. The target is the baseline with a relative perturbation of
// about one bf16 (or f32) unit, stored in the same dtype; both sides route identically.
//
// Each measurement says how much of the two files was in the page cache before it started
// (mincore). The cached pass runs first (the files were just written); the uncached pass evicts
// the two files from the page cache (fdatasync + posix_fadvise DONTNEED: these files only, not
// the machine's cache) before each measurement. `hyoracle compare` runs as a child process
// (fork + exec from this small process); its peak RSS is the child's ru_maxrss from wait4, shown
// next to the floor of the same binary (a compare of two missing dumps: libraries, CUDA runtime).
// Not a test: it prints figures. Sizes: 2 x --gb of disk and page cache (default 2 x 2 GB).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/dump.h"
#include "reference/names.h"

using namespace hyoracle;
namespace fs = std::filesystem;

namespace {

// Hy-MT2 (docs/model.md §3): the shapes of one token's canonical tensors.
constexpr int64_t kHidden = 2048, kHeads = 32, kKvHeads = 4, kHeadDim = 128, kExperts = 128, kTopK = 8,
                  kVocab = 120832;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// splitmix64: a cheap, seeded, replayable stream of 64-bit values.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// Uniform in [-1, 1) from a hash.
double unit(uint64_t h) { return double(int64_t(h >> 11) - (int64_t(1) << 52)) * 0x1p-52; }

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  bool ids = false;
};

// The canonical tensors of a prefill dump with `layers` layers, in execution order.
std::vector<TensorSpec> dump_layout(int64_t T, int64_t layers) {
  std::vector<TensorSpec> v;
  v.push_back({"embed", {T, kHidden}});
  for (int64_t L = 0; L < layers; ++L) {
    auto add = [&](const std::string& s, std::vector<int64_t> shape, bool ids = false) {
      v.push_back({names::layer(L, s), std::move(shape), ids});
    };
    add("input_norm", {T, kHidden});
    add("attn.q", {T, kHeads, kHeadDim});
    add("attn.k", {T, kKvHeads, kHeadDim});
    add("attn.v", {T, kKvHeads, kHeadDim});
    add("attn.q_norm", {T, kHeads, kHeadDim});
    add("attn.k_norm", {T, kKvHeads, kHeadDim});
    add("attn.q_rope", {T, kHeads, kHeadDim});
    add("attn.k_rope", {T, kKvHeads, kHeadDim});
    add("attn.context", {T, kHeads * kHeadDim});
    add("attn.out", {T, kHidden});
    add("resid_mid", {T, kHidden});
    add("post_norm", {T, kHidden});
    if (L > 0) {  // Hy-MT2: layer 0 dense, the rest MoE
      add("moe.router_logits", {T, kExperts});
      add("moe.scores", {T, kExperts});
      add("moe.topk_ids", {T, kTopK}, true);
      add("moe.topk_weights", {T, kTopK});
      add("moe.routed_out", {T, kHidden});
      add("moe.shared_out", {T, kHidden});
    }
    add("mlp.out", {T, kHidden});
    add("out", {T, kHidden});
  }
  v.push_back({"final_norm", {T, kHidden}});
  v.push_back({"logits", {T, kVocab}});
  return v;
}

double layout_bytes(const std::vector<TensorSpec>& v, int es) {
  double b = 0;
  for (const auto& t : v) b += double(numel_of(t.shape)) * (t.ids ? 4 : es);
  return b;
}

// Writes one side: values from a hash of (tensor index, element); the target adds rel · unit noise.
void write_side(const std::string& dir, const std::vector<TensorSpec>& layout, int64_t T, int64_t layers, DType store,
                double rel, uint64_t noise_seed) {
  DumpWriter w(store);
  for (size_t ti = 0; ti < layout.size(); ++ti) {
    const TensorSpec& s = layout[ti];
    const int64_t n = numel_of(s.shape);
    if (s.ids) {  // token t chooses experts (t·7 + 16·j) mod 128: distinct, the same on both sides
      std::vector<int64_t> ids(static_cast<size_t>(n));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < kTopK; ++j) ids[size_t(t * kTopK + j)] = (t * 7 + 16 * j) % kExperts;
      w.put_ints(s.name, s.shape, ids, dataflow::int_dtype_of(s.name));
      continue;
    }
    const bool prob = s.name.find("moe.scores") != std::string::npos || s.name.find("topk_weights") != std::string::npos;
    const double scale = s.name == "logits" ? 8.0 : 1.0;
    Tensor<float> x(s.shape);
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t h = mix((uint64_t(ti) << 40) ^ uint64_t(i));
      double v = prob ? 0.5 + 0.45 * unit(h) : scale * unit(h);
      if (rel > 0) v *= 1.0 + rel * unit(mix(h ^ noise_seed));
      x.data[size_t(i)] = float(v);
    }
    w.put(s.name, x);
  }
  ModelConfig c;
  c.model_type = "hy_v3";
  c.sha256 = "synthetic";
  c.num_hidden_layers = layers;
  std::vector<int64_t> tokens(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) tokens[size_t(t)] = (t * 37) % kVocab;
  DumpProducer p;
  p.name = "bench_compare";
  p.dtype = store == DType::BF16 ? "bfloat16" : "float32";
  p.precision = "engine";
  w.write(dir, make_manifest(p, c, "synthetic", tokens));
}

struct Child {
  int status = -1;
  double seconds = 0, max_rss_gb = 0;
};

// fork + exec; the child's peak RSS from wait4 (this process is small when it forks, so the
// child's copied page-table counts add only a few MB).
Child run_child(const std::vector<std::string>& argv, const std::string& out_path) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  Child c;
  const double t0 = now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2);
    ::execv(a[0], a.data());
    _exit(127);
  }
  int st = 0;
  struct rusage ru {};
  ::wait4(pid, &st, 0, &ru);
  c.seconds = now() - t0;
  c.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  c.max_rss_gb = double(ru.ru_maxrss) * 1024.0 / 1e9;
  return c;
}

// Fraction of a file's pages in the page cache (mincore on a fresh mapping).
double cached_fraction(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  struct stat st {};
  ::fstat(fd, &st);
  const size_t len = size_t(st.st_size), page = size_t(::sysconf(_SC_PAGESIZE));
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return 0;
  std::vector<unsigned char> v((len + page - 1) / page);
  ::mincore(p, len, v.data());
  ::munmap(p, len);
  size_t in = 0;
  for (unsigned char b : v) in += b & 1;
  return v.empty() ? 0 : double(in) / double(v.size());
}

// Flushes a file and drops its pages from the page cache (this file only).
void evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// The baseline: mmap each file and sum it as 64-bit words, front to back, with the same page
// handling as compare (read ahead, release behind). Returns seconds; *sum keeps it honest.
double sequential_read(const std::vector<std::string>& paths, uint64_t* sum) {
  const double t0 = now();
  uint64_t s = 0;
  for (const auto& path : paths) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    struct stat st {};
    ::fstat(fd, &st);
    const size_t len = size_t(st.st_size);
    auto* p = static_cast<const uint8_t*>(::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0));
    ::close(fd);
    ::madvise(const_cast<uint8_t*>(p), len, MADV_SEQUENTIAL);
    const size_t block = size_t(8) << 20;
    for (size_t off = 0; off < len; off += block) {
      const size_t n = std::min(block, len - off);
      if (off + block < len) ::madvise(const_cast<uint8_t*>(p + off + block), std::min(block, len - off - block), MADV_WILLNEED);
      const uint8_t* q = p + off;
      size_t i = 0;
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        std::memcpy(w, q + i, 32);
        a0 += w[0], a1 += w[1], a2 += w[2], a3 += w[3];
      }
      for (; i < n; ++i) a0 += q[i];
      s += a0 ^ a1 ^ a2 ^ a3;
      ::madvise(const_cast<uint8_t*>(p + off), n, MADV_DONTNEED);
    }
    ::munmap(const_cast<uint8_t*>(p), len);
  }
  *sum = s;
  return now() - t0;
}

std::vector<std::string> dump_files(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") v.push_back(e.path().string());
  return v;
}

double files_bytes(const std::vector<std::string>& v) {
  double b = 0;
  for (const auto& f : v) b += double(fs::file_size(f));
  return b;
}

// One pass: cache state, baseline read, compare. Returns the compare's exit status.
int measure(const std::string& hy, const std::string& a, const std::string& b, const std::vector<std::string>& extra,
            bool uncached, const std::string& work) {
  std::vector<std::string> files = dump_files(a);
  for (const auto& f : dump_files(b)) files.push_back(f);
  const double bytes = files_bytes(files);
  auto cache_line = [&](const char* what) {
    double in = 0;
    for (const auto& f : files) in += cached_fraction(f) * double(fs::file_size(f));
    std::printf("  %-8s page cache before: %5.1f%% of the %.2f GB resident%s\n", what, 100 * in / bytes, bytes / 1e9,
                uncached ? " (evicted: fdatasync + posix_fadvise DONTNEED on these files)" : "");
  };
  if (uncached)
    for (const auto& f : files) evict(f);
  cache_line("baseline");
  uint64_t sum = 0;
  const double tr = sequential_read(files, &sum);
  std::printf("  baseline sequential read (mmap + 64-bit sum of both files): %.2f GB in %.2f s = %.2f GB/s  [sum %016llx]\n",
              bytes / 1e9, tr, bytes / 1e9 / tr, (unsigned long long)sum);
  if (uncached)
    for (const auto& f : files) evict(f);
  cache_line("compare");
  const Child floor = run_child({hy, "compare", work + "/no-such-dump", work + "/no-such-dump", "-q"}, work + "/floor.out");
  std::vector<std::string> argv = {hy, "compare", a, b, "--json", work + "/report.json"};
  for (const auto& e : extra) argv.push_back(e);
  const Child c = run_child(argv, work + "/compare.out");
  std::printf("  hyoracle compare (child process):                           %.2f GB in %.2f s = %.2f GB/s (%.0f%% of the baseline's rate); exit %d\n",
              bytes / 1e9, c.seconds, bytes / 1e9 / c.seconds, 100 * tr / c.seconds, c.status);
  std::printf("  peak RSS (ru_maxrss) %.3f GB = %.1f%% of the dumps; the binary's floor (same binary, missing dumps) %.3f GB\n",
              c.max_rss_gb, 100 * c.max_rss_gb * 1e9 / bytes, floor.max_rss_gb);
  if (FILE* f = std::fopen((work + "/compare.out").c_str(), "r")) {  // the summary's first lines
    char line[512];
    for (int i = 0; i < 5 && std::fgets(line, sizeof line, f); ++i)
      if (std::strstr(line, "hyoracle compare:") || std::strstr(line, "compared ") || std::strstr(line, "error"))
        std::printf("    | %s", line);
    std::fclose(f);
  }
  return c.status;
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_compare --hyoracle PATH [--dtype bf16|f32] [--gb G] [--tokens T] [--dir DIR] [--keep] [--reuse]\n"
               "                     [--cached-only] [--measure BASELINE TARGET] [-- EXTRA COMPARE ARGS]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear as they are printed
  std::string hy, dtype = "bf16", dir = (fs::temp_directory_path() / "hyoracle-bench-compare").string(), ma, mb;
  double gb = 2;
  int64_t T = 512;
  bool keep = false, reuse = false, cached_only = false;
  std::vector<std::string> extra;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--hyoracle") hy = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--gb") gb = std::atof(next().c_str());
    else if (a == "--tokens") T = std::atoll(next().c_str());
    else if (a == "--dir") dir = next();
    else if (a == "--keep") keep = true;
    else if (a == "--reuse") reuse = keep = true;
    else if (a == "--cached-only") cached_only = true;
    else if (a == "--measure") ma = next(), mb = next();
    else if (a == "--") {
      for (++i; i < argc; ++i) extra.push_back(argv[i]);
    } else return usage();
  }
  if (hy.empty() || (dtype != "bf16" && dtype != "f32") || gb <= 0 || T <= 0) return usage();
  fs::create_directories(dir);
  if (!ma.empty()) {
    std::printf("bench_compare: %s vs %s\n", ma.c_str(), mb.c_str());
    measure(hy, ma, mb, extra, false, dir);
    if (!cached_only) measure(hy, ma, mb, extra, true, dir);
    return 0;
  }
  const DType store = dtype == "bf16" ? DType::BF16 : DType::F32;
  const int es = dtype == "bf16" ? 2 : 4;
  // Layers up to Hy-MT2's 48 at T tokens; when 48 layers fit, more tokens.
  int64_t layers = 1;
  while (layers < 48 && layout_bytes(dump_layout(T, layers + 1), es) <= gb * 1e9) ++layers;
  while (layers == 48 && layout_bytes(dump_layout(T + 1, layers), es) <= gb * 1e9) ++T;
  const auto layout = dump_layout(T, layers);
  const std::string a = dir + "/baseline-" + dtype, b = dir + "/target-" + dtype;
  std::printf("bench_compare: two synthetic Hy-MT2 prefill dumps, %s, T = %lld, %lld layers, %zu tensors, %.2f GB each\n",
              dtype.c_str(), (long long)T, (long long)layers, layout.size(), layout_bytes(layout, es) / 1e9);
  if (!(reuse && fs::exists(a + "/manifest.json") && fs::exists(b + "/manifest.json"))) {
    const double t0 = now();
    for (int side = 0; side < 2; ++side) {
      const pid_t pid = ::fork();  // the writer holds a whole dump in memory: keep it out of this process
      if (pid == 0) {
        try {
          write_side(side == 0 ? a : b, layout, T, layers, store, side == 0 ? 0.0 : (es == 2 ? 0x1p-8 : 0x1p-23), 7);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "bench_compare: %s\n", e.what());
          _exit(1);
        }
        _exit(0);
      }
      int st = 0;
      ::waitpid(pid, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    }
    std::printf("  wrote both dumps with DumpWriter (child processes) in %.1f s\n", now() - t0);
  }
  std::printf("cached pass\n");
  measure(hy, a, b, extra, false, dir);
  if (!cached_only) {
    std::printf("uncached pass\n");
    measure(hy, a, b, extra, true, dir);
  }
  if (!keep) fs::remove_all(dir);
  return 0;
}
