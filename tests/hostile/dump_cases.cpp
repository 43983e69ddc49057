// Bad dumps, read by `hyoracle run --tokens-from DUMP` (the dump is read before the model).
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>

#include "tests/hostile/catalogue.h"
#include "io/dump.h"
#include "tests/hostile/hostile_util.h"

namespace hyoracle::hostile {

namespace {

// `hyoracle run` reading its tokens from dir/d; dir/ck exists but is never reached.
std::vector<std::string> run_from_dump(const std::string& dir) {
  ::mkdir((dir + "/ck").c_str(), 0755);
  return {"run", "--model", dir + "/ck", "--tokens-from", dir + "/d"};
}

// A good dump in dir/d, then `edit` applied to it.
Case dump_case(const std::string& name, std::function<void(const std::string& d)> edit, const std::string& file,
               const std::string& field) {
  return {name,
          [edit](const std::string& dir) {
            write_good_dump(dir + "/d");
            edit(dir + "/d");
            return run_from_dump(dir);
          },
          "d/" + file, field};
}

// A good dump whose manifest.json was changed by `edit`; the message must name `field`.
Case manifest_case(const std::string& name, std::function<void(nlohmann::json&)> edit, const std::string& field) {
  return dump_case(
      name,
      [edit](const std::string& d) {
        nlohmann::json m = nlohmann::json::parse(read_file(d + "/manifest.json"));
        edit(m);
        write_file(d + "/manifest.json", m.dump(2));
      },
      "manifest.json", field);
}

Case manifest_text_case(const std::string& name, const std::string& text, const std::string& field) {
  return dump_case(name, [text](const std::string& d) { write_file(d + "/manifest.json", text); }, "manifest.json", field);
}

}  // namespace

std::vector<Case> dump_cases() {
  std::vector<Case> v;
  v.push_back(dump_case("NoManifest", [](const std::string& d) { ::unlink((d + "/manifest.json").c_str()); },
                        "manifest.json", "cannot open"));
  v.push_back(manifest_text_case("ManifestNotJson", "{\"format\": \"hyoracle.dump\",,}", "not valid JSON"));
  v.push_back(manifest_text_case("ManifestDuplicateVersion",
                                 R"({"format": "hyoracle.dump", "version": 1, "version": 2, "files": ["activations.safetensors"]})",
                                 "duplicate key \"version\""));
  v.push_back(manifest_case("WrongFormat", [](auto& m) { m["format"] = "safetensors"; }, "\"format\""));
  v.push_back(manifest_case("MissingFormat", [](auto& m) { m.erase("format"); }, "\"format\""));
  v.push_back(manifest_case("WrongVersion", [](auto& m) { m["version"] = 2; }, "\"version\""));
  v.push_back(manifest_case("VersionFloat", [](auto& m) { m["version"] = 1.0; }, "\"version\""));
  v.push_back(manifest_case("VersionHuge", [](auto& m) { m["version"] = ~uint64_t(0); }, "\"version\""));
  v.push_back(manifest_case("FilesEmpty", [](auto& m) { m["files"] = nlohmann::json::array(); }, "\"files\""));
  v.push_back(manifest_case("FileMissing", [](auto& m) { m["files"] = {"nope.safetensors"}; }, "nope.safetensors"));
  v.push_back(manifest_case("FileEscapes", [](auto& m) { m["files"] = {"../d/activations.safetensors"}; }, "\"files\""));
  v.push_back(manifest_case("FileWithNul", [](auto& m) { m["files"] = {std::string("activations.safetensors\0x", 25)}; },
                            "\"files\""));
  v.push_back(manifest_case("TokenIdsNegative", [](auto& m) { m["input"]["token_ids"] = {1, -2}; }, "input.token_ids"));
  v.push_back(manifest_case("TokenIdsNotIntegers", [](auto& m) { m["input"]["token_ids"] = {1, 2.5}; }, "input.token_ids"));
  v.push_back(manifest_case("InputNotObject", [](auto& m) { m["input"] = "1,2"; }, "\"input\""));
  v.push_back(dump_case("ManifestIsFifo",
                        [](const std::string& d) {
                          ::unlink((d + "/manifest.json").c_str());
                          ::mkfifo((d + "/manifest.json").c_str(), 0644);
                        },
                        "manifest.json", "not a regular file"));
  // The activations file cut in half: its header now points past the end.
  v.push_back(dump_case("TruncatedDump",
                        [](const std::string& d) {
                          const std::string f = d + "/activations.safetensors";
                          const std::string bytes = read_file(f);
                          write_file(f, bytes.substr(0, bytes.size() / 2));
                        },
                        "activations.safetensors", "truncated"));
  v.push_back(dump_case("TruncatedDumpHeader",
                        [](const std::string& d) {
                          const std::string f = d + "/activations.safetensors";
                          write_file(f, read_file(f).substr(0, 20));
                        },
                        "activations.safetensors", "header length"));
  // A files entry that is a directory.
  v.push_back(dump_case("FileIsDirectory",
                        [](const std::string& d) {
                          ::mkdir((d + "/sub").c_str(), 0755);
                          nlohmann::json m = nlohmann::json::parse(read_file(d + "/manifest.json"));
                          m["files"] = {"sub"};
                          write_file(d + "/manifest.json", m.dump());
                        },
                        "sub", "not a regular file"));
  // The same tensor in two files.
  v.push_back(dump_case("DuplicateAcrossFiles",
                        [](const std::string& d) {
                          write_file(d + "/copy.safetensors", read_file(d + "/activations.safetensors"));
                          nlohmann::json m = nlohmann::json::parse(read_file(d + "/manifest.json"));
                          m["files"] = {"activations.safetensors", "copy.safetensors"};
                          write_file(d + "/manifest.json", m.dump());
                        },
                        "copy.safetensors", "duplicate name"));
  // NaN in the baseline dump: the dump reader keeps it, `hyoracle compare` must refuse it by
  // name (a baseline with NaN judges nothing). NaN in the target is the engine's failure instead
  // (exit 1; catalogue_test.cpp, CatalogueCompare).
  v.push_back({"CompareNaN",
               [](const std::string& dir) {
                 write_dump_with_logits(dir + "/base", {1.0, 2.0, 3.0, 4.0});
                 write_dump_with_logits(dir + "/nan", {1.0, std::nan(""), 3.0, 4.0});
                 return std::vector<std::string>{"compare", dir + "/nan", dir + "/base"};
               },
               "nan/activations.safetensors", "\"logits\""});
  // NaN in generate.logits after the first differing token: those rows are not compared, but a NaN
  // there is still refused (compare streams only the comparable rows and scans the rest).
  v.push_back({"CompareNaNAfterTokenDivergence",
               [](const std::string& dir) {
                 write_dump_with_generation(dir + "/base", {1, 0, 1}, {0.0, 1.0, 2.0, 1.0, 0.0, 3.0});
                 write_dump_with_generation(dir + "/nan", {1, 1, 1}, {0.0, 1.0, 2.0, 2.5, std::nan(""), 3.0});
                 return std::vector<std::string>{"compare", dir + "/nan", dir + "/base"};
               },
               "nan/activations.safetensors", "\"generate.logits\""});
  // The manifest records each file's size and CRC-32: a file from another run (torn or mixed
  // dump) or a changed byte is refused.
  v.push_back(dump_case("FileFromAnotherRun",
                        [](const std::string& d) {
                          write_dump_with_logits(d + "-other", {1.0, 2.0, 3.0, 4.0});
                          write_file(d + "/activations.safetensors", read_file(d + "-other/activations.safetensors"));
                        },
                        "activations.safetensors", "file_checks.activations.safetensors.bytes"));
  v.push_back(dump_case("FlippedByte",
                        [](const std::string& d) {
                          std::string bytes = read_file(d + "/activations.safetensors");
                          bytes[bytes.size() - 1] ^= 0x40;
                          write_file(d + "/activations.safetensors", bytes);
                        },
                        "activations.safetensors", "file_checks.activations.safetensors.crc32"));
  v.push_back(manifest_case("FileChecksNotObject", [](auto& m) { m["file_checks"] = {1, 2}; }, "\"file_checks\""));
  v.push_back(manifest_case("FileCheckCrcNotHex",
                            [](auto& m) { m["file_checks"]["activations.safetensors"]["crc32"] = "xyz"; },
                            "file_checks.activations.safetensors.crc32"));
  v.push_back(manifest_case("ProducerDtypeNotString", [](auto& m) { m["producer"]["dtype"] = 16; }, "producer.dtype"));
  v.push_back(manifest_case("ModelNotObject", [](auto& m) { m["model"] = "tiny"; }, "\"model\""));
  // input_ids holding a negative id (the manifest's token_ids are not what `run` reads then).
  v.push_back(dump_case("NegativeInputIds",
                        [](const std::string& d) {
                          write_dump_with_ids(d, {1, -3});
                        },
                        "activations.safetensors", "tensor \"input_ids\": token id -3 at position 1 is negative"));
  // `hyoracle layer` on an engine dump whose input rows are empty, too few or not finite.
  auto layer_case = [](const std::string& name, std::vector<int64_t> shape, double value, std::vector<std::string> extra,
                       const std::string& field) {
    return Case{name,
                [shape, value, extra](const std::string& dir) {
                  write_good_checkpoint(dir + "/ck");
                  DumpWriter w;
                  Tensor<double> x(shape);
                  for (int64_t i = 0; i < x.numel(); ++i) x.data[size_t(i)] = i == x.numel() - 1 ? value : 0.5;
                  w.put("layers.0.out", x);
                  w.write(dir + "/d", nlohmann::ordered_json{{"format", "hyoracle.dump"}, {"version", 1}});
                  std::vector<std::string> args = {"layer", "--model", dir + "/ck", "--layer", "1", "--input", dir + "/d",
                                                   "--dump", dir + "/out", "--threads", "1"};
                  args.insert(args.end(), extra.begin(), extra.end());
                  return args;
                },
                "d/activations.safetensors", field};
  };
  v.push_back(layer_case("LayerInputWithoutRows", {0, 64}, 0.0, {}, "\"layers.0.out\" has 0 rows"));
  v.push_back(layer_case("LayerRowsBeyondInput", {2, 64}, 0.0, {"--rows", "0:5"}, "3 rows too many"));
  v.push_back(layer_case("LayerInputNaN", {2, 64}, std::nan(""), {}, "holds NaN at row 1, column 63"));
  v.push_back(layer_case("LayerInputInf", {2, 64}, INFINITY, {}, "holds Inf at row 1"));
  return v;
}

}  // namespace hyoracle::hostile
