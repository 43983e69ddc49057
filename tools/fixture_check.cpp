#include "tools/fixture_check.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include "util/error.h"
#include "tools/fixture_make.h"
#include "io/safetensors.h"
#include "io/sha256.h"

namespace hyoracle::fixture {

namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join_ids(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

// A short, quoted rendering of a token list for messages: "17,200,3" (first 16 ids).
std::string shown_ids(const std::vector<int64_t>& v) {
  std::vector<int64_t> head(v.begin(), v.begin() + std::min<size_t>(v.size(), 16));
  std::string s = "[";
  s += join_ids(head);
  if (v.size() > 16) s += ",...";
  s += "] (";
  s += std::to_string(v.size());
  s += " tokens)";
  return s;
}

std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

const nlohmann::json& field(const nlohmann::json& j, const std::string& name, const std::string& path) {
  if (!j.contains(name)) fail(path + ": field \"" + name + "\" is missing");
  return j[name];
}

std::vector<int64_t> id_list(const nlohmann::json& v, const std::string& name, const std::string& path) {
  if (!v.is_array() || v.empty()) fail(path + ": field \"" + name + "\" must be a non-empty array of token ids");
  std::vector<int64_t> ids;
  for (const auto& x : v) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0)
      fail(path + ": field \"" + name + "\" must hold non-negative integers");
    ids.push_back(x.get<int64_t>());
  }
  return ids;
}

double margin_or_inf(const nlohmann::json& margins, const char* which) {
  if (!margins.is_object() || !margins.contains(which) || !margins[which].is_object()) return 0;
  const auto& m = margins[which];
  if (!m.contains("min") || m["min"].is_null()) return std::numeric_limits<double>::infinity();
  return m["min"].is_number() ? m["min"].get<double>() : 0;
}

}  // namespace

FixtureInfo open_fixture(const std::string& dir) {
  if (!is_dir(dir)) fail(dir + ": not a fixture directory (no such directory)");
  FixtureInfo f;
  f.dir = dir;
  const std::string path = dir + "/" + kFixtureFile;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    fail(path + ": missing (is " + dir + " a fixture made by `hyoracle fixture`?)");
  const nlohmann::json j = parse_json_strict(read_text_file(path, kJsonFileLimit, "fixture.json"), path);
  if (!j.is_object() || !j.contains("format") || j["format"] != "hyoracle.fixture")
    fail(path + ": field \"format\" must be \"hyoracle.fixture\"");
  // Compared as a JSON value, not through a narrowing get<int>() (4294967297 is not 1).
  if (!field(j, "version", path).is_number_integer() || j["version"] != 1)
    fail(path + ": field \"version\" must be 1, got " + j["version"].dump().substr(0, 40));
  f.preset = field(j, "preset", path).is_string() ? j["preset"].get<std::string>() : "";
  if (f.preset.empty()) fail(path + ": field \"preset\" must be a non-empty string");
  if (!field(j, "seed", path).is_number_unsigned()) fail(path + ": field \"seed\" must be a non-negative integer");
  f.seed = j["seed"].get<uint64_t>();
  f.prompt = id_list(field(j, "prompt", path), "prompt", path);
  if (!field(j, "generate", path).is_number_integer() || j["generate"].get<int64_t>() < 0)
    fail(path + ": field \"generate\" must be a non-negative integer");
  f.generate = j["generate"].get<int64_t>();
  const auto& golden = field(j, "golden", path);
  if (!golden.is_object() || !golden.contains("dir") || !golden["dir"].is_string())
    fail(path + ": field \"golden.dir\" is missing");
  const std::string rel = golden["dir"].get<std::string>();
  if (rel.empty() || rel[0] == '/' || rel == ".." || rel.rfind("../", 0) == 0 || rel.find("/../") != std::string::npos ||
      (rel.size() >= 3 && rel.compare(rel.size() - 3, 3, "/..") == 0))
    fail(path + ": field \"golden.dir\" must be a relative path inside the fixture");
  f.golden_dir = dir + "/" + rel;
  f.min_router_margin = margin_or_inf(j.value("margins", nlohmann::json()), "router");
  f.min_logit_margin = margin_or_inf(j.value("margins", nlohmann::json()), "logit");

  const std::string config = dir + "/config.json";
  if (::stat(config.c_str(), &st) != 0) fail(config + ": missing (the fixture's checkpoint config)");
  f.config_sha256 = sha256_hex(read_text_file(config, kConfigFileLimit, "config.json"));
  if (!is_dir(f.golden_dir)) fail(f.golden_dir + ": missing (the fixture's golden dump)");
  const Dump g(f.golden_dir);
  check_made_from(g, CheckpointIdentity(dir, f.config_sha256), /*require_config_sha256=*/true);
  if (g.token_ids() != f.prompt)
    fail(f.golden_dir + ": input tokens " + shown_ids(g.token_ids()) + " are not fixture.json's prompt " +
         shown_ids(f.prompt));
  return f;
}

void check_engine_input(const FixtureInfo& f, const Dump& engine) {
  const std::vector<int64_t> ids = engine.token_ids();
  if (ids != f.prompt)
    fail(engine.dir() + ": the engine ran tokens " + shown_ids(ids) + ", not the fixture's golden prompt " +
         shown_ids(f.prompt));
  check_made_from(engine, CheckpointIdentity(f.dir, f.config_sha256));
}

std::string expand_engine_cmd(const std::string& tmpl, const FixtureInfo& f, const std::string& dump_dir) {
  std::string out;
  bool has_dump = false;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] != '{') {
      out += tmpl[i++];
      continue;
    }
    const size_t close = tmpl.find('}', i);
    const std::string key = close == std::string::npos ? "" : tmpl.substr(i + 1, close - i - 1);
    if (key == "model" || key == "fixture") out += sh_quote(f.dir);
    else if (key == "dump") { out += sh_quote(dump_dir); has_dump = true; }
    else if (key == "tokens") out += join_ids(f.prompt);
    else if (key == "generate") out += std::to_string(f.generate);
    else fail("--engine-cmd: unknown placeholder \"" + tmpl.substr(i, close == std::string::npos ? 16 : close - i + 1) +
              "\" (known: {model} {fixture} {dump} {tokens} {generate})");
    i = close + 1;
  }
  if (!has_dump) fail("--engine-cmd: the command must contain {dump}, where the engine writes its dump");
  return out;
}

int run_shell(const std::string& command) {
  const int s = std::system(command.c_str());
  if (s == -1 || !WIFEXITED(s)) return -1;
  return WEXITSTATUS(s);
}

}  // namespace hyoracle::fixture
