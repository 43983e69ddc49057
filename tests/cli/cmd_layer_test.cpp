// `hyoracle layer`: one layer re-run alone on a dump's layers.L-1.out reproduces the whole-model
// dump's layers.L.* bit for bit (single-file and sharded checkpoints), --compare names a
// planted bug, and bad input (layer index, missing shard, missing input tensor, memory) gives
// one-line errors with exit 2.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/dump.h"
#include "tests/common/test_util.h"

namespace hyoracle {
namespace {

const std::string kBin = HYORACLE_BINARY;
std::string fixture(const std::string& n) { return std::string(HYORACLE_SOURCE_DIR) + "/fixtures/" + n; }

TEST(LayerCommand, ReproducesTheWholeModelDumpBitForBit) {
  for (const std::string f : {"tiny-hy3", "tiny-mt2"}) {
    test::TempDir dir;
    const auto run = test::run_command(kBin + " run --model " + fixture(f) + " --tokens-from " + fixture(f) +
                                       "/golden/hf-f64 --dump " + dir.path() + "/full");
    ASSERT_EQ(run.status, 0) << run.out;
    const Dump full(dir / "full");
    const int64_t layers = full.manifest()["model"]["num_hidden_layers"].get<int64_t>();
    for (int64_t L = 0; L < layers; ++L) {
      const std::string out = dir / ("layer" + std::to_string(L));
      const auto r = test::run_command(kBin + " layer --model " + fixture(f) + " --layer " + std::to_string(L) +
                                       " --input " + dir.path() + "/full --threads 3 --dump " + out);
      ASSERT_EQ(r.status, 0) << r.out;
      const Dump one(out);
      int compared = 0;
      for (const std::string& n : one.names()) {
        ASSERT_TRUE(full.has(n)) << n;
        if (n.find("topk_ids") != std::string::npos) {
          EXPECT_EQ(one.read_ints(n), full.read_ints(n)) << f << " " << n;
        } else {
          EXPECT_EQ(one.read(n).data, full.read(n).data) << f << " " << n << " differs";
        }
        ++compared;
      }
      EXPECT_GE(compared, 15) << f << " layer " << L;
    }
  }
}

TEST(LayerCommand, RowRangeMatchesTheSameRowsOfTheFullRun) {
  test::TempDir dir;
  const std::string f = fixture("tiny-mt2");
  ASSERT_EQ(test::run_command(kBin + " run --model " + f + " --tokens-from " + f + "/golden/hf-f64 --dump " + dir.path() +
                              "/full").status, 0);
  const auto r = test::run_command(kBin + " layer --model " + f + " --layer 2 --input " + dir.path() +
                                   "/full --rows 3:7 --dump " + dir.path() + "/rows");
  ASSERT_EQ(r.status, 0) << r.out;
  const Dump full(dir / "full"), rows(dir / "rows");
  EXPECT_EQ(rows.manifest()["input"]["position_offset"], 3);
  for (const std::string n : {"layers.2.attn.q_rope", "layers.2.resid_mid", "layers.2.mlp.out", "layers.2.out"}) {
    const Tensor<double> a = rows.read(n), b = full.read(n);
    ASSERT_EQ(a.shape[0], 4) << n;
    const int64_t per = a.numel() / 4;
    std::vector<double> b_rows(b.data.begin() + 3 * per, b.data.begin() + 7 * per);
    EXPECT_LT(test::rel_l2(a.data, b_rows), 1e-13) << n;
  }
}

TEST(LayerCommand, CompareNamesAPlantedBugInTheLayer) {
  // The engine's own dump as input: layer 3 of the bf16 run with o_proj scaled by 1.05.
  const std::string f = fixture("tiny-mt2"), bug = f + "/bugs/oproj-5pct";
  test::TempDir dir;
  const auto r = test::run_command(kBin + " layer --model " + f + " --layer 3 --input " + bug + " --dump " + dir.path() +
                                   "/l3 --compare " + bug);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("FIRST DIVERGENCE  layers.3.attn.out"), std::string::npos) << r.out;
  const auto ok = test::run_command(kBin + " layer --model " + f + " --layer 3 --input " + f + "/golden/hf-bf16 --dump " +
                                    dir.path() + "/ok --compare " + f + "/golden/hf-bf16");
  EXPECT_EQ(ok.status, 0) << ok.out;
}

void expect_one_line_error(const std::string& cmd, const std::vector<std::string>& needles) {
  const auto r = test::run_command(cmd);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  for (const auto& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "no \"" << n << "\" in " << r.out;
}

TEST(LayerCommand, BadInputGivesOneLineErrors) {
  const std::string f = fixture("tiny-mt2"), in = f + "/golden/hf-f64";
  test::TempDir dir;
  expect_one_line_error(kBin + " layer --model " + f + " --layer 4 --input " + in + " --dump " + dir.path() + "/x",
                        {"--layer 4", "config.json", "layers 0..3"});
  expect_one_line_error(kBin + " layer --model " + f + " --layer 2 --input " + f + " --dump " + dir.path() + "/x",
                        {"manifest.json"});
  // A dump without the needed input: write one holding only `embed`.
  DumpWriter w;
  w.put("embed", Tensor<double>({2, 48}));
  w.write(dir / "embed-only", {{"format", "hyoracle.dump"}, {"version", 1}});
  expect_one_line_error(kBin + " layer --model " + f + " --layer 2 --input " + dir.path() + "/embed-only --dump " +
                            dir.path() + "/x",
                        {"layers.1.out", "the input of layer 2", "embed-only"});
  expect_one_line_error(kBin + " layer --model " + f + " --layer 2 --input " + in + " --rows 5:99 --dump " + dir.path() + "/x",
                        {"--rows 5:99", "B <= 9"});
  expect_one_line_error(kBin + " layer --model " + f + " --layer 2 --input " + in + " --max-memory 1e-9 --dump " +
                            dir.path() + "/x",
                        {"needs about", "available"});
  // A sharded checkpoint with the shard of layer 3 missing: layer 1 still runs, layer 3 does not.
  const std::string copy = dir / "ckpt";
  std::filesystem::copy(f, copy, std::filesystem::copy_options::recursive);
  std::filesystem::remove(copy + "/model-00003-of-00003.safetensors");
  expect_one_line_error(kBin + " layer --model " + copy + " --layer 3 --input " + in + " --dump " + dir.path() + "/x",
                        {"model.safetensors.index.json", "model-00003-of-00003.safetensors", "missing"});
  const auto ok = test::run_command(kBin + " layer --model " + copy + " --layer 1 --input " + in + " --dump " + dir.path() + "/l1");
  EXPECT_EQ(ok.status, 0) << ok.out;
}

// A cross layer of cross-layer attention (Hunyuan-Large) reads its KV source layer's raw k and v:
// from the input dump's layers.S.attn.k / attn.v, or recomputed from layer S's input when the dump
// holds only module outputs; both reproduce the whole-model run bit for bit. Without either, one
// line says what the dump must hold.
TEST(LayerCommand, CrossLayerTakesItsSourceLayersKeysAndValues) {
#ifndef HYORACLE_PYTHON3
  GTEST_SKIP() << "no python3 to cut the module-only dump with tools/dump_subset.py";
#else
  const std::string f = fixture("gen-tiny-hunyuan-large");
  test::TempDir dir;
  const auto run = test::run_command(kBin + " run --model " + f + " --tokens 7,150,33,281,12,99,200,64 --dump " +
                                     dir.path() + "/full");
  ASSERT_EQ(run.status, 0) << run.out;
  const std::string py = std::string(HYORACLE_PYTHON3) + " " + HYORACLE_SOURCE_DIR + "/tools/dump_subset.py ";
  ASSERT_EQ(test::run_command(py + dir.path() + "/full " + dir.path() + "/modules --modules").status, 0);
  ASSERT_EQ(test::run_command(py + dir.path() + "/full " + dir.path() + "/out2 --keep 'layers\\.2\\.out'").status, 0);
  const Dump full(dir / "full");
  for (const std::string input : {"full", "modules"}) {
    const std::string out = dir / ("l3-" + input);
    const auto r = test::run_command(kBin + " layer --model " + f + " --layer 3 --input " + dir.path() + "/" + input +
                                     " --dump " + out);
    ASSERT_EQ(r.status, 0) << r.out;
    const Dump one(out);
    for (const std::string n : {"layers.3.attn.k_rope", "layers.3.attn.k_norm", "layers.3.attn.context", "layers.3.out"})
      EXPECT_EQ(one.read(n).data, full.read(n).data) << input << " " << n;
    EXPECT_FALSE(one.has("layers.3.attn.k")) << "a cross layer computes no k of its own";
  }
  expect_one_line_error(kBin + " layer --model " + f + " --layer 3 --input " + dir.path() + "/out2 --dump " +
                            dir.path() + "/x",
                        {"cross layer", "layer 2", "layers.2.attn.k", "layers.1.out"});
#endif
}

// An input dump made by the W8A8 model (run --fp8-activations on a per-tensor static FP8
// checkpoint) is continued in that model: layer 1 reproduces the whole run's layers.1.* bit for bit
// and its producer says so. A checkpoint without static input scales is refused in one line.
TEST(LayerCommand, FollowsTheW8A8ModeOfItsInputDump) {
  test::TempDir dir;
  const std::string ck = dir / "fp8", blk = dir / "blk";
  ASSERT_EQ(test::run_command(kBin + " fixture --preset tiny-hy3 --fp8 per-tensor -q --out " + ck).status, 0);
  ASSERT_EQ(test::run_command(kBin + " fixture --preset tiny-hy3 --fp8 block -q --out " + blk).status, 0);
  const auto run = test::run_command(kBin + " run --model " + ck + " --tokens 3,1,4,1,5,9,2 --fp8-activations --dump " +
                                     dir.path() + "/full");
  ASSERT_EQ(run.status, 0) << run.out;
  const std::string out = dir / "layer1";
  const auto r = test::run_command(kBin + " layer --model " + ck + " --layer 1 --input " + dir.path() + "/full --dump " + out);
  ASSERT_EQ(r.status, 0) << r.out;
  const Dump full(dir / "full"), one(out);
  EXPECT_EQ(one.manifest()["producer"].value("activations", ""), "fp8-static");
  int compared = 0;
  for (const std::string& n : one.names()) {
    if (n.rfind("layers.1.", 0) != 0 || n.find("topk_ids") != std::string::npos) continue;
    EXPECT_EQ(one.read(n).data, full.read(n).data) << n;
    ++compared;
  }
  EXPECT_GT(compared, 10);
  const auto bad = test::run_command(kBin + " layer --model " + blk + " --layer 1 --input " + dir.path() + "/full --dump " +
                                     std::string(dir / "bad"));
  EXPECT_EQ(bad.status, 2) << bad.out;
  EXPECT_NE(bad.out.find("fp8-static"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace hyoracle
