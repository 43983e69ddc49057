// fixture_check.h: what `hyoracle check` needs besides compare/: reading a fixture directory,
// checking that an engine dump answers the fixture's question, and running an engine command.
//
// A fixture directory (fixture_make.h) is FIXTURE/fixture.json + FIXTURE/config.json + weights +
// FIXTURE/golden/reference-exact/. An engine dump answers it when its input tokens are the golden
// prompt and, when it records one, its config_sha256 is that of FIXTURE/config.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dump.h"

namespace hyoracle::fixture {

struct FixtureInfo {
  std::string dir;
  std::string preset;
  uint64_t seed = 0;
  std::vector<int64_t> prompt;
  int64_t generate = 0;
  std::string golden_dir;      // dir + "/golden/reference-exact"
  std::string config_sha256;   // of dir/config.json
  double min_router_margin = 0, min_logit_margin = 0;  // recorded in fixture.json (inf as null -> +inf)
};

// Reads and checks a fixture directory: fixture.json (format, prompt, generate, golden dir),
// config.json, the golden dump's manifest and its config hash. Error (one line naming the file
// and what is wrong) on any defect.
FixtureInfo open_fixture(const std::string& dir);

// Error unless `engine` ran the golden prompt (input token ids) on this fixture's config
// (model.config_sha256 when the manifest records one).
void check_engine_input(const FixtureInfo& f, const Dump& engine);

// `tmpl` with {model} / {fixture} (the fixture directory), {dump} (where the engine must write its
// dump), {tokens} (the prompt, comma-separated) and {generate} (greedy tokens) replaced; paths
// are single-quoted for /bin/sh. Error on an unknown {placeholder} or when {dump} is absent.
std::string expand_engine_cmd(const std::string& tmpl, const FixtureInfo& f, const std::string& dump_dir);

// Runs `command` with /bin/sh -c; returns its exit status (-1 when it could not be run or was
// killed by a signal).
int run_shell(const std::string& command);

}  // namespace hyoracle::fixture
