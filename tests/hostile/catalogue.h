// catalogue.h: the catalogue of bad inputs. Each case writes one defect into a fresh directory
// and names the hyoracle command that must refuse it, the file the one-line message must name
// and the field or tensor it must name. catalogue_test.cpp runs them all against the binary.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace hyoracle::hostile {

struct Case {
  std::string name;  // a gtest-safe identifier
  // Writes the bad input under `dir` (which exists and is empty) and returns the arguments.
  std::function<std::vector<std::string>(const std::string& dir)> setup;
  std::string file;   // path relative to dir that the message must contain
  std::string field;  // the field or tensor the message must name
};

std::vector<Case> safetensors_cases();  // header / offset parser (safetensors_cases.cpp)
std::vector<Case> checkpoint_cases();   // checkpoint directory, index and tensors (checkpoint_cases.cpp)
std::vector<Case> config_cases();       // config.json (config_cases.cpp)
std::vector<Case> dump_cases();         // dump manifest and files (dump_cases.cpp)

// `hyoracle run --model dir --tokens 1,2`: the command every checkpoint case runs.
std::vector<std::string> run_model(const std::string& dir);

}  // namespace hyoracle::hostile
