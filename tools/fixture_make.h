// fixture_make.h: making a fixture directory, a complete golden-output test case.
//
//   DIR/config.json, DIR/model*.safetensors[, index]   random weights, HF original layout
//   DIR/golden/reference-exact/                         the exact reference's dump of the golden
//                                                       prompt and its greedy generation
//   DIR/fixture.json                                    preset, sizes, seed, prompt, margins,
//                                                       seeds tried, file hashes, how it was made
//
// The margin rule (fixture_margins.h): seeds first_seed, first_seed+1, ... are tried in order
// until the golden run's smallest router top-k margin and smallest top-1 logit margin are both
// ≥ min_margin. Nothing time- or path-dependent is written: the same request gives the same
// config and weights on any machine (exact integer/dyadic arithmetic), and the same golden bytes
// within one build on one machine (float64 through OpenBLAS; across CPUs the golden may differ in
// the last bits, STYLE.md "Determinism by construction", and so may fixture.json's hashes of it).
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/fixture_margins.h"
#include "tools/fixture_presets.h"

namespace hyoracle::fixture {

inline constexpr const char* kGoldenDir = "golden/reference-exact";
inline constexpr const char* kFixtureFile = "fixture.json";

struct Request {
  std::string preset;
  CheckpointSpec spec;           // sizes and scales; spec.seed is the first seed tried
  std::vector<int64_t> prompt;   // golden prompt
  int64_t generate = 5;          // greedy tokens after the prompt
  double min_margin = 1e-3;      // required router and logit margin
  int max_tries = 32;            // seeds tried before giving up
  int threads = 1;               // reference threads (results do not depend on it)
  bool golden_steps = false;     // also store steps.S.* in the golden dump
  std::string command;           // the command line recorded in fixture.json ("--out DIR")
  cli::Progress* progress = nullptr;  // progress lines on stderr (cli_util.h); none when null
};

struct Try {
  uint64_t seed = 0;
  double min_router = 0, min_logit = 0;
  std::string shortfall;  // "" when accepted
  double write_s = 0, check_s = 0;
};

struct Result {
  uint64_t seed = 0;      // the accepted seed
  MarginReport margins;   // of the accepted seed
  std::vector<Try> tries;
  int64_t bytes = 0;      // bytes of every file written
  nlohmann::ordered_json manifest;  // the fixture.json written
};

// Creates `out` (an empty or absent directory; with `force`, the files a fixture consists of are
// replaced) and fills it. Error when no seed in max_tries meets the margins; fixture.json is
// written only for an accepted seed. Progress lines go to `log` when given.
Result make_fixture(const Request& q, const std::string& out, bool force, std::ostream* log);

// The files of a fixture directory (relative paths, sorted), fixture.json excluded.
std::vector<std::string> fixture_files(const std::string& dir);

}  // namespace hyoracle::fixture
